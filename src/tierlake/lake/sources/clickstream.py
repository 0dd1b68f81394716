"""The clickstream source: the web tier's delivered event files into ``raw/clickstream/events``.

What is kept of Kinesis Data Firehose -> S3 -> a loader: each delivered object is loaded
exactly once, whole. The set of files already loaded is read from the lake table itself (the
distinct ``_source_file`` values of its current version), so it changes atomically with the
rows: a run killed before its commit loaded nothing, and the next run loads those files
again, once. Hidden temporary files (``.name.tmp``, a delivery in progress) are never read:
only :func:`tierlake.events.list_delivered` files are.

New files are loaded in chunks of about ``CHUNK_BYTES``: a chunk's files are parsed together
(their bytes joined, one ``pyarrow.json`` parse, no per-line Python) and appended in one
commit, so memory stays bounded however many files wait and each commit is a whole number
of files. Events are parsed with the schema of
:class:`~tierlake.events.ClickEvent`: ``ts`` becomes ``timestamp[us, UTC]``, ids and
``status`` ``int64``, the rest strings; unknown fields are ignored. Rows gain ``_source_file``
(the path under the events directory) and ``dt`` (the delivery date from the path, the
partition column; the event time is ``ts``). The commit also advances the app transaction
``tierlake.clickstream``, so two extracts running at once cannot both commit the same files.
One extract at a time is the assumption.
"""

from __future__ import annotations

import time
import typing
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from tierlake.events import ClickEvent, list_delivered
from tierlake.lake.errors import SourceError
from tierlake.lake.sources.base import NoProgress, Progress, Source, TableExtractInfo
from tierlake.lake.sources.column_types import UTC_US, to_utc
from tierlake.lake.store import Lake

TABLE = "clickstream/events"
APP_ID = "tierlake.clickstream"
CHUNK_BYTES = 32 << 20  # delivered bytes parsed and committed together


def _event_schema() -> pa.Schema:
    """ClickEvent's fields as JSON gives them (``ts`` still text)."""
    fields = []
    for name, hint in typing.get_type_hints(ClickEvent).items():
        is_int = hint is int or int in typing.get_args(hint)
        fields.append(pa.field(name, pa.int64() if is_int else pa.string()))
    return pa.schema(fields)


JSON_SCHEMA = _event_schema()
LAKE_SCHEMA = pa.schema(
    [pa.field(f.name, UTC_US) if f.name == "ts" else f for f in JSON_SCHEMA]
    + [pa.field("_source_file", pa.string()), pa.field("dt", pa.string())])


class ClickstreamSource(Source):
    """Delivered clickstream files under ``events_dir``."""

    name = "clickstream"

    def __init__(self, events_dir: Path, *, batch_rows: int = 100_000) -> None:
        self.events_dir = Path(events_dir)
        self.block_size = max(1 << 20, batch_rows * 512)  # bytes per parsed block

    def list_tables(self) -> list[str]:
        return ["events"]

    def ingested(self, lake: Lake) -> set[str]:
        """Files (relative paths) already in the lake's current version."""
        table = lake.table("raw", TABLE)
        if table is None:
            return set()
        with lake.translate_errors("read", lake.uri("raw", TABLE)):
            files = table.to_pyarrow_dataset().to_table(columns=["_source_file"])
        return set(pc.unique(files["_source_file"]).to_pylist())

    def extract(self, lake: Lake, *, run_id: str,
                progress: Progress | None = None) -> list[TableExtractInfo]:
        progress = progress or NoProgress()
        began = time.perf_counter()
        info = TableExtractInfo(source=self.name, table="events", mode="files")
        progress.start("clickstream")
        try:
            done = self.ingested(lake)
            new = [p for p in list_delivered(self.events_dir)
                   if self._relative(p) not in done and p.stat().st_size > 0]
            for chunk in _chunks(new, CHUNK_BYTES):
                table = lake.table("raw", TABLE)
                count = (table.transaction_version(APP_ID) or 0) if table is not None else 0
                events = self._read_chunk(chunk)
                info.raw_version = lake.write(
                    "raw", TABLE, events, mode="append", partition_by=["dt"],
                    metadata={"tierlake.batch": run_id, "tierlake.files": str(len(chunk))},
                    watermark=(APP_ID, count + 1))
                info.files += len(chunk)
                info.rows += events.num_rows
                progress.advance("clickstream", events.num_rows)
        except SourceError as exc:
            info.error, info.rows = str(exc), 0
        info.seconds = time.perf_counter() - began
        progress.finish("clickstream")
        return [info]

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.events_dir).as_posix()

    def _read_chunk(self, files: list[Path]) -> pa.Table:
        """The events of ``files``, parsed in one go, with ``_source_file`` and ``dt``."""
        blobs = [path.read_bytes() for path in files]
        blobs = [b if b.endswith(b"\n") else b + b"\n" for b in blobs]
        lines = np.array([b.count(b"\n") for b in blobs])
        try:
            events = self._parse(b"".join(blobs))
        except (pa.ArrowInvalid, OSError):
            for path in files:  # find the file to name in the error
                self._read(path)
            raise
        if events.num_rows != int(lines.sum()):  # a blank line would misalign the file names
            lines = np.array([self._read(path).num_rows for path in files])
        index = np.repeat(np.arange(len(files)), lines)
        names = pa.array([self._relative(p) for p in files]).take(index)
        dates = pa.array([_delivery_date(p) for p in files]).take(index)
        events = events.set_column(events.schema.get_field_index("ts"), "ts",
                                   to_utc(events["ts"].combine_chunks()))
        return (events.append_column("_source_file", names).append_column("dt", dates)
                .cast(LAKE_SCHEMA))

    def _parse(self, data: bytes | Path) -> pa.Table:
        source = pa.BufferReader(data) if isinstance(data, bytes) else data
        return pj.read_json(
            source, read_options=pj.ReadOptions(block_size=self.block_size),
            parse_options=pj.ParseOptions(explicit_schema=JSON_SCHEMA,
                                          unexpected_field_behavior="ignore"))

    def _read(self, path: Path) -> pa.Table:
        try:
            return self._parse(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(
                f"clickstream file {path} cannot be read as JSON lines ({exc}); move it out "
                f"of {self.events_dir} (nothing was ingested by this run) and run again"
            ) from exc


def _chunks(files: list[Path], limit: int) -> Iterator[list[Path]]:
    chunk: list[Path] = []
    size = 0
    for path in files:
        file_size = path.stat().st_size
        if chunk and size + file_size > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(path)
        size += file_size
    if chunk:
        yield chunk


def _delivery_date(path: Path) -> str:
    return path.parent.parent.name.removeprefix("dt=")
