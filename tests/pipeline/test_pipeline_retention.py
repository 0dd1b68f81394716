"""`tierlake pipeline vacuum`, the vacuum the pipeline run does when due, and what
`pipeline status` says about what plain Delta readers see."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from tierlake.config import Settings
from tierlake.data import migrate
from tierlake.data.db import Database
from tierlake.data.schema import Order
from tierlake.pipeline.status import read_status
from tierlake.seed import seed_store


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"TIERLAKE_DATA_DIR": str(tmp_path / "var"), "TIERLAKE_EXTRACT__COMPACT_RATIO": "0",
              "TIERLAKE_VACUUM__RETENTION_HOURS": "0"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    settings.data_dir.mkdir(parents=True)
    db = Database(settings.resolved_database_url)
    migrate.upgrade(db.engine)
    seed_store(db, products=20, customers=30, orders=120, months=2, events_dir=None,
               admin_email="admin@example.com", admin_password="admin-password-1",
               progress=False)
    db.dispose()
    return values


def _tierlake(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierlake", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env, "COLUMNS": "200"})


def _cancel_some(n: int) -> None:
    db = Database(Settings().resolved_database_url)
    try:
        def cancel(s):  # type: ignore[no-untyped-def]
            # the seed cancels a few orders itself, and which depends on the clock
            open_orders = select(Order).where(Order.status != "cancelled")
            for order in s.scalars(open_orders.order_by(Order.id).limit(n)):
                order.status = "cancelled"
        db.write(cancel)
    finally:
        db.dispose()


def test_the_run_vacuums_when_due_and_the_command_on_demand(env: dict[str, str]) -> None:
    first = _tierlake("pipeline", "extract", "--no-progress", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    vacuumed_at = read_status(Settings())["last_vacuum_at"]  # never vacuumed: due at once
    _cancel_some(5)
    second = _tierlake("pipeline", "extract", "--no-progress", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert read_status(Settings())["last_vacuum_at"] == vacuumed_at  # once a day, not more
    assert "vacuum:" not in second.stdout

    helped = _tierlake("pipeline", "vacuum", "--help", env=env)
    assert helped.returncode == 0 and "--dry-run" in helped.stdout
    dry = _tierlake("pipeline", "vacuum", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "current/orders" in dry.stdout and "would remove" in dry.stdout
    assert read_status(Settings())["last_vacuum_at"] == vacuumed_at
    real = _tierlake("pipeline", "vacuum", env=env)
    assert real.returncode == 0, real.stderr[-3000:]
    assert "removed" in real.stdout
    assert read_status(Settings())["last_vacuum_at"] > vacuumed_at
    again = _tierlake("pipeline", "vacuum", "--dry-run", env=env)
    assert "would remove 0 files" in again.stdout

    bad = _tierlake("pipeline", "vacuum", "--retention-hours", "-1", env=env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_status_shows_what_the_delta_table_holds_and_what_readers_see(
        env: dict[str, str]) -> None:
    waits = {**env, "TIERLAKE_EXTRACT__COMPACT_RATIO": "0.5",
             "TIERLAKE_EXTRACT__MAX_STALENESS_SECONDS": "3600"}
    assert _tierlake("pipeline", "extract", "--no-progress", env=waits).returncode == 0
    _cancel_some(4)
    assert _tierlake("pipeline", "extract", "--no-progress", env=waits).returncode == 0
    status = _tierlake("pipeline", "status", env=waits)
    assert status.returncode == 0, status.stderr[-3000:]
    assert "with log" in status.stdout and "oldest waiting" in status.stdout
    line = next(x for x in status.stdout.splitlines() if " orders " in x and "current" in x)
    cells = [c.strip() for c in line.strip("│ ").split("│")]
    # rows as held, rows with the log applied, changes waiting, their age
    assert cells[3] == "120" and cells[4] == "120" and cells[5] == "4", line
    assert cells[6].endswith("s ago"), line
    assert "plain Delta reader" in status.stdout
