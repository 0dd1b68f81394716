"""Micro-batches: an order reaches the curated zone seconds after it is placed.

A full pipeline run (every ``pipeline.interval_seconds``) extracts every source, runs every
job, compacts and vacuums; in a fresh process it takes 11 s on the demo store even with
nothing to move (5.5 s of it importing DuckDB, Ibis, delta-rs and pyarrow; 3 s the
clickstream jobs), so running it more often cannot put an order on a dashboard within 10 s.
A micro-batch does the part an order needs, in a process that stays warm:

1. a *change probe*: one query for each store table's newest ``updated_at`` (and the
   tombstones' newest ``deleted_at``), a few milliseconds on indexed columns; when nothing
   moved since the last batch, nothing else runs (an idle store costs no extract);
2. the database source of the ordinary extract (:class:`~tierlake.lake.sources.database.
   DatabaseSource`: the same watermarks, lookback, merge-on-read log and compaction rules,
   so the exactly-once guarantee is the extract's own), then the erasure of deleted
   accounts, as a full run does;
3. the jobs that read only store tables, at least one of which changed (an order re-runs
   ``daily_sales``, ``product_performance``, ``customer_segments``, ``cohort_retention``...;
   nothing that reads the clickstream or the access logs, whose new files and jobs wait for
   the full run so that, e.g., the funnel's clicks and orders come from one moment), on
   inputs read once per batch (:func:`batch_inputs`);
4. the status file's freshness fields (:mod:`tierlake.pipeline.status`).

Each batch takes the pipeline lock (a manual run in progress makes the batch a skip, never a
wait). The worker (``python -m tierlake.pipeline.microbatch``) is started and driven by the
scheduler over a pipe: one JSON line in per batch, one JSON line out with its outcome, so the
scheduler keeps a single schedule (never a batch during a full run) and can stop a batch
that hangs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import column, func, inspect, select, table

from tierlake.config import Settings
from tierlake.data.db import Database
from tierlake.pipeline.lock import PipelineLockedError, pipeline_lock
from tierlake.pipeline.status import read_status, update_status

log = structlog.get_logger(__name__)
WATERMARK_COLUMN = "updated_at"
TOMBSTONES, TOMBSTONE_COLUMN = "deleted_rows", "deleted_at"
ARROW_INPUT_ROWS = 1_000_000  # a store table up to this size is read into memory per batch


def store_jobs(changed: set[str]) -> list[Any]:
    """The jobs a micro-batch re-runs: those reading only store tables, one of them in
    ``changed`` (in :data:`~tierlake.analytics.jobs.JOBS` order)."""
    from tierlake.analytics.jobs import JOBS
    from tierlake.pipeline.run import RAW_INPUTS

    return [job for job in JOBS
            if not set(job.inputs) & set(RAW_INPUTS) and set(job.inputs) & changed]


class ChangeProbe:
    """Whether the store changed since the last batch, at the cost of one query.

    The fingerprint is each extracted table's newest ``updated_at`` plus the tombstones'
    newest ``deleted_at``. A table without ``updated_at`` (a foreign database) cannot be
    probed: the fingerprint is then None and every batch extracts. A change committed with
    an ``updated_at`` older than one already seen (a long MariaDB transaction) leaves the
    fingerprint alone; the next batch that has another reason to run, or the next full run,
    extracts it (both re-read the extract's lookback window).
    """

    def __init__(self, db_url: str, exclude: list[str]) -> None:
        self.db = Database(db_url, pool_size=1)
        self.exclude = set(exclude)
        self.last: tuple[Any, ...] | None = None
        self._query: Any = None

    def _build(self) -> Any:
        insp = inspect(self.db.engine)
        names = sorted(insp.get_table_names())
        probes = []
        for name in names:
            if name in self.exclude and name != TOMBSTONES:
                continue
            columns = {c["name"] for c in insp.get_columns(name)}
            wanted = TOMBSTONE_COLUMN if name == TOMBSTONES else WATERMARK_COLUMN
            if wanted not in columns:
                if name == TOMBSTONES:
                    continue
                return None  # cannot tell: every batch extracts
            probes.append(select(func.max(column(wanted))).select_from(table(name))
                          .scalar_subquery())
        return select(*probes) if probes else None

    def look(self) -> tuple[Any, ...] | None:
        """The store's fingerprint now (None: cannot tell, treat as changed)."""
        try:
            if self._query is None:
                self._query = self._build()
            if self._query is None:
                return None
            with self.db.engine.connect() as conn:
                return tuple(conn.execute(self._query).one())
        except Exception as exc:  # noqa: BLE001 - a dropped table, a lost connection: extract
            log.warning("pipeline.probe_failed", error=str(exc))
            self._query = None
            return None

    def close(self) -> None:
        self.db.dispose()


@dataclass
class MicroBatchInfo:
    """One micro-batch: what changed (rows per store table), the jobs re-run (rows per
    curated table) and where its time went."""

    started_at: str
    ok: bool = True
    skipped: str | None = None  # why nothing ran: "no change", or who holds the lock
    changed: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    probe_seconds: float = 0.0
    extract_seconds: float = 0.0
    jobs_seconds: float = 0.0
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_micro_batch(settings: Settings, probe: ChangeProbe, *,
                    next_refresh_at: str | None = None) -> MicroBatchInfo:
    """One micro-batch (see the module docstring); its outcome goes to the status file."""
    began = datetime.now(UTC)
    info = MicroBatchInfo(started_at=began.isoformat())
    start = time.perf_counter()
    fresh: dict[str, Any] = {}
    try:
        with pipeline_lock(settings, "tierlake up's micro-batch"):
            try:
                fingerprint = probe.look()
                info.probe_seconds = round(time.perf_counter() - start, 4)
                if fingerprint is not None and fingerprint == probe.last:
                    info.skipped = "no change"
                else:
                    _extract_and_run(settings, info)
                    probe.last = fingerprint
                    if info.jobs:
                        fresh["curated_changed_at"] = datetime.now(UTC).isoformat()
                fresh["data_as_of"] = began.isoformat()
            except Exception as exc:  # noqa: BLE001 - recorded; the scheduler goes on
                info.ok, info.error = False, f"{type(exc).__name__}: {exc}"
                log.error("pipeline.micro_batch_failed", error=info.error)
            info.seconds = round(time.perf_counter() - start, 3)
            if next_refresh_at is not None:
                fresh["next_refresh_at"] = next_refresh_at
            if info.skipped is None:  # the record of the last batch that ran (or failed)
                fresh["micro_batch"] = info.to_dict()
            # Still under the lock: no other run rewrites the status file meanwhile.
            update_status(settings, refresh_seconds=settings.pipeline.micro_batch_seconds,
                          **fresh)
    except PipelineLockedError as exc:  # a manual run: it writes the status, not us
        info.skipped = str(exc)
        info.seconds = round(time.perf_counter() - start, 3)
        return info
    if info.changed or info.error:
        log.info("pipeline.micro_batch", changed=info.changed, jobs=list(info.jobs),
                 seconds=info.seconds, error=info.error)
    return info


def _extract_and_run(settings: Settings, info: MicroBatchInfo) -> None:
    from tierlake.analytics.runner import run_jobs
    from tierlake.lake.erasure import erase_deleted
    from tierlake.lake.extract import run_sources
    from tierlake.lake.sources.database import DatabaseSource
    from tierlake.lake.store import Lake
    from tierlake.pipeline.run import make_engine

    lake = Lake(settings.resolved_lake_url)
    start = time.perf_counter()
    extracted = run_sources([DatabaseSource(settings.resolved_database_url, settings.extract)],
                            lake)
    erase_deleted(lake, lookback_seconds=settings.extract.lookback_seconds)
    info.changed = {t.table: t.rows for t in extracted.tables if t.rows}
    info.extract_seconds = round(time.perf_counter() - start, 3)
    jobs = store_jobs(set(info.changed))
    if not jobs:
        return
    start = time.perf_counter()
    inputs = batch_inputs(lake, {name for job in jobs for name in job.inputs})
    engine = make_engine(settings.engine, settings.spark.master, lake,
                         settings.spark.driver_memory)
    try:
        done = run_jobs(engine, inputs, jobs=jobs, progress=False,
                        write=lambda name, result: lake.write("curated", name, result,
                                                              mode="overwrite"))
    finally:
        engine.close()
    info.jobs = {j.name: j.rows for j in done}
    info.jobs_seconds = round(time.perf_counter() - start, 3)


def batch_inputs(lake: Any, names: set[str]) -> dict[str, Any]:
    """The jobs' inputs for a batch: a store table of at most :data:`ARROW_INPUT_ROWS` rows
    (base plus waiting changes) as its current view read once into Arrow (the changes applied
    by pyarrow, the same rules as the engines' merge-on-read), larger ones as the full run
    gives them (files plus the log, applied by the engine in each job).

    Why: on the demo store the six jobs an order re-runs took 3.2-4.4 s reading the Parquet
    files and applying the log in every job, and 1.1-1.9 s on Arrow read once."""
    from tierlake.lake import current
    from tierlake.pipeline.run import job_inputs

    inputs: dict[str, Any] = {}
    large: set[str] = set()
    for name in sorted(names):
        snap = current.snapshot(lake, name)
        if snap is None:
            large.add(name)  # missing: job_inputs says so the usual way
            continue
        adds = snap.cur.get_add_actions(flatten=True)
        rows = sum(r or 0 for r in adds["num_records"].to_pylist()) if adds.num_rows else 0
        rows += snap.todo.rows if snap.todo is not None else 0
        if rows > ARROW_INPUT_ROWS:
            large.add(name)
        else:
            inputs[name] = current.read(lake, name)
    return {**inputs, **job_inputs(lake, large)} if large else inputs


def serve(settings: Settings, requests: Any, replies: Any) -> None:
    """The worker's loop: a JSON line in (``{"next_refresh_at": ...}``) runs one batch, whose
    :class:`MicroBatchInfo` goes out as a JSON line; end of input ends the worker."""
    # Import what a batch with jobs needs now, not on the first order (2-3 s on 2 vCPUs).
    import tierlake.analytics.runner
    import tierlake.lake.extract  # noqa: F401
    from tierlake.analytics.engines import create_engine

    create_engine("duckdb").close()
    probe = ChangeProbe(settings.resolved_database_url, settings.extract.exclude)
    try:
        for line in requests:
            request = json.loads(line or "{}")
            info = run_micro_batch(settings, probe,
                                   next_refresh_at=request.get("next_refresh_at"))
            replies.write(json.dumps(info.to_dict()) + "\n")
            replies.flush()
    finally:
        probe.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m tierlake.pipeline.microbatch --supervised-by PID``: the worker
    `tierlake up`'s scheduler starts (its replies on stdout, its logs on stderr)."""
    from tierlake.config import get_settings
    from tierlake.fleet.lifeline import guard_process_group
    from tierlake.logging import configure_logging

    parser = argparse.ArgumentParser(prog="python -m tierlake.pipeline.microbatch")
    parser.add_argument("--supervised-by", type=int, default=None)
    args = parser.parse_args(argv)
    if args.supervised_by is not None:
        guard_process_group(args.supervised_by)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, "pipeline")
    # The replies own the real stdout; anything else printed goes to stderr with the logs.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(settings, sys.stdin, replies)


def last_micro_batch(settings: Settings) -> dict[str, Any]:
    """The last micro-batch's record ({} when none ran)."""
    record = read_status(settings).get("micro_batch")
    return record if isinstance(record, dict) else {}


if __name__ == "__main__":
    main()
