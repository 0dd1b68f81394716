"""The engine interface: load lake files as Ibis tables, run an expression to Arrow.

An engine wraps one Ibis backend connection. Capability flags say what it can do itself;
:meth:`Engine.load` falls back to reading files with pyarrow (and fsspec for remote URIs)
and :meth:`Engine.register_arrow` where it cannot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.dataset as ds

REMOTE_SCHEMES = ("s3://", "s3a://", "gs://", "az://", "abfs://", "http://", "https://")


def is_remote(path: str) -> bool:
    return path.startswith(REMOTE_SCHEMES)


def local_path(path: str) -> str:
    """``file:///x`` -> ``/x``; other paths unchanged."""
    return path[len("file://"):] if path.startswith("file://") else path


class Engine(ABC):
    """One engine of the jobs (DuckDB, Spark): the same job expressions run on each."""

    name: ClassVar[str]
    #: Reads remote (``s3://``) files itself; otherwise they are read with pyarrow + fsspec.
    reads_remote_files: ClassVar[bool] = False

    def __init__(self, filesystem: Any | None = None) -> None:
        self.filesystem = filesystem  # fsspec filesystem for remote files (e.g. Lake.filesystem())

    @abstractmethod
    def load(self, name: str, files: list[str], *, hive_partitioning: bool = False) -> ir.Table:
        """Register the Parquet ``files`` (their columns unified by name) as table ``name``."""

    @abstractmethod
    def register_arrow(self, name: str, table: pa.Table) -> ir.Table:
        """Register an in-memory Arrow table as table ``name``."""

    @abstractmethod
    def execute(self, expr: ir.Table) -> pa.Table:
        """Run ``expr``; the result typed by the expression's Ibis schema."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection (and the session the engine started)."""

    def read_arrow(self, files: list[str], *, hive_partitioning: bool = False) -> pa.Table:
        """The files read with pyarrow (remote URIs through fsspec), schemas unified by name."""
        if not files:
            raise ValueError("no files given")
        filesystem = None
        if is_remote(files[0]):
            filesystem = self.filesystem
            if filesystem is None:
                import fsspec

                filesystem = fsspec.core.url_to_fs(files[0])[0]
            files = [f.split("://", 1)[1] for f in files]
        parts = [
            ds.dataset(local_path(f), format="parquet", filesystem=filesystem,
                       partitioning="hive" if hive_partitioning else None).to_table()
            for f in files
        ]
        return pa.concat_tables(parts, promote_options="default")

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
