"""`tierlake pipeline` as a user runs it, and its schedule inside `tierlake up`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
from sqlalchemy import select

from tierlake.config import Settings
from tierlake.data import migrate
from tierlake.data.db import Database
from tierlake.data.schema import Order
from tierlake.lake.store import Lake
from tierlake.pipeline.lock import EXIT_LOCKED, pipeline_lock
from tierlake.pipeline.scheduler import PipelineScheduler
from tierlake.pipeline.status import freshness_seconds, read_status
from tierlake.seed import seed_store

CURATED = {"daily_sales", "product_performance", "customer_segments", "cohort_retention",
           "traffic_hourly", "top_pages", "top_products", "funnel"}


@pytest.fixture
def store_env(tmp_path: Path, monkeypatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {"TIERLAKE_DATA_DIR": str(tmp_path / "var")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    settings.data_dir.mkdir(parents=True)
    db = Database(settings.resolved_database_url)
    migrate.upgrade(db.engine)
    seed_store(db, products=40, customers=120, orders=800, months=6,
               events_dir=settings.resolved_events_dir, admin_email="admin@example.com",
               admin_password="admin-password-1", progress=False)
    db.dispose()
    return env


def _tierlake(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierlake", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


def test_run_then_status(store_env: dict[str, str]) -> None:
    run = _tierlake("pipeline", "run", "--no-progress", env=store_env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Extract (store -> lake)" in run.stdout and "Jobs on duckdb" in run.stdout
    # To a pipe, tables keep their natural width: nothing wrapped or cut.
    assert "db/order_lines" in run.stdout and "db/carts" in run.stdout
    assert "\u2026" not in run.stdout and "rows moved" in run.stdout
    lake = Lake(Settings().resolved_lake_url)
    tables = {(t.zone, t.name): t for t in lake.list_tables()}
    assert {name for zone, name in tables if zone == "curated"} >= CURATED
    assert tables[("current", "orders")].rows == 800
    sales = lake.read_arrow("curated", "daily_sales")
    assert pc.sum(sales["orders"]).as_py() > 0

    status = _tierlake("pipeline", "status", env=store_env)
    assert status.returncode == 0, status.stderr
    assert "last run: ok" in status.stdout and "curated" in status.stdout
    assert freshness_seconds(read_status(Settings())) < 120


def test_failed_run_is_reported_and_keeps_the_lake(store_env: dict[str, str]) -> None:
    assert _tierlake("pipeline", "run", "--no-progress", env=store_env).returncode == 0
    before = {(t.zone, t.name): t.version for t in Lake(Settings().resolved_lake_url).list_tables()}
    broken = {**store_env, "TIERLAKE_DATABASE_URL": "mysql+pymysql://u:p@127.0.0.1:1/none"}
    run = _tierlake("pipeline", "run", "--no-progress", env=broken)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and "TIERLAKE_DATABASE_URL" in run.stderr
    status = read_status(Settings())
    assert status["ok"] is False and status["last_success_at"]
    after = {(t.zone, t.name): t.version for t in Lake(Settings().resolved_lake_url).list_tables()}
    assert after == before
    shown = _tierlake("pipeline", "status", env=store_env).stdout
    assert "failed" in shown


def test_scheduler_runs_the_pipeline_on_its_interval(store_env: dict[str, str]) -> None:
    settings = Settings(pipeline={"interval_seconds": 1})

    async def scheduled() -> None:
        scheduler = PipelineScheduler(settings)
        await scheduler.start()
        try:
            deadline = time.monotonic() + 240
            while not read_status(settings).get("ok"):
                assert time.monotonic() < deadline, "no successful scheduled run"
                await asyncio.sleep(0.5)
        finally:
            await scheduler.stop()

    asyncio.run(scheduled())
    assert freshness_seconds(read_status(settings)) < 240


def test_a_run_past_its_deadline_is_stopped_and_recorded(store_env: dict[str, str]) -> None:
    """0.1 s is less than the interpreter needs to import the pipeline: the run is always
    late, is stopped with its process group, and the status names the setting."""
    settings = Settings(pipeline={"interval_seconds": 1, "timeout_seconds": 0.1})
    scheduler = PipelineScheduler(settings)
    code = asyncio.run(scheduler.run_once())
    assert code is not None and code != 0
    status = read_status(settings)
    assert status["ok"] is False
    assert "TIERLAKE_PIPELINE__TIMEOUT_SECONDS" in status["error"], status
    assert scheduler.last_pid is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(scheduler.last_pid, 0)  # the run and all it started are gone


def test_no_run_starts_after_stop(store_env: dict[str, str]) -> None:
    settings = Settings(pipeline={"interval_seconds": 1})

    async def stop_then_run() -> int | None:
        scheduler = PipelineScheduler(settings)
        await scheduler.start()
        await scheduler.stop()
        return await scheduler.run_once()

    assert asyncio.run(stop_then_run()) is None
    assert read_status(settings) == {}, "no run happened"


def test_a_second_run_is_refused_naming_the_holder(store_env: dict[str, str]) -> None:
    settings = Settings()
    with pipeline_lock(settings, "tierlake pipeline run (the test's)"):
        for command in (["pipeline", "run", "--no-progress"], ["pipeline", "compact"]):
            run = _tierlake(*command, env=store_env)
            assert run.returncode == EXIT_LOCKED, run.stderr[-2000:]
            [line] = run.stderr.strip().splitlines()
            assert f"pid {os.getpid()} (tierlake pipeline run (the test's))" in line, line
            assert "wait for it to finish" in line
        # The scheduler skips its tick and says who holds the lock.
        assert asyncio.run(PipelineScheduler(settings).run_once()) == EXIT_LOCKED
    assert read_status(settings) == {}, "the refused runs wrote nothing"
    run = _tierlake("pipeline", "run", "--no-progress", env=store_env)
    assert run.returncode == 0, run.stderr[-2000:]


def test_spark_without_pyspark_prints_the_exact_install_line(store_env: dict[str, str],
                                                              tmp_path: Path) -> None:
    hidden = tmp_path / "no-pyspark"
    (hidden / "pyspark").mkdir(parents=True)
    (hidden / "pyspark" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    path = os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")])
    run = _tierlake("pipeline", "jobs", "--engine", "spark", "--no-progress",
                    env={**store_env, "PYTHONPATH": path})
    assert run.returncode == 1
    assert "pip install 'tierlake[spark]'" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_small_changes_wait_in_the_log_until_compacted(store_env: dict[str, str]) -> None:
    """After a few changes the extract only logs them (merge-on-read): the status shows
    them waiting, the jobs and readers already see them, `pipeline compact` merges them."""
    assert _tierlake("pipeline", "run", "--no-progress", env=store_env).returncode == 0
    settings = Settings()
    db = Database(settings.resolved_database_url)
    try:
        def cancel(s):  # type: ignore[no-untyped-def]
            for order in s.scalars(select(Order).order_by(Order.id).limit(10)):
                order.status = "cancelled"
        db.write(cancel)
    finally:
        db.dispose()
    lake = Lake(settings.resolved_lake_url)
    base_version = lake.table("current", "orders").version()  # type: ignore[union-attr]
    run = _tierlake("pipeline", "run", "--no-progress", env=store_env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "not merged" in run.stdout
    assert lake.table("current", "orders").version() == base_version  # type: ignore[union-attr]
    def statuses() -> dict[int, str]:
        orders = lake.read_arrow("current", "orders")
        return dict(zip(orders["id"].to_pylist(), orders["status"].to_pylist(), strict=True))

    logged = statuses()
    assert len(logged) == 800 and list(logged.values()).count("cancelled") >= 10
    status = _tierlake("pipeline", "status", env=store_env).stdout
    orders_line = next(line for line in status.splitlines() if " orders " in line
                       and "current" in line)
    assert " 800 " in orders_line and " 10 " in orders_line, orders_line

    compact = _tierlake("pipeline", "compact", env=store_env)
    assert compact.returncode == 0, compact.stderr[-3000:]
    assert "orders" in compact.stdout
    assert lake.table("current", "orders").version() == base_version + 1  # type: ignore[union-attr]
    assert statuses() == logged
    again = _tierlake("pipeline", "compact", env=store_env)
    assert "Nothing to merge" in again.stdout
