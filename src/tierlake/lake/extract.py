"""The extract: every source into the lake, once per run.

One run = one ``run_id`` (the ``_batch`` of the raw rows it appends). Each source commits
table by table; a table that fails (say, a column of a type the lake cannot store) is left
at its last good version, the other tables are still extracted, and the run ends with an
:class:`~tierlake.lake.errors.ExtractError` listing the failures. An unreachable database or
lake stops the run at once. Running again is always safe: each table resumes from what the
lake itself recorded (watermarks and applied versions), never from local state.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from tierlake.config import ExtractConfig
from tierlake.data.db import Database, choose_extract_database
from tierlake.lake.erasure import ErasureInfo, erase_deleted
from tierlake.lake.errors import ExtractError
from tierlake.lake.sources.accesslogs import AccessLogsSource
from tierlake.lake.sources.base import NoProgress, Progress, Source, TableExtractInfo
from tierlake.lake.sources.clickstream import ClickstreamSource
from tierlake.lake.sources.database import DatabaseSource
from tierlake.lake.store import Lake

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID


log = structlog.get_logger(__name__)
@dataclass
class ExtractInfo:
    """What one run did."""

    run_id: str
    tables: list[TableExtractInfo] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    lake_bytes: int = 0
    erasure: ErasureInfo | None = None  # deleted accounts' data removed from the lake
    database_source: str = "primary"  # which database the store's tables were read from

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def files_ingested(self) -> int:
        return sum(t.files for t in self.tables)

    @property
    def failed(self) -> list[TableExtractInfo]:
        return [t for t in self.tables if t.error]

    def table(self, name: str, source: str = "db") -> TableExtractInfo:
        return next(t for t in self.tables if t.table == name and t.source == source)


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"


def extract(db_url: str, lake: Lake | str, config: ExtractConfig | None = None, *,
              events_dir: Path | None = None, access_logs_dir: Path | None = None,
              progress: bool = False, replica_urls: Sequence[str] = ()) -> ExtractInfo:
    """Copy what changed in the database (with ``events_dir``, new clickstream files; with
    ``access_logs_dir``, new load-balancer access-log files) into the lake. ``config``: the
    ``[extract]`` settings (their defaults when None). With ``replica_urls``, the store's
    tables are read from a replica when it is less than the lookback behind
    (:func:`~tierlake.data.db.choose_extract_database`), else from the primary."""
    config = config or ExtractConfig()
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    source_url, source = db_url, "primary"
    if replica_urls:
        primary = Database(db_url, pool_size=1)
        try:
            with primary.translate_errors():  # an unreachable primary stops the run
                source_url, source = choose_extract_database(db_url, replica_urls,
                                                             config.lookback_seconds)
        finally:
            primary.dispose()
        log.info("extract.database", source=source)
    sources: list[Source] = [DatabaseSource(source_url, config)]
    if events_dir is not None:
        sources.append(ClickstreamSource(events_dir, batch_rows=config.batch_rows))
    if access_logs_dir is not None:
        sources.append(AccessLogsSource(access_logs_dir))
    try:
        info = run_sources(sources, lake, progress=progress)
    except ExtractError as exc:  # the tables that did commit still get their erasures
        exc.info.database_source = source
        exc.info.erasure = erase_deleted(lake, lookback_seconds=config.lookback_seconds)
        raise
    info.database_source = source
    info.erasure = erase_deleted(lake, lookback_seconds=config.lookback_seconds)
    return info


def run_sources(sources: list[Source], lake: Lake, *, progress: bool = False) -> ExtractInfo:
    began = time.perf_counter()
    lake.check()
    info = ExtractInfo(run_id=new_run_id())
    with _progress(progress) as bars:
        for source in sources:
            info.tables += source.extract(lake, run_id=info.run_id, progress=bars)
    info.elapsed_seconds = time.perf_counter() - began
    info.lake_bytes = lake.total_bytes()
    log.info("extract.done", run_id=info.run_id, rows=info.rows, files=info.files_ingested,
             failed=len(info.failed), seconds=round(info.elapsed_seconds, 3))
    if info.failed:
        lines = "\n".join(f"  {t.source}/{t.table}: {t.error}" for t in info.failed)
        raise ExtractError(f"{len(info.failed)} table(s) failed and were left at their last "
                           f"good version; the others were extracted:\n{lines}", info)
    return info


class _RichProgress:
    """One rich progress line per table: rows moved so far."""

    def __init__(self, bars: RichProgress) -> None:
        self.bars = bars
        self.tasks: dict[str, TaskID] = {}

    def start(self, table: str) -> None:
        self.tasks[table] = self.bars.add_task(table, total=None)

    def advance(self, table: str, rows: int) -> None:
        self.bars.advance(self.tasks[table], rows)

    def finish(self, table: str) -> None:
        task = self.tasks[table]
        done = self.bars.tasks[task].completed
        self.bars.update(task, total=max(done, 1), completed=max(done, 1))


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    if not enabled:
        yield NoProgress()
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<24}"), BarColumn(),
               TextColumn("{task.completed:>12,.0f} rows"), TimeElapsedColumn())
    with Progress(*columns) as bars:
        yield _RichProgress(bars)
