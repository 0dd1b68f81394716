"""The pipeline's last outcome, kept in ``<data_dir>/pipeline/status.json``.

Written atomically (temporary file, then rename) at the end of every run, so
`tierlake pipeline status`, the scheduler and the BI tier always read a whole document.

Besides the last full run's outcome (``ok``, ``error``, ``finished_at``, ``extracted``,
``jobs``...) it says how fresh the curated zone is, for the BI tier's badge ("data as of
14:03:07, 4 s ago; next refresh in 6 s"), whichever of a full run or a micro-batch
(:mod:`tierlake.pipeline.microbatch`) last touched it:

* ``data_as_of``: the store's tables are in the curated zone as they were at this time
  (when the last successful full run or micro-batch started reading them; a micro-batch that
  found no change moves it too, since the curated zone was still the store's state);
* ``curated_changed_at``: when a job last wrote a curated table;
* ``next_refresh_at``: when the next micro-batch (or, with micro-batches off, full run) is
  due under `tierlake up`;
* ``micro_batch``: the last micro-batch (tables changed, jobs run, seconds, error).

:func:`freshness` reads them as datetimes.
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
    for kept in KEPT:  # the vacuum's own record, the curated zone's freshness
        if kept not in status and kept in previous:
            status[kept] = previous[kept]
    return _save(settings, status)


# Fields a full run's record keeps from the previous document unless it sets them itself.
KEPT = ("last_vacuum_at", "last_vacuum", "data_as_of", "curated_changed_at", "next_refresh_at",
        "refresh_seconds", "micro_batch")


def update_status(settings: Settings, **fields: Any) -> dict[str, Any]:
    """Set some fields and keep the others (a micro-batch's record, the next refresh time):
    the last full run's outcome stays as it was."""
    return _save(settings, {**read_status(settings), **fields})


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
class Freshness:
    """How fresh the curated zone is (the fields above, as datetimes; None when unknown)."""

    data_as_of: datetime | None
    curated_changed_at: datetime | None
    next_refresh_at: datetime | None

    def age_seconds(self, now: datetime | None = None) -> float | None:
        """Seconds since ``data_as_of``."""
        if self.data_as_of is None:
            return None
        return ((now or datetime.now(UTC)) - self.data_as_of).total_seconds()

    def next_refresh_seconds(self, now: datetime | None = None) -> float | None:
        """Seconds until the next refresh is due (0 when it is due or running)."""
        if self.next_refresh_at is None:
            return None
        return max(0.0, (self.next_refresh_at - (now or datetime.now(UTC))).total_seconds())


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def freshness(status: dict[str, Any]) -> Freshness:
    """The curated zone's freshness from a status document (:func:`read_status`)."""
    return Freshness(_time(status.get("data_as_of")), _time(status.get("curated_changed_at")),
                     _time(status.get("next_refresh_at")))


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
