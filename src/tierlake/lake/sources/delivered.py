"""Delivered files into the lake, each exactly once: what the file sources share.

What is kept of a producer that delivers whole files (Kinesis Data Firehose's objects, ALB's
access-log objects) and a loader: each delivered file is loaded exactly once, whole, and a
run's cost depends on the new files only, not on the history.

A :class:`DeliveryLayout` says how a producer names its files: their *period* folders
(clickstream hours, ALB days), the delivery order of a file (:meth:`~DeliveryLayout.key`,
its period first) and how to list them. Each commit carries, in its metadata, the source's
state (:class:`Ingested`): the *watermark*, the newest file ingested, and the names of the
files ingested in the *late window*, from ``late_hours`` hours before the watermark on (the
layout says where exactly: the clickstream's window begins at an hour partition, the access
logs' at an end time). A run lists only the periods from the window's first one on (older
ones are not descended into) and loads the files listed from the window's beginning on that
the window does not name, so a file that appears late is still loaded, once, provided it
sorts within ``late_hours`` of the newest file. The state changes atomically with the rows
(one commit): a run killed before a commit loaded nothing of that chunk, and the next run
loads those files, once. A lake written before the state existed is read once the old way (the
distinct ``_source_file`` of the table). Hidden temporary files (a delivery in progress) are
never read: layouts list delivered names only.

New files are loaded in chunks of about ``chunk_bytes``: a chunk's files are parsed together
(:meth:`DeliveredFilesSource.read_chunk`, no per-line Python) and appended in one commit,
so memory stays bounded however many files wait and each commit is a whole number of files.
A run that fails after some chunks reports the rows and files it committed (they stay; the
next run goes on after them). The commit also advances the source's app transaction, so two
extracts running at once cannot both commit the same files. One extract at a time is the
assumption.

A run's cost must not grow with the history, and what grew was delta-rs loading the table's
snapshot, about 25 µs per active file (a table partitioned by day holds a file per day at
least). So a new table is partitioned by ``month`` (the delivery month), and after its
commits a run compacts (``optimize.compact``) each month the late window has left that holds
more than one file, and the open month once it holds more than ``COMPACT_FILES``: a year of
history is 12 files plus the open month's. The other growth is the log: loading the snapshot
replays every commit since the last checkpoint (delta-rs checkpoints every 100), so a run
writes a checkpoint after a compaction and every ``CHECKPOINT_EVERY`` commits. Nothing is
rewritten twice: a closed month, once compacted, is never written again (files delivered
later than the window are not loaded). A table written before (partitioned by ``dt``) keeps
its layout: it is appended to and checkpointed, not compacted. To move it to months, remove
the table's folder and run the extract: every delivered file still in the directory is
loaded again, once, into a table partitioned by month.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog
from deltalake import DeltaTable

from tierlake.lake.errors import LakeError, LakeUnavailableError, SourceError
from tierlake.lake.sources.base import NoProgress, Progress, Source, TableExtractInfo
from tierlake.lake.store import Lake

log = structlog.get_logger(__name__)

CHUNK_BYTES = 32 << 20  # delivered bytes parsed and committed together
MONTH = "month"  # the partition column of a new table: the delivery month, YYYY-MM
COMPACT_FILES = 64  # the open month is compacted when it holds more files than this
CHECKPOINT_EVERY = 10  # commits between log checkpoints (Delta's default; delta-rs's is 100)
HISTORY_SEARCH = 50  # commits searched back for the state (others' commits: vacuum, erasure)


class DeliveryLayout(ABC):
    """How a producer lays out its delivered files under a directory."""

    @abstractmethod
    def key(self, relative: str) -> tuple[Any, ...]:
        """The delivery order of the file at ``relative`` (a path under the directory); the
        first item is its period, a string that sorts in time."""

    @abstractmethod
    def since(self, watermark: str, late_hours: int) -> tuple[Any, ...]:
        """Where the late window begins when ``watermark`` is the newest file loaded: a
        prefix of a :meth:`key`, its first item the first period a run lists; files that
        sort before it are taken as loaded."""

    @abstractmethod
    def list_periods(self, directory: Path, since: str | None) -> list[str]:
        """The periods under ``directory`` from ``since`` on (all when None), in order."""

    @abstractmethod
    def list_files(self, directory: Path, period: str) -> list[Path]:
        """The delivered files of one period, in delivery order (temporary files skipped)."""

    @abstractmethod
    def month(self, period: str) -> str:
        """The month ``YYYY-MM`` a period belongs to (the table's partition)."""


@dataclass
class Ingested:
    """What the lake already holds: the newest file loaded (``watermark``, a path under the
    directory) and every file loaded from ``late_hours`` before its period on."""

    layout: DeliveryLayout
    watermark: str | None = None
    window: set[str] = field(default_factory=set)
    late_hours: int = 0
    list_all: bool = False  # rebuilt from a lake without the state: list every period once

    @property
    def since(self) -> tuple[Any, ...] | None:
        """Where the window begins (None: every file is listed)."""
        if self.watermark is None or self.list_all:
            return None
        return self.layout.since(self.watermark, self.late_hours)

    def add(self, files: list[str]) -> None:
        """Record ``files`` as loaded; names before the (moved) window are dropped."""
        self.watermark = max([*files, *([self.watermark] if self.watermark else [])],
                             key=self.layout.key)
        since = self.since or ()
        self.window = {f for f in self.window | set(files) if self.layout.key(f) >= since}

    def copy(self) -> Ingested:
        return Ingested(self.layout, self.watermark, set(self.window), self.late_hours)


@dataclass
class Listing:
    """How much a run looked at: periods listed, files listed and files read."""

    partitions: int = 0
    files: int = 0
    read: int = 0


class DeliveredFilesSource(Source):
    """A directory of delivered files into one raw table (subclasses: a format and a
    layout)."""

    table_name: str  # the name reported in a TableExtractInfo
    raw_table: str  # the path under the raw zone
    app_id: str  # the Delta app transaction of the source
    watermark_key: str  # commit-metadata keys of the state
    window_key: str
    partition_by = [MONTH]  # a new table's; one written before keeps its own (``dt``)

    def __init__(self, directory: Path, layout: DeliveryLayout, *, late_hours: int,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        if late_hours < 0:
            raise ValueError(f"late_hours must be 0 or more, not {late_hours}")
        self.directory = Path(directory)
        self.layout = layout
        self.late_hours = late_hours
        self.chunk_bytes = chunk_bytes
        self.listing = Listing()  # of the last run

    @abstractmethod
    def read_chunk(self, files: list[Path]) -> pa.Table:
        """The rows of ``files``, parsed in one go, with ``_source_file`` and ``dt`` (the
        delivery date, ``YYYY-MM-DD``); an unreadable file raises :class:`SourceError`
        naming it."""

    def list_tables(self) -> list[str]:
        return [self.table_name]

    def relative(self, path: Path) -> str:
        return path.relative_to(self.directory).as_posix()

    def state_metadata(self, state: Ingested) -> dict[str, str]:
        return {self.watermark_key: state.watermark or "",
                self.window_key: json.dumps(sorted(state.window, key=self.layout.key))}

    def _state_from(self, meta: dict[str, Any]) -> Ingested | None:
        if self.watermark_key not in meta or self.window_key not in meta:
            return None
        return Ingested(self.layout, str(meta[self.watermark_key]) or None,
                        set(json.loads(meta[self.window_key])), self.late_hours)

    def ingested(self, lake: Lake, table: DeltaTable | None = None) -> Ingested:
        """The state of the last commit that carries it (one commit read in the common
        case); for a lake written before the state existed, rebuilt from the table once."""
        table = table or lake.table("raw", self.raw_table)
        if table is None:
            return Ingested(self.layout, late_hours=self.late_hours)
        with lake.translate_errors("read", lake.uri("raw", self.raw_table)):
            for commit in table.history(HISTORY_SEARCH):
                state = self._state_from(commit)
                if state is not None:
                    return state
            files = table.to_pyarrow_dataset().to_table(columns=["_source_file"])
        names = pc.unique(files["_source_file"]).to_pylist()
        state = Ingested(self.layout, late_hours=self.late_hours)
        if names:
            state.add(names)
        return Ingested(self.layout, state.watermark, set(names), self.late_hours,
                        list_all=True)

    def extract(self, lake: Lake, *, run_id: str,
                progress: Progress | None = None) -> list[TableExtractInfo]:
        progress = progress or NoProgress()
        began = time.perf_counter()
        info = TableExtractInfo(source=self.name, table=self.table_name, mode="files")
        progress.start(self.name)
        try:
            # opened once: loading a Delta snapshot costs with the table's files, the one
            # cost of a run that grows with the history
            table = lake.table("raw", self.raw_table)
            opened = table.version() if table is not None else -1
            partition_by = (list(table.metadata().partition_columns) if table is not None
                            else self.partition_by)
            state = self.ingested(lake, table)
            new = self._new_files(state)
            for chunk in _chunks(new, self.chunk_bytes):
                count = (table.transaction_version(self.app_id) or 0) if table is not None else 0
                rows = self.read_chunk(chunk)
                if MONTH in partition_by:
                    rows = rows.append_column(MONTH, pc.utf8_slice_codeunits(rows["dt"], 0, 7))
                self.listing.read += len(chunk)
                after = state.copy()
                after.add([self.relative(p) for p in chunk])
                info.raw_version = lake.write(
                    "raw", self.raw_table, rows, mode="append", partition_by=partition_by,
                    metadata={"tierlake.batch": run_id, "tierlake.files": str(len(chunk)),
                              **self.state_metadata(after)},
                    watermark=(self.app_id, count + 1), table=table)
                table = table or lake.table("raw", self.raw_table)
                state = after
                info.files += len(chunk)
                info.rows += rows.num_rows
                progress.advance(self.name, rows.num_rows)
            if info.files and table is not None:
                compacted = MONTH in partition_by and self._compact(lake, table, state)
                if compacted or table.version() // CHECKPOINT_EVERY > opened // CHECKPOINT_EVERY:
                    # loading the snapshot replays the commits since the last checkpoint:
                    # ~0.5 ms each, so without one every CHECKPOINT_EVERY commits a run's cost
                    # would grow with the number of runs before it
                    with lake.translate_errors("checkpoint", lake.uri("raw", self.raw_table)):
                        table.create_checkpoint()
        except LakeUnavailableError:  # transient: the run stops, as the database source's
            if info.files:
                log.warning(f"{self.name}.partly_committed", files=info.files, rows=info.rows,
                            version=info.raw_version)
            raise
        except (SourceError, LakeError) as exc:
            committed = (f" ({info.files} file(s), {info.rows} rows were committed before "
                         "it; the next run goes on after them)") if info.files else ""
            info.error = f"{exc}{committed}"
        info.seconds = time.perf_counter() - began
        progress.finish(self.name)
        return [info]

    def _compact(self, lake: Lake, table: DeltaTable, state: Ingested) -> bool:
        """Keep the table's active files few, so a run's cost (delta-rs loads every active
        file's entry with the snapshot) does not grow with the history: each month the late
        window has left is compacted to one file (or a few of the target size); the open
        month when it holds more than ``COMPACT_FILES`` files. Months compacted before are
        left alone (one file each): the check costs a look at the snapshot's file list."""
        since = state.since
        open_month = self.layout.month(since[0]) if since else ""
        files = table.get_add_actions(flatten=True).column(f"partition.{MONTH}").to_pylist()
        per_month: dict[str, int] = {}
        for month in files:
            per_month[month] = per_month.get(month, 0) + 1
        due = [m for m, n in sorted(per_month.items())
               if (n > 1 and m < open_month) or n > COMPACT_FILES]
        for month in due:
            began = time.perf_counter()
            with lake.translate_errors("compact", lake.uri("raw", self.raw_table)):
                done = table.optimize.compact(partition_filters=[(MONTH, "=", month)])
            log.info(f"{self.name}.compacted", month=month, files=per_month[month],
                     removed=done.get("numFilesRemoved"), added=done.get("numFilesAdded"),
                     seconds=round(time.perf_counter() - began, 3))
        return bool(due)

    def _new_files(self, state: Ingested) -> list[Path]:
        """Files delivered from the window's beginning on that the window does not name."""
        self.listing = Listing()
        since = state.since
        new = []
        for period in self.layout.list_periods(self.directory, since[0] if since else None):
            self.listing.partitions += 1
            files = self.layout.list_files(self.directory, period)
            self.listing.files += len(files)
            new += [p for p in files
                    if (name := self.relative(p)) not in state.window
                    and (since is None or self.layout.key(name) >= since)
                    and p.stat().st_size > 0]
        return new


def per_line(values: list[str], lines: list[int]) -> pa.Array:
    """One value per file repeated for each of its ``lines`` rows (``_source_file``, the
    partition), without a Python loop over the rows."""
    return pa.array(values, pa.string()).take(np.repeat(np.arange(len(values)), lines))


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
