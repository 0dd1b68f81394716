"""Streams into Delta tables as Parquet files written by pyarrow and committed by delta-rs.

Why not ``write_deltalake`` for the big streams: delta-rs pulls record batches ahead of its
encoder into a queue bounded in batches, not bytes, so fed by a fast reader its memory grew
with the table (+91% from 1M to 10M order lines, docs/benchmarks.md). Here one thread encodes
with pyarrow's ``ParquetWriter`` while a second reads ahead by at most :data:`READ_AHEAD`
batches, so a writer holds a row group being filled, one being encoded and a few batches in
flight, whatever the table's size. The files are then committed in ONE Delta commit
(``DeltaTable.create_write_transaction`` / ``create_table_with_add_actions``): the table
moves from one version to the next or, on any failure, not at all (the files written so far
are deleted, and would be invisible anyway: readers follow the log, not the folder).

Each file's add action carries the Delta statistics delta-rs itself writes (``numRecords``,
``nullCount`` and ``minValues``/``maxValues`` of every column but binary ones), computed from
the rows written, so they are exact: delta-rs prunes files by them (a MERGE on a key range,
a read filter), and its pyarrow dataset turns a MISSING bound into ``col >= null``, which
drops the file from any filtered read (seen with deltalake 1.6), so none may be left out.
Timestamps are kept to the millisecond, as the protocol stores them (readers widen the upper
bound by 1 ms); NaN is not a bound (Arrow's ``min_max`` skips it).

Only plain streams take this path (:func:`can_write`): unpartitioned, of types Delta maps
one to one. A partitioned write, a new column (schema evolution) or another type goes
through ``write_deltalake``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import ColumnProperties, DeltaTable, WriterProperties
from deltalake import Schema as DeltaSchema
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    create_table_with_add_actions,
)

ROW_GROUP_ROWS = 128 * 1024
READ_AHEAD = 4  # batches read ahead of the encoder


def can_write(schema: pa.Schema) -> bool:
    """True if every column's type is one Delta stores as is (else use write_deltalake)."""
    return all(_plain(f.type) for f in schema)


def _plain(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) and pa.types.is_signed_integer(t)) or (
        pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_string(t)
        or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_date32(t)
        or pa.types.is_decimal128(t)
        or (pa.types.is_timestamp(t) and t.unit == "us" and t.tz in ("UTC", "+00:00")))


# Encodings (measured on 5M order lines, zstd: 3.3 s and 80 MB with pyarrow's defaults,
# 1.2 s and 50 MB with these): dictionary pages pay for repeated text (names, statuses);
# integers, dates and times, mostly keys, amounts and clocks that climb, take
# DELTA_BINARY_PACKED (read by DuckDB, Spark >= 3.3 and delta-rs) instead of dictionaries
# that overflow and are dropped in every row group.
def _dictionary(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)


