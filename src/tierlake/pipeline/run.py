"""One pipeline run: extract the store into the lake, then run the jobs.

The EMR step of the design: the jobs read the lake's ``current`` tables (the
database with its changes applied) and the raw clickstream, and write
``curated`` tables, each an atomic Delta overwrite, so the dashboards never
read half a result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from tierlake.config import Settings
from tierlake.pipeline.status import record_vacuum, vacuum_due, write_status

log = structlog.get_logger(__name__)

# Lake tables the jobs read: the current view of each store table, the clickstream and the
# load balancers' access logs (jobs' input names -> raw tables).
CLICKSTREAM = ("raw", "clickstream/events")
ACCESS_LOGS = ("raw", "lb/access_logs")
RAW_INPUTS = {"clickstream": CLICKSTREAM, "lb_access_logs": ACCESS_LOGS}


@dataclass
class PipelineInfo:
    extract: Any = None
    jobs: list[Any] = field(default_factory=list)
    engine: str = ""
    seconds: float = 0.0
    vacuum: list[Any] | None = None  # the tables vacuumed, when this run vacuumed


def job_inputs(lake: Any, names: set[str]) -> dict[str, Any]:
    """What the jobs read: the clickstream's and the access logs' files, and each store
    table's current files with the changes not merged into them yet (applied by the engine).
    No access logs yet (or none written): an empty table, so the jobs on them give no rows."""
    import pyarrow as pa

    from tierlake.analytics.merge_on_read import LoggedTable
    from tierlake.lake import current
    from tierlake.lake.sources.accesslogs import LAKE_SCHEMA as ACCESS_LOG_SCHEMA

    inputs: dict[str, Any] = {}
    for name in sorted(names):
        if name in RAW_INPUTS:
            inputs[name] = lake.files(*RAW_INPUTS[name])
            if name == "lb_access_logs" and not inputs[name]:
                inputs[name] = ACCESS_LOG_SCHEMA.empty_table()
            continue
        snap = current.snapshot(lake, name)
        if snap is None:
            inputs[name] = []
        elif snap.todo is None or not snap.todo.paths:
            inputs[name] = list(snap.cur.file_uris())
        else:
            inputs[name] = LoggedTable(base=tuple(snap.cur.file_uris()), log=snap.todo.uris,
                                       key=tuple(snap.todo.key(name)),
                                       schema=pa.schema(snap.cur.schema().to_arrow()))
    return inputs


@dataclass(frozen=True)
class Compaction:
    table: str
    merged: int  # raw rows merged
    inserted: int
    updated: int
    deleted: int
    version: int | None
    seconds: float


def compact_lake(lake: Any) -> list[Compaction]:
    """MERGE the pending changes of every ``current/`` table (those with any)."""
    from tierlake.lake import current

    done = []
    for info in lake.list_tables():
        if info.zone != "current":
            continue
        todo = current.pending(lake, info.name)
        if todo is None or not todo.paths:
            continue
        start = time.perf_counter()
        applied = current.compact(lake, info.name)
        done.append(Compaction(info.name, todo.rows, applied.inserted, applied.updated,
                               applied.deleted, applied.version,
                               round(time.perf_counter() - start, 3)))
        log.info("pipeline.compacted", table=info.name, rows=todo.rows,
                 seconds=done[-1].seconds)
    return done


def vacuum(settings: Settings, lake: Any, *, dry_run: bool = False,
           retention_hours: int | None = None) -> list[Any]:
    """Vacuum every lake table and checkpoint the logs due (:mod:`tierlake.lake.retention`);
    a real vacuum is recorded in the status file."""
    from tierlake.lake.retention import vacuum_lake

    done = vacuum_lake(lake, retention_hours=(settings.vacuum.retention_hours
                                              if retention_hours is None else retention_hours),
                       checkpoint_interval=settings.vacuum.checkpoint_interval, dry_run=dry_run)
    if not dry_run:
        record_vacuum(settings, {"tables": len(done), "files": sum(v.files for v in done),
                                 "bytes": sum(v.bytes for v in done),
                                 "seconds": round(sum(v.seconds for v in done), 3)})
    return done


def make_engine(name: str, master: str, lake: Any, driver_memory: str = "4g") -> Any:
    """The job engine; on an S3 lake it reads the files through the lake's filesystem."""
    from tierlake.analytics.engines import create_engine

    options: dict[str, Any] = {"filesystem": lake.filesystem()} if lake.is_s3 else {}
    if name == "spark":
        options.update(master=master, driver_memory=driver_memory)
    return create_engine(name, **options)


def run_pipeline(settings: Settings, *, engine: str | None = None, master: str | None = None,
                 extract: bool = True, jobs: bool = True, progress: bool = True
                 ) -> PipelineInfo:
    """Extract then jobs; the outcome (or the error) goes to the status file."""
    from tierlake.analytics.jobs import JOBS
    from tierlake.analytics.runner import run_jobs
    from tierlake.lake.extract import extract as run_extract
    from tierlake.lake.store import Lake

    engine_name = engine or settings.engine
    info = PipelineInfo(engine=engine_name)
    start = time.perf_counter()
    began = datetime.now(UTC)  # the store is read after this: the curated zone's "as of"
    try:
        lake = Lake(settings.resolved_lake_url)
        if extract:
            info.extract = run_extract(settings.resolved_database_url, lake, settings.extract,
                                       events_dir=settings.resolved_events_dir,
                                       access_logs_dir=(settings.resolved_access_logs_dir
                                                        if settings.lb.access_logs else None),
                                       progress=progress,
                                       replica_urls=settings.database_replica_urls)
        if jobs:
            needed = {name for job in JOBS for name in job.inputs}
            inputs = job_inputs(lake, needed)
            eng = make_engine(engine_name, master or settings.spark.master, lake,
                              settings.spark.driver_memory)
            try:
                info.jobs = run_jobs(
                    eng, inputs, progress=progress,
                    write=lambda name, table: lake.write("curated", name, table,
                                                         mode="overwrite"))
            finally:
                eng.close()
        if extract and vacuum_due(settings):  # retention, at most once per interval
            info.vacuum = vacuum(settings, lake)
    except Exception as exc:
        info.seconds = time.perf_counter() - start
        write_status(settings, ok=False, error=f"{type(exc).__name__}: {exc}",
                     engine=engine_name, seconds=round(info.seconds, 2))
        raise
    info.seconds = time.perf_counter() - start
    moved = {f"{t.source}/{t.table}": t.rows for t in info.extract.tables} if info.extract else {}
    fresh: dict[str, str] = {}
    if jobs:
        fresh["curated_changed_at"] = datetime.now(UTC).isoformat()
        if extract:
            fresh["data_as_of"] = began.isoformat()
    write_status(settings, ok=True, error=None, engine=engine_name,
                 seconds=round(info.seconds, 2), extracted=moved,
                 database_source=info.extract.database_source if info.extract else None,
                 jobs={j.name: j.rows for j in info.jobs}, **fresh)
    log.info("pipeline.done", engine=engine_name, seconds=round(info.seconds, 2))
    return info
