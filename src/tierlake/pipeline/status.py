"""The pipeline's last outcome, kept in ``<data_dir>/pipeline/status.json``.

Written atomically (temporary file, then rename) at the end of every run, so
`tierlake pipeline status` and the scheduler always read a whole document.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tierlake.config import Settings


def status_path(settings: Settings) -> Path:
    return settings.data_dir / "pipeline" / "status.json"


def read_status(settings: Settings) -> dict[str, Any]:
    try:
        return json.loads(status_path(settings).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_status(settings: Settings, **fields: Any) -> dict[str, Any]:
    """Record a run's outcome; keeps the time of the last success across failures."""
    previous = read_status(settings)
    now = datetime.now(UTC).isoformat()
    status = {**fields, "finished_at": now}
    status["last_success_at"] = now if fields.get("ok") else previous.get("last_success_at")
    for kept in ("last_vacuum_at", "last_vacuum"):  # the vacuum's own record (retention)
        if kept not in status and kept in previous:
            status[kept] = previous[kept]
    return _save(settings, status)


def record_vacuum(settings: Settings, summary: dict[str, Any]) -> dict[str, Any]:
    """Record a vacuum of the lake (its time decides when the pipeline run vacuums again)."""
    status = read_status(settings)
    status["last_vacuum_at"] = datetime.now(UTC).isoformat()
    status["last_vacuum"] = summary
    return _save(settings, status)


def vacuum_due(settings: Settings, status: dict[str, Any] | None = None) -> bool:
    """True when ``vacuum.interval_hours`` have passed since the last vacuum."""
    if settings.vacuum.interval_hours <= 0:
        return False
    last = (status if status is not None else read_status(settings)).get("last_vacuum_at")
    if not last:
        return True
    age = (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds()
    return age >= settings.vacuum.interval_hours * 3600


def _save(settings: Settings, status: dict[str, Any]) -> dict[str, Any]:
    path = status_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".status-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(status, f, indent=2, default=str)
    os.replace(tmp, path)
    return status


def freshness_seconds(status: dict[str, Any]) -> float | None:
    """Age of the lake's last successful run, or None if there never was one."""
    last = status.get("last_success_at")
    if not last:
        return None
    return (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds()


@dataclass(frozen=True)
class TableStatus:
    """One lake table as `tierlake pipeline status` shows it.

    ``info.rows`` is what the Delta table itself holds (what a plain Delta reader sees); for
    a ``current/`` table ``view_rows`` is what tierlake's readers see (the base with the
    changes waiting in ``raw/`` applied), and ``waiting_rows``/``waiting_seconds`` are those
    changes and the age of the oldest (the next extract merges it once that age reaches
    ``extract.max_staleness_seconds``).
    """

    info: Any  # tierlake.lake.store.TableInfo
    view_rows: int | None = None
    waiting_rows: int = 0
    waiting_seconds: float | None = None


def lake_status(lake: Any) -> list[TableStatus]:
    """Every lake table, with the merge-on-read state of the ``current/`` ones."""
    from tierlake.lake import current

    found = []
    for info in lake.list_tables():
        if info.zone != "current":
            found.append(TableStatus(info))
            continue
        todo = current.pending(lake, info.name)
        if todo is None or not todo.paths:
            found.append(TableStatus(info, view_rows=info.rows))
            continue
        view = current.read_keys(lake, info.name, todo.key(info.name), versioned=todo.versioned)
        rows = view.num_rows if view is not None else info.rows
        found.append(TableStatus(info, view_rows=rows, waiting_rows=todo.rows,
                                 waiting_seconds=todo.age_seconds()))
    return found
