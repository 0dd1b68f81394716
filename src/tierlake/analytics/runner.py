"""Run jobs on an engine: load the inputs once, build, execute, sort, write.

Each job's result is sorted by its ``order_by`` (a unique key) after execution, so DuckDB
and Spark hand the writer equal tables. Any failure becomes a :class:`JobError` naming the
job and, when it can tell, the input at fault (a missing table, or the columns it lacks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass

import ibis.expr.types as ir
import pyarrow as pa
import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tierlake.analytics.engines.base import Engine
from tierlake.analytics.errors import JobError
from tierlake.analytics.inputs import missing_columns
from tierlake.analytics.jobs import JOBS, Job, get_job
from tierlake.analytics.merge_on_read import LoggedTable, apply_log

log = structlog.get_logger(__name__)
Inputs = Mapping[str, list[str] | pa.Table | LoggedTable]


@dataclass(frozen=True)
class JobInfo:
    """One job's outcome: its curated table's row count and the seconds it took."""

    name: str
    rows: int
    seconds: float


def run_jobs(
    engine: Engine,
    inputs: Inputs,
    *,
    jobs: Iterable[Job | str] | None = None,
    write: Callable[[str, pa.Table], object],
    progress: bool = True,
) -> list[JobInfo]:
    """Run ``jobs`` (default: all of :data:`~tierlake.analytics.jobs.JOBS`) in order.

    ``inputs`` maps a lake table name to its Parquet files, an Arrow table, or a
    :class:`LoggedTable` (files plus a change log to apply); only the tables the jobs need
    are loaded, each once. ``write(name, table)`` gets each result.
    """
    selected = [get_job(j) if isinstance(j, str) else j for j in (JOBS if jobs is None else jobs)]
    tables: dict[str, ir.Table] = {}
    infos: list[JobInfo] = []
    bar = _bar(progress)
    with bar or nullcontext():
        task = bar.add_task("jobs", total=len(selected)) if bar else None
        for job in selected:
            if bar and task is not None:
                bar.update(task, description=job.name)
            start = time.perf_counter()
            result = _run_one(engine, job, inputs, tables)
            write(job.name, result)
            infos.append(JobInfo(job.name, result.num_rows, round(time.perf_counter() - start, 3)))
            log.info("analytics.job_done", job=job.name, rows=result.num_rows,
                     seconds=infos[-1].seconds, engine=engine.name)
            if bar and task is not None:
                bar.advance(task)
    return infos


def _run_one(engine: Engine, job: Job, inputs: Inputs, tables: dict[str, ir.Table]) -> pa.Table:
    for name in job.inputs:
        if name not in tables:
            tables[name] = _load(engine, job, name, inputs)
    given = {name: tables[name] for name in job.inputs}
    try:
        result = engine.execute(job.build(given))
    except Exception as exc:
        raise _explain(job, given, exc) from exc
    missing = [c for c in job.order_by if c not in result.column_names]
    if missing:
        raise JobError(job.name, f"order_by names columns the result lacks: {missing}")
    return result.sort_by([(c, "ascending") for c in job.order_by])


def _load(engine: Engine, job: Job, name: str, inputs: Inputs) -> ir.Table:
    source = inputs.get(name)
    if source is None:
        raise JobError(job.name, f"input table {name!r} was not given (given: "
                       f"{', '.join(sorted(inputs)) or 'none'}); has the extract run?",
                       input=name)
    try:
        if isinstance(source, pa.Table):
            return engine.register_arrow(name, source)
        if isinstance(source, LoggedTable):
            return _load_logged(engine, name, source)
        if not source:
            raise ValueError("no files: the lake table is empty or missing")
        return engine.load(name, list(source))
    except Exception as exc:
        raise JobError(job.name, f"cannot load input {name!r} on {engine.name}: {exc}",
                       input=name) from exc


def _load_logged(engine: Engine, name: str, source: LoggedTable) -> ir.Table:
    base = (engine.load(name, list(source.base)) if source.base
            else engine.register_arrow(name, source.schema.empty_table()))
    if not source.log:
        return base
    log = engine.load(f"{name}__log", list(source.log))
    return apply_log(base, log, source.key, versioned=source.versioned)


def _explain(job: Job, tables: Mapping[str, ir.Table], exc: Exception) -> JobError:
    """The failure as a JobError; blames the input lacking expected lake columns, if any."""
    for name, table in tables.items():
        lacking = missing_columns(name, table.columns)
        if lacking:
            return JobError(job.name, f"input {name!r} lacks column(s) {', '.join(lacking)} "
                            f"({type(exc).__name__}: {exc})", input=name)
    return JobError(job.name, f"{type(exc).__name__}: {exc} (inputs: {', '.join(job.inputs)})")


def _bar(enabled: bool) -> Progress | None:
    if not enabled:
        return None
    return Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True))

