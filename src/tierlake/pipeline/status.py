"""The pipeline's last outcome, kept in ``<data_dir>/pipeline/status.json``.

Written atomically (temporary file, then rename) at the end of every run, so
`tierlake pipeline status` and the scheduler always read a whole document.
"""

from __future__ import annotations

import json
import os
import tempfile
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
