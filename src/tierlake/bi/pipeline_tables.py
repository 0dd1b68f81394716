"""The Pipeline dashboard's tables, built in memory from the pipeline's own records.

Not curated Delta tables: the pipeline's state changes with every extract (changes waiting
in the log age by the second), and writing it into the lake would itself be a pipeline run.
The engine builds them from what `tierlake pipeline status` shows (the status file and the
lake's catalog, :func:`tierlake.pipeline.status.lake_status`) and serves them beside the
curated tables, under these names and columns:

``pipeline_tables`` (one row per lake table): ``zone``, ``table_name``, ``version``,
``rows`` (what the Delta table holds), ``view_rows`` (a ``current/`` table with the logged
changes applied; else ``rows``), ``files``, ``bytes``, ``last_commit`` (timestamp),
``age_seconds`` (since that commit), ``waiting_rows`` and ``waiting_seconds`` (changes in the
log not merged yet, and the age of the oldest; 0 and null when none).

``pipeline_runs`` (the last run; none before the first): ``finished_at``, ``ok``,
``error``, ``engine``, ``seconds``, ``last_success_at``, ``rows_extracted``,
``rows_written``, ``last_vacuum_at``.

``pipeline_moves`` (what the last run moved): ``stage`` (``extract`` or ``job``),
``table_name``, ``rows``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import structlog

log = structlog.get_logger(__name__)

TS = pa.timestamp("us", tz="UTC")
TABLES_SCHEMA = pa.schema([
    ("zone", pa.string()), ("table_name", pa.string()), ("version", pa.int64()),
    ("rows", pa.int64()), ("view_rows", pa.int64()), ("files", pa.int64()),
    ("bytes", pa.int64()), ("last_commit", TS), ("age_seconds", pa.float64()),
    ("waiting_rows", pa.int64()), ("waiting_seconds", pa.float64()),
])
RUNS_SCHEMA = pa.schema([
    ("finished_at", TS), ("ok", pa.bool_()), ("error", pa.string()), ("engine", pa.string()),
    ("seconds", pa.float64()), ("last_success_at", TS), ("rows_extracted", pa.int64()),
    ("rows_written", pa.int64()), ("last_vacuum_at", TS),
])
MOVES_SCHEMA = pa.schema([("stage", pa.string()), ("table_name", pa.string()),
                          ("rows", pa.int64())])


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def build_pipeline_tables(lake: Any, status: dict[str, Any]) -> dict[str, pa.Table]:
    """``pipeline_tables``, ``pipeline_runs`` and ``pipeline_moves`` from the lake's catalog
    and the status file's document (``{}`` before the first run)."""
    from tierlake.pipeline.status import lake_status

    now = time.time()
    rows: list[dict[str, Any]] = []
    try:
        found = lake_status(lake)
    except Exception as exc:  # noqa: BLE001 - the dashboard shows an empty catalog, not a 500
        log.warning("bi.pipeline_status_failed", error=str(exc))
        found = []
    for item in found:
        info = item.info
        commit = info.last_commit
        rows.append({
            "zone": info.zone, "table_name": info.name, "version": info.version,
            "rows": info.rows,
            "view_rows": item.view_rows if item.view_rows is not None else info.rows,
            "files": info.files, "bytes": info.bytes, "last_commit": commit,
            "age_seconds": None if commit is None else round(now - commit.timestamp(), 3),
            "waiting_rows": item.waiting_rows,
            "waiting_seconds": None if item.waiting_seconds is None
            else round(item.waiting_seconds, 3),
        })
    extracted = status.get("extracted") or {}
    written = status.get("jobs") or {}
    runs = []
    if status.get("finished_at"):
        runs.append({
            "finished_at": _when(status.get("finished_at")), "ok": bool(status.get("ok")),
            "error": status.get("error"), "engine": status.get("engine"),
            "seconds": float(status["seconds"]) if status.get("seconds") is not None else None,
            "last_success_at": _when(status.get("last_success_at")),
            "rows_extracted": sum(int(v) for v in extracted.values()),
            "rows_written": sum(int(v) for v in written.values()),
            "last_vacuum_at": _when(status.get("last_vacuum_at")),
        })
    moves = ([{"stage": "extract", "table_name": k, "rows": int(v)}
              for k, v in sorted(extracted.items())]
             + [{"stage": "job", "table_name": k, "rows": int(v)}
                for k, v in sorted(written.items())])
    return {
        "pipeline_tables": pa.Table.from_pylist(rows, schema=TABLES_SCHEMA),
        "pipeline_runs": pa.Table.from_pylist(runs, schema=RUNS_SCHEMA),
        "pipeline_moves": pa.Table.from_pylist(moves, schema=MOVES_SCHEMA),
    }