def _delta_packed(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_date32(t)


def writer_properties(schema: pa.Schema, row_group_rows: int | None = None) -> WriterProperties:
    """delta-rs writer settings with the same encodings, for what delta-rs writes (MERGE)."""
    columns = {
        f.name: ColumnProperties(dictionary_enabled=False, encoding="DELTA_BINARY_PACKED")
        if _delta_packed(f.type) else ColumnProperties(dictionary_enabled=_dictionary(f.type))
        for f in schema}
    return WriterProperties(compression="ZSTD", column_properties=columns,
                            max_row_group_size=row_group_rows or ROW_GROUP_ROWS)


def arrow_filesystem(root: str, storage_options: dict[str, str] | None) -> tuple[Any, str]:
    """A pyarrow filesystem for the lake ``root`` and the root's path in it."""
    if not root.startswith("s3://"):
        return pafs.LocalFileSystem(), root
    opts = storage_options or {}
    endpoint = opts.get("AWS_ENDPOINT_URL")
    fs = pafs.S3FileSystem(
        access_key=opts.get("AWS_ACCESS_KEY_ID"), secret_key=opts.get("AWS_SECRET_ACCESS_KEY"),
        session_token=opts.get("AWS_SESSION_TOKEN"), region=opts.get("AWS_REGION"),
        endpoint_override=endpoint, connect_timeout=5, request_timeout=60,
        scheme="http" if endpoint and endpoint.startswith("http://") else "https")
    return fs, root.removeprefix("s3://")


@dataclass
class FileWrite:
    """One stream written as files into the table at ``path`` (on ``fs``), not yet committed."""

    fs: Any
    path: str
    schema: pa.Schema
    target_file_bytes: int
    compression: str = "zstd"
    actions: list[AddAction] = field(default_factory=list)
    rows: int = 0

    def __post_init__(self) -> None:
        # What the table's Delta schema reads back as (e.g. large_string -> string).
        self.file_schema = pa.schema(DeltaSchema.from_arrow(self.schema).to_arrow())
        self._stats_columns = [f.name for f in self.file_schema
                               if not pa.types.is_binary(f.type)]
        self._file: _File | None = None  # the file being written
        self.dictionary_columns = [f.name for f in self.file_schema if _dictionary(f.type)]
        self.delta_columns = {f.name: "DELTA_BINARY_PACKED" for f in self.file_schema
                              if _delta_packed(f.type)}

    def write(self, batches: Iterator[pa.RecordBatch]) -> None:
        """Write every batch; on failure delete what was written and raise."""
        try:
            self._write(_read_ahead(batches, READ_AHEAD))
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Delete every file written, the one being written included."""
        names = [a.path for a in self.actions]
        if self._file is not None:
            names.append(self._file.name)
            self._file.abandon()
            self._file = None
        for name in names:
            with suppress(OSError):  # never committed, so invisible; only space is lost
                self.fs.delete_file(f"{self.path}/{name}")
        self.actions.clear()

    def _write(self, batches: Iterator[pa.RecordBatch]) -> None:
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for batch in batches:
            if batch.schema != self.file_schema:
                batch = batch.cast(self.file_schema)
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= ROW_GROUP_ROWS:
                table = pa.Table.from_batches(pending, self.file_schema)
                self._add(table.slice(0, ROW_GROUP_ROWS))
                rest = table.slice(ROW_GROUP_ROWS)
                pending, pending_rows = rest.to_batches(), rest.num_rows
        if pending_rows:
            self._add(pa.Table.from_batches(pending, self.file_schema))
        if self._file is not None:
            self._close()

    def _add(self, row_group: pa.Table) -> None:
        if self._file is None:
            name = f"part-{len(self.actions):05d}-{uuid.uuid4()}-c000.{self.compression}.parquet"
            self._file = _File(self, name)
        self._file.add(row_group)
        if self._file.size() >= self.target_file_bytes:
            self._close()

    def _close(self) -> None:
        file, self._file = self._file, None
        assert file is not None
        size = file.close()
        self.rows += file.rows
        self.actions.append(AddAction(
            path=file.name, size=size, partition_values={},
            modification_time=int(time.time() * 1000), data_change=True,
            stats=json.dumps(file.stats(), separators=(",", ":"))))


class _File:
    """One Parquet file being written, with the statistics of what it holds."""

    def __init__(self, owner: FileWrite, name: str) -> None:
        self.name = name
        self.stream = owner.fs.open_output_stream(f"{owner.path}/{name}")
        self.writer = pq.ParquetWriter(self.stream, owner.file_schema,
                                       compression=owner.compression,
                                       use_dictionary=owner.dictionary_columns,
                                       column_encoding=owner.delta_columns or None)
        self.rows = 0
        self.nulls = dict.fromkeys(owner.file_schema.names, 0)
        self.low: dict[str, Any] = {}
        self.high: dict[str, Any] = {}
        self.stats_columns = owner._stats_columns

    def add(self, table: pa.Table) -> None:
        self.writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.rows += table.num_rows
        for name in table.column_names:
            self.nulls[name] += table[name].null_count
        for name in self.stats_columns:
            bounds = pc.min_max(table[name])
            lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
            if lo is None or lo != lo:  # all null, or all NaN: no bound, as delta-rs
                continue
            self.low[name] = lo if name not in self.low else min(self.low[name], lo)
            self.high[name] = hi if name not in self.high else max(self.high[name], hi)

    def size(self) -> int:
        return self.stream.tell()

    def close(self) -> int:
        self.writer.close()
        size = self.stream.tell()
        self.stream.close()
        return size

    def abandon(self) -> None:
        for part in (self.writer, self.stream):
            with suppress(Exception):  # the file is deleted next, whatever its state
                part.close()

    def stats(self) -> dict[str, Any]:
        return {"numRecords": self.rows,
                "minValues": {k: _stat(v) for k, v in self.low.items()},
                "maxValues": {k: _stat(v) for k, v in self.high.items()},
                "nullCount": self.nulls}


def _stat(value: Any) -> Any:
    """A bound as Delta's JSON statistics write it."""
    if isinstance(value, datetime):  # UTC; milliseconds, rounded down
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def commit(uri: str, table: DeltaTable | None, write: FileWrite, *, mode: str,
           storage_options: dict[str, str] | None, configuration: dict[str, str],
           commit_properties: CommitProperties) -> None:
    """Commit the files of ``write`` as one new version of the table at ``uri``."""
    schema = DeltaSchema.from_arrow(write.file_schema)
    if table is None:
        create_table_with_add_actions(
            uri, schema, write.actions, mode="append", configuration=configuration,
            storage_options=storage_options, commit_properties=commit_properties)
    else:
        actions: list[AddAction | RemoveAction] = list(write.actions)
        table.create_write_transaction(actions, mode, schema,
                                       commit_properties=commit_properties)


def same_schema(table: DeltaTable, schema: pa.Schema) -> bool:
    """True if ``schema`` is exactly the table's (so a commit needs no schema change)."""
    return table.schema().to_json() == DeltaSchema.from_arrow(schema).to_json()


_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _read_ahead(batches: Iterator[pa.RecordBatch], depth: int) -> Iterator[pa.RecordBatch]:
    """``batches``, pulled by a thread at most ``depth`` ahead (reading overlaps encoding)."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def pull() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failed(exc))

    thread = threading.Thread(target=pull, name="tierlake-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)  # a source stuck in a pull is left to its daemon thread
