"""The clickstream source: the web tier's delivered event files into ``raw/clickstream/events``.

What is kept of Kinesis Data Firehose -> S3 -> a loader: each delivered object is loaded
exactly once, whole, and a run's cost depends on the new files only, not on the history.

Delivered files sort by delivery time (hour partitions ``dt=/hour=``, then the delivery
stamp in the name: :func:`tierlake.events.delivery_key`). Each commit carries, in its
metadata, the source's state (:class:`Ingested`): the *watermark*, the newest file ingested,
and the names of the files ingested in the *late window*, the ``late_hours`` hours before the
watermark's hour and after. A run lists only the partitions from the window's first hour on
(the days before it are not descended into) and loads the files listed that the window does
not name, so a file that appears late in an older hour is still loaded, once, provided it
appears within ``late_hours`` of the newest file (a delivery is renamed into place
milliseconds after its stamp; the window covers a web instance's clock running behind).
The state changes atomically with the rows (one commit): a run killed before a commit
loaded nothing of that chunk, and the next run loads those files, once. A lake written
before the state existed is read once the old way (the distinct ``_source_file`` of the
table). Hidden temporary files (``.name.tmp``, a delivery in progress) are never read.

New files are loaded in chunks of about ``CHUNK_BYTES``: a chunk's files are parsed together
(their bytes joined, one ``pyarrow.json`` parse, no per-line Python) and appended in one
commit, so memory stays bounded however many files wait and each commit is a whole number
of files. A run that fails after some chunks reports the rows and files it committed (they
stay; the next run goes on after them). Events are parsed with the schema of
:class:`~tierlake.events.ClickEvent`: ``ts`` becomes ``timestamp[us, UTC]``, ids and
``status`` ``int64``, the rest strings; unknown fields are ignored. Rows gain
``_source_file`` (the path under the events directory) and ``dt`` (the delivery date from
the path, the partition column; the event time is ``ts``). The commit also advances the app
transaction ``tierlake.clickstream``, so two extracts running at once cannot both commit the
same files. One extract at a time is the assumption.
"""

from __future__ import annotations

import json
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import structlog
from deltalake import DeltaTable

from tierlake.events import (
    ClickEvent,
    delivery_key,
    list_partition,
    list_partitions,
    partition_of,
    partition_start,
)
from tierlake.lake.errors import LakeError, LakeUnavailableError, SourceError
from tierlake.lake.sources.base import NoProgress, Progress, Source, TableExtractInfo
from tierlake.lake.sources.column_types import UTC_US, to_utc
from tierlake.lake.store import Lake

log = structlog.get_logger(__name__)

TABLE = "clickstream/events"
APP_ID = "tierlake.clickstream"
CHUNK_BYTES = 32 << 20  # delivered bytes parsed and committed together
LATE_HOURS = 2  # hours before the newest file's hour listed again for files delivered late
WATERMARK_KEY = "tierlake.clickstream.watermark"
WINDOW_KEY = "tierlake.clickstream.window"
HISTORY_SEARCH = 50  # commits searched back for the state (others' commits: vacuum, erasure)


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


@dataclass
class Ingested:
    """What the lake already holds: the newest file loaded (``watermark``, a path under the
    events directory) and every file loaded from ``late_hours`` before its hour on."""

    watermark: str | None = None
    window: set[str] = field(default_factory=set)
    late_hours: int = LATE_HOURS
    list_all: bool = False  # rebuilt from a lake without the state: list every partition once

    @property
    def since(self) -> str | None:
        """The first hour partition a run lists (None: every one)."""
        if self.watermark is None or self.list_all:
            return None
        start = partition_start(delivery_key(self.watermark)[0])
        return partition_of(start - timedelta(hours=self.late_hours))

    def add(self, files: list[str]) -> None:
        """Record ``files`` as loaded; names before the (moved) window are dropped."""
        self.watermark = max([*files, *([self.watermark] if self.watermark else [])],
                             key=delivery_key)
        since = self.since or ""
        self.window = {f for f in self.window | set(files) if delivery_key(f)[0] >= since}

    def metadata(self) -> dict[str, str]:
        return {WATERMARK_KEY: self.watermark or "",
                WINDOW_KEY: json.dumps(sorted(self.window, key=delivery_key))}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], late_hours: int) -> Ingested | None:
        if WATERMARK_KEY not in meta or WINDOW_KEY not in meta:
            return None
        return cls(str(meta[WATERMARK_KEY]) or None, set(json.loads(meta[WINDOW_KEY])),
                   late_hours)


