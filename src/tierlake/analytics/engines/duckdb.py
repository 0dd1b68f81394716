"""The DuckDB engine (the default): in-process, reads Parquet files directly.

Extensions are never downloaded (``autoinstall_known_extensions=False``): only DuckDB's
built-in ones are used. Remote ``s3://`` files are read through an fsspec filesystem given
as ``filesystem`` (e.g. the lake's s3fs), registered with DuckDB, so ``httpfs`` is not
needed; without one they are read with pyarrow and fsspec's default for the scheme.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any, ClassVar

import duckdb
import ibis
import ibis.expr.types as ir
import pyarrow as pa

from tierlake.analytics.engines.base import Engine, is_remote, local_path


class DuckDBEngine(Engine):
    name: ClassVar[str] = "duckdb"
    reads_remote_files: ClassVar[bool] = True  # with a registered fsspec filesystem

    def __init__(self, *, filesystem: Any | None = None, database: str = ":memory:",
                 **config: Any) -> None:
        super().__init__(filesystem)
        self.con = ibis.duckdb.connect(
            database, autoinstall_known_extensions=False, autoload_known_extensions=False,
            **config,
        )
        self.con.raw_sql("SET TimeZone = 'UTC'")
        if filesystem is not None:
            self.con.register_filesystem(filesystem)

    def load(self, name: str, files: list[str], *, hive_partitioning: bool = False) -> ir.Table:
        if not files:
            raise ValueError("no files given")
        if any(is_remote(f) for f in files) and self.filesystem is None:
            return self.register_arrow(name, self.read_arrow(files,
                                                             hive_partitioning=hive_partitioning))
        # Raw SQL rather than ibis' read_parquet, which loads httpfs for any s3:// path.
        paths = ", ".join(_quote(local_path(f), "'") for f in files)
        hive = "true" if hive_partitioning else "false"
        view = _quote(name, '"')
        self._drop(name)
        self.con.raw_sql(
            f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM read_parquet("
            f"[{paths}], union_by_name = true, hive_partitioning = {hive}, "
            "hive_types_autocast = false)"
        )
        return self.con.table(name)

    def register_arrow(self, name: str, table: pa.Table) -> ir.Table:
        self._drop(name)
        return self.con.create_table(name, table, temp=True)

    def _drop(self, name: str) -> None:
        """Forget an earlier input of that name, a view (files) or a table (Arrow)."""
        quoted = _quote(name, '"')
        for kind in ("VIEW", "TABLE"):  # DROP VIEW of a table (and back) is an error
            with suppress(duckdb.CatalogException):
                self.con.raw_sql(f"DROP {kind} IF EXISTS {quoted}")

    def execute(self, expr: ir.Table) -> pa.Table:
        return self.con.to_pyarrow(expr)

    def close(self) -> None:
        self.con.disconnect()


def _quote(text: str, mark: str) -> str:
    return mark + text.replace(mark, mark * 2) + mark
