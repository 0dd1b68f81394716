"""The lake's tables: paths, Delta tables, reads and writes (one commit per write).

* A write is one atomic commit (a new ``_delta_log/NNN.json``): readers see the table
  before or after it, never half. Streams are written as Parquet by pyarrow and committed
  in one transaction (:mod:`tierlake.lake.files`); partitioned writes and appends with a new
  column go through ``write_deltalake`` with ``schema_mode="merge"``, so a new source column
  appears without a manual step.
* A writer's progress (a watermark) is committed *with* its data, in the same commit:
  ``CommitProperties(custom_metadata=..., app_transactions=[Transaction(app_id, version)])``.
  ``DeltaTable.transaction_version(app_id)`` reads it back.
* Readers use the current version's file list (:meth:`Tables.files`, ``file_uris()``), never
  a folder glob: a folder also holds files of older versions and of failed writes.

:class:`Tables` is everything of the lake but merge-on-read, so :mod:`tierlake.lake.current`
builds on it and :class:`tierlake.lake.store.Lake` (``Tables`` plus merge-on-read reads and
the catalog) builds on both, without an import cycle.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from tierlake.lake import fanout
from tierlake.lake.errors import LakeError
from tierlake.lake.fanout import WriteTarget
from tierlake.lake.files import (
    FileWrite,
    arrow_filesystem,
    can_write,
    commit,
    same_schema,
    writer_properties,
)
from tierlake.lake.storage import Storage

ZONES = ("raw", "current", "curated")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=-]*(/[A-Za-z0-9_][A-Za-z0-9_.=-]*)*$")


class Tables(Storage):
    """The Delta tables of the lake at ``url`` (see :class:`tierlake.lake.store.Lake`)."""

    # Files of ~8 MiB (~900k order lines): a MERGE of recent changes rewrites the newest
    # file, so its cost follows this size (16 MiB: 12% of a full extract, 8 MiB: 8%, on
    # 5M lines; docs/benchmarks.md). Row groups are 128k rows (files.ROW_GROUP_ROWS).
    target_file_size = 8 * 1024 * 1024

    @property
    def table_configuration(self) -> dict[str, str]:
        # kept by each table, so its MERGEs (current/) write files of this size too
        return {"delta.targetFileSize": str(self.target_file_size)}

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    # -- paths ----------------------------------------------------------------------------------

    def uri(self, zone: str, name: str) -> str:
        """Where table ``zone/name`` lives, e.g. ``s3://lake/raw/db/orders``."""
        if zone not in ZONES:
            raise LakeError(f"unknown lake zone {zone!r}; use one of {', '.join(ZONES)}")
        if not _NAME.match(name) or ".." in name:
            raise LakeError(f"bad lake table name {name!r}: use letters, digits, _ . - and /")
        return f"{self.root}/{zone}/{name}"

    # -- reading --------------------------------------------------------------------------------

    def table(self, zone: str, name: str) -> DeltaTable | None:
        """The table's latest version, or None if it was never written."""
        uri = self.uri(zone, name)
        with self.translate_errors("open", uri):
            try:
                return DeltaTable(uri, storage_options=self.storage_options)
            except TableNotFoundError:
                return None

    def files(self, zone: str, name: str) -> list[str]:
        """The Parquet files of the current version (local paths for a local lake). For a
        ``current`` table that is its base, without the changes not merged yet
        (:func:`tierlake.lake.current.pending`)."""
        table = self.table(zone, name)
        return [] if table is None else list(table.file_uris())

    def read_table(self, zone: str, name: str, columns: list[str] | None = None) -> pa.Table:
        """The table's current version as stored (for ``current``, its base only)."""
        table = self.table(zone, name)
        if table is None:
            raise LakeError(f"lake table {self.uri(zone, name)} does not exist yet; run "
                            "`tierlake extract` (or the job that writes it) first")
        with self.translate_errors("read", self.uri(zone, name)):
            return table.to_pyarrow_dataset().to_table(columns=columns)

    # -- writing --------------------------------------------------------------------------------

    def write(
        self,
        zone: str,
        name: str,
        data: pa.Table | pa.RecordBatchReader,
        *,
        mode: Literal["append", "overwrite"] = "append",
        partition_by: list[str] | None = None,
        metadata: dict[str, str] | None = None,
        watermark: tuple[str, int] | None = None,
        table: DeltaTable | None = None,
    ) -> int:
        """Commit ``data`` as one new version (returned); nothing is committed on error.

        ``watermark`` = ``(app_id, version)`` is committed in the same commit, as a Delta
        app transaction. Appends merge new columns into the schema; overwrites replace it.
        ``table``: the table as the caller opened it (a partitioned write then neither opens
        it again nor after; its snapshot is the version the commit builds on, and moves to
        the new one).
        """
        uri = self.uri(zone, name)
        if mode not in ("append", "overwrite"):
            raise ValueError(f"mode must be 'append' or 'overwrite', not {mode!r}")
        if isinstance(data, pa.RecordBatchReader) and not partition_by and can_write(data.schema):
            with self.translate_errors("write", uri):
                existing = table if table is not None else self.table(zone, name)
                if _takes_files(existing, data.schema, mode):
                    return self._write_files(uri, existing, data, mode, metadata, watermark)
        failures: list[BaseException] = []  # raised by the data's producer, while streamed
        if isinstance(data, pa.RecordBatchReader):
            data = pa.RecordBatchReader.from_batches(data.schema, _capture(data, failures))
        with self.translate_errors("write", uri):
            try:
                write_deltalake(
                    uri if table is None else table, data, mode=mode, partition_by=partition_by,
                    schema_mode="merge" if mode == "append" else "overwrite",
                    storage_options=self.storage_options,
                    writer_properties=writer_properties(data.schema),
                    target_file_size=self.target_file_size,
                    configuration=self.table_configuration,
                    commit_properties=self.commit_properties(metadata, watermark),
                )
            except Exception:
                if failures:  # delta-rs wraps it in a DeltaError: give back the original
                    raise failures[0] from None
                raise
            if table is not None:
                return table.version()
            return DeltaTable(uri, storage_options=self.storage_options).version()

    def _write_files(self, uri: str, existing: DeltaTable | None, data: pa.RecordBatchReader,
                     mode: str, metadata: dict[str, str] | None,
                     watermark: tuple[str, int] | None) -> int:
        """A stream as Parquet files written here, then one commit (see ``files.py``)."""
        fs, root = arrow_filesystem(self.root, self.storage_options)
        write = FileWrite(fs, root + uri.removeprefix(self.root), data.schema,
                          self.target_file_size)
        if not self.is_s3:
            Path(write.path).mkdir(parents=True, exist_ok=True)
        write.write(iter(data))
        try:
            commit(uri, existing, write, mode=mode, storage_options=self.storage_options,
                   configuration=self.table_configuration,
                   commit_properties=self.commit_properties(metadata, watermark))
        except BaseException:
            write.discard()
            raise
        return DeltaTable(uri, storage_options=self.storage_options).version()

    def write_many(self, data: pa.RecordBatchReader, targets: list[WriteTarget]) -> list[int]:
        """Write one stream into several tables, reading it once; their new versions
        (:func:`tierlake.lake.fanout.write_many`: a bounded queue per writer)."""
        if len(targets) > 1:  # fanout's rule: one target at most pulled by delta-rs
            schemas = [pa.schema([data.schema.field(c) for c in t.columns]) for t in targets]
            pulled = [t.name for t, schema in zip(targets, schemas, strict=True)
                      if not can_write(schema)
                      or not _takes_files(self.table(t.zone, t.name), schema, t.mode)]
            if len(pulled) > 1:
                raise ValueError(
                    f"write_many: {', '.join(pulled)} would all be written by write_deltalake "
                    "(a new column or a type it converts), whose pulls can deadlock each other; "
                    "write them one at a time")
        return fanout.write_many(self.write, data, targets)

    @staticmethod
    def commit_properties(
        metadata: dict[str, str] | None = None, watermark: tuple[str, int] | None = None
    ) -> CommitProperties:
        txns = [Transaction(app_id=watermark[0], version=watermark[1])] if watermark else None
        return CommitProperties(custom_metadata=dict(metadata or {}), app_transactions=txns)


def _takes_files(existing: DeltaTable | None, schema: pa.Schema, mode: str) -> bool:
    """True if a plain stream of ``schema`` into ``existing`` is written by pyarrow
    (``files.py``), False if it needs ``write_deltalake`` (an append with a new column)."""
    return existing is None or mode == "overwrite" or same_schema(existing, schema)


# delta-rs pulls batches ahead of its encoder into a queue bounded in batches, not bytes: fed
# 100k-row batches by a fast reader its memory grew by ~250 MB with the table (measured on
# the orders table). Slices of 16k rows (zero-copy) keep that queue small.
WRITE_BATCH_ROWS = 16 * 1024


def _capture(reader: pa.RecordBatchReader, failures: list[BaseException]
             ) -> Iterator[pa.RecordBatch]:
    try:
        for batch in reader:
            for offset in range(0, batch.num_rows, WRITE_BATCH_ROWS):
                yield batch.slice(offset, WRITE_BATCH_ROWS)
    except BaseException as exc:
        failures.append(exc)
        raise