@dataclass
class Listing:
    """How much a run looked at: hour partitions listed, files listed and files read."""

    partitions: int = 0
    files: int = 0
    read: int = 0


class ClickstreamSource(Source):
    """Delivered clickstream files under ``events_dir``."""

    name = "clickstream"

    def __init__(self, events_dir: Path, *, batch_rows: int = 100_000,
                 late_hours: int = LATE_HOURS, chunk_bytes: int = CHUNK_BYTES) -> None:
        if late_hours < 0:
            raise ValueError(f"late_hours must be 0 or more, not {late_hours}")
        self.events_dir = Path(events_dir)
        self.block_size = max(1 << 20, batch_rows * 512)  # bytes per parsed block
        self.late_hours = late_hours
        self.chunk_bytes = chunk_bytes
        self.listing = Listing()  # of the last run

    def list_tables(self) -> list[str]:
        return ["events"]

    def ingested(self, lake: Lake, table: DeltaTable | None = None) -> Ingested:
        """The state of the last commit that carries it (one commit read in the common
        case); for a lake written before the state existed, rebuilt from the table once."""
        table = table or lake.table("raw", TABLE)
        if table is None:
            return Ingested(late_hours=self.late_hours)
        with lake.translate_errors("read", lake.uri("raw", TABLE)):
            for commit in table.history(HISTORY_SEARCH):
                state = Ingested.from_metadata(commit, self.late_hours)
                if state is not None:
                    return state
            files = table.to_pyarrow_dataset().to_table(columns=["_source_file"])
        names = pc.unique(files["_source_file"]).to_pylist()
        state = Ingested(late_hours=self.late_hours)
        if names:
            state.add(names)
        return Ingested(state.watermark, set(names), self.late_hours, list_all=True)

    def extract(self, lake: Lake, *, run_id: str,
                progress: Progress | None = None) -> list[TableExtractInfo]:
        progress = progress or NoProgress()
        began = time.perf_counter()
        info = TableExtractInfo(source=self.name, table="events", mode="files")
        progress.start("clickstream")
        try:
            # opened once: loading a Delta snapshot costs with the table's files (~1 ms per
            # 30 files), the one cost of a run that grows with the history
            table = lake.table("raw", TABLE)
            state = self.ingested(lake, table)
            new = self._new_files(state)
            for chunk in _chunks(new, self.chunk_bytes):
                count = (table.transaction_version(APP_ID) or 0) if table is not None else 0
                events = self._read_chunk(chunk)
                self.listing.read += len(chunk)
                names = [self._relative(p) for p in chunk]
                after = Ingested(state.watermark, set(state.window), self.late_hours)
                after.add(names)
                info.raw_version = lake.write(
                    "raw", TABLE, events, mode="append", partition_by=["dt"],
                    metadata={"tierlake.batch": run_id, "tierlake.files": str(len(chunk)),
                              **after.metadata()},
                    watermark=(APP_ID, count + 1), table=table)
                table = table or lake.table("raw", TABLE)
                state = after
                info.files += len(chunk)
                info.rows += events.num_rows
                progress.advance("clickstream", events.num_rows)
        except LakeUnavailableError:  # transient: the run stops, as the database source's
            if info.files:
                log.warning("clickstream.partly_committed", files=info.files, rows=info.rows,
                            version=info.raw_version)
            raise
        except (SourceError, LakeError) as exc:
            committed = (f" ({info.files} file(s), {info.rows} rows were committed before "
                         "it; the next run goes on after them)") if info.files else ""
            info.error = f"{exc}{committed}"
        info.seconds = time.perf_counter() - began
        progress.finish("clickstream")
        return [info]

    def _new_files(self, state: Ingested) -> list[Path]:
        """Files delivered from the window's first hour on that the window does not name."""
        self.listing = Listing()
        new = []
        for partition in list_partitions(self.events_dir, since=state.since):
            self.listing.partitions += 1
            files = list_partition(self.events_dir, partition)
            self.listing.files += len(files)
            new += [p for p in files if self._relative(p) not in state.window
                    and p.stat().st_size > 0]
        return new

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
                f"of {self.events_dir} (neither it nor the files after it were ingested) and "
                "run again"
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
