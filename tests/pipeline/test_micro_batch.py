"""Micro-batches: an order placed in the store reaches the curated zone without a full run.

A real seeded store (SQLite), a real lake, orders placed through the app tier's own API
(in-process ASGI client over the same database), batches run as `tierlake up` runs them:
in-process for the details, then by the scheduler's worker process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import select

from tierlake.app.main import create_app
from tierlake.config import Settings
from tierlake.data import migrate
from tierlake.data.db import Database
from tierlake.data.schema import Order
from tierlake.lake.store import Lake
from tierlake.pipeline.lock import pipeline_lock
from tierlake.pipeline.microbatch import ChangeProbe, run_micro_batch, store_jobs
from tierlake.pipeline.report import print_status
from tierlake.pipeline.run import run_pipeline
from tierlake.pipeline.scheduler import PipelineScheduler
from tierlake.pipeline.status import freshness, read_status
from tierlake.seed import seed_store

pytestmark = pytest.mark.timeout(300)
SHIPPING = {"shipping": {"name": "Ada Lovelace", "address": "12 Analytical Row",
                         "city": "London", "postcode": "N1 7AA", "country": "GB"}}
ORDER_JOBS = {"daily_sales", "product_performance", "customer_segments", "cohort_retention"}
CLICK_JOBS = {"traffic_hourly", "top_pages", "top_products", "funnel", "lb_minutely"}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A small seeded store with its lake built by one full run, shared by the module's
    tests (each compares before and after its own orders)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("TIERLAKE_DATA_DIR", str(tmp_path_factory.mktemp("micro") / "var"))
        settings = Settings()
        settings.data_dir.mkdir(parents=True)
        db = Database(settings.resolved_database_url)
        migrate.upgrade(db.engine)
        seed_store(db, products=30, customers=60, orders=300, months=2, seed=7,
                   events_dir=settings.resolved_events_dir, admin_email="admin@example.com",
                   admin_password="admin-password-1", progress=False)
        db.dispose()
        run_pipeline(settings, progress=False)
        yield settings


@pytest.fixture(scope="module")
def shop(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def place_order(shop: TestClient) -> dict[str, Any]:
    """A new shopper buys two of product 1 (checkout takes stock, writes the order)."""
    r = shop.post("/api/v1/auth/register", json={
        "email": f"fresh-{uuid.uuid4().hex[:10]}@example.com", "password": "password-123",
        "name": "Fresh Shopper"})
    assert r.status_code == 201, r.text
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    r = shop.put("/api/v1/cart/items/1", json={"quantity": 2}, headers=headers)
    assert r.status_code == 200, r.text
    r = shop.post("/api/v1/orders", json=SHIPPING,
                  headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    order: dict[str, Any] = r.json()
    return order


def revenue(lake: Lake) -> int:
    """All revenue in ``daily_sales`` (cents)."""
    return int(pc.sum(lake.read_arrow("curated", "daily_sales")["revenue_cents"]).as_py())


def versions(lake: Lake, zone: str = "curated") -> dict[str, int]:
    return {t.name: t.version for t in lake.list_tables() if t.zone == zone}


def test_an_order_reaches_the_curated_zone_in_one_micro_batch(
        settings: Settings, shop: TestClient) -> None:
    lake = Lake(settings.resolved_lake_url)
    before, curated = revenue(lake), versions(lake)
    probe = ChangeProbe(settings.resolved_database_url, settings.extract.exclude)
    try:
        first = run_micro_batch(settings, probe)  # the worker's first look: extracts once
        assert first.ok and first.changed == {} and first.jobs == {}, first
        assert versions(lake) == curated, "nothing changed, so no job ran"
        order = place_order(shop)
        info = run_micro_batch(settings, probe, next_refresh_at="2030-01-01T00:00:00+00:00")
    finally:
        probe.close()
    assert info.ok and info.skipped is None, info
    assert {"orders", "order_lines", "inventory"} <= set(info.changed), info.changed
    assert set(info.jobs) >= ORDER_JOBS and not set(info.jobs) & CLICK_JOBS, info.jobs
    goods = sum(line["line_total_cents"] for line in order["lines"])
    assert revenue(lake) == before + goods
    after = versions(lake)
    assert {n for n in after if after[n] != curated.get(n)} == set(info.jobs)
    status = read_status(settings)
    fresh = freshness(status)
    assert fresh.data_as_of is not None and fresh.data_as_of.isoformat() == info.started_at
    assert fresh.curated_changed_at is not None and fresh.curated_changed_at >= fresh.data_as_of
    assert fresh.next_refresh_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert status["micro_batch"]["jobs"] == info.jobs and status["ok"] is True
    shown = Console(record=True, width=300)
    print_status(shown, [], status)  # what `tierlake pipeline status` prints
    text = shown.export_text()
    assert "last micro-batch: ok" in text and "orders 1" in text and "sales_lines" in text
    assert "curated zone: the store as of" in text


def test_an_idle_store_costs_one_probe_and_moves_the_as_of_time(
        settings: Settings, shop: TestClient) -> None:
    lake = Lake(settings.resolved_lake_url)
    probe = ChangeProbe(settings.resolved_database_url, settings.extract.exclude)
    try:
        run_micro_batch(settings, probe)
        raw = versions(lake, "raw")
        curated = versions(lake)
        idle = run_micro_batch(settings, probe)
        assert idle.skipped == "no change" and idle.extract_seconds == 0, idle
        assert versions(lake, "raw") == raw and versions(lake) == curated
        assert freshness(read_status(settings)).data_as_of.isoformat() == idle.started_at  # type: ignore[union-attr]
        place_order(shop)
        busy = run_micro_batch(settings, probe)
        assert busy.skipped is None and "orders" in busy.changed, busy
    finally:
        probe.close()


def test_a_batch_while_another_run_holds_the_lock_is_skipped(
        settings: Settings, shop: TestClient) -> None:
    place_order(shop)
    probe = ChangeProbe(settings.resolved_database_url, settings.extract.exclude)
    lake = Lake(settings.resolved_lake_url)
    status, raw = read_status(settings), versions(lake, "raw")
    try:
        with pipeline_lock(settings, "tierlake pipeline run (the test's)"):
            info = run_micro_batch(settings, probe)
        assert info.skipped is not None and "the test's" in info.skipped, info
        assert read_status(settings) == status and versions(lake, "raw") == raw
        info = run_micro_batch(settings, probe)  # the lock is free: the order goes in
        assert "orders" in info.changed, info
    finally:
        probe.close()


def test_orders_across_many_batches_land_exactly_once(settings: Settings,
                                                      shop: TestClient) -> None:
    """Batches between orders, none, or two in a row: the lake's view of `orders` is the
    database's, and the curated revenue counts each order once."""
    lake = Lake(settings.resolved_lake_url)
    probe = ChangeProbe(settings.resolved_database_url, settings.extract.exclude)
    placed = []
    try:
        for batches in (0, 2, 1):
            placed.append(place_order(shop))
            for _ in range(batches):
                run_micro_batch(settings, probe)
    finally:
        probe.close()
    db = Database(settings.resolved_database_url, pool_size=1)
    try:
        with db.read() as s:
            ids = sorted(s.scalars(select(Order.id)).all())
            cancelled = s.scalars(select(Order.id).where(Order.status == "cancelled")).all()
    finally:
        db.dispose()
    assert sorted(lake.read_arrow("current", "orders")["id"].to_pylist()) == ids
    assert {o["id"] for o in placed} <= set(ids) and not {o["id"] for o in placed} & set(
        cancelled)
    sold = lake.read_arrow("current", "order_lines")
    live = pc.is_in(sold["order_id"], value_set=__import__("pyarrow").array(
        [i for i in ids if i not in set(cancelled)]))
    assert revenue(lake) == pc.sum(pc.filter(sold["line_total_cents"], live)).as_py()


def test_store_jobs_are_those_on_changed_store_tables_only() -> None:
    on_orders = {j.name for j in store_jobs({"orders"})}
    assert on_orders >= ORDER_JOBS and not on_orders & CLICK_JOBS
    assert {j.name for j in store_jobs({"inventory"})} == {"product_performance"}
    assert store_jobs({"carts"}) == [] and store_jobs(set()) == []


def test_the_schedulers_worker_brings_an_order_in_and_is_replaced_when_it_dies(
        settings: Settings, shop: TestClient) -> None:
    """The scheduler's micro-batch worker (a real child process, driven over its pipe) picks
    up an order; killed, it is replaced on the next batch; stopping the scheduler ends it.
    (The loop that alternates full runs and batches runs under `tierlake up` in
    tests/e2e/test_bi_freshness.py.)"""
    scheduled = Settings(pipeline={"interval_seconds": 3600, "micro_batch_seconds": 0.5})
    lake = Lake(settings.resolved_lake_url)

    async def run() -> tuple[int, int]:
        scheduler = PipelineScheduler(scheduled)
        try:
            assert (await scheduler.micro_once()) is not None  # the worker's first look
            first = scheduler.worker_pid
            assert first is not None
            before = revenue(lake)
            order = place_order(shop)
            result = await scheduler.micro_once()
            assert result is not None and "orders" in result["changed"], result
            goods = sum(line["line_total_cents"] for line in order["lines"])
            assert revenue(lake) == before + goods
            os.killpg(first, signal.SIGKILL)
            await asyncio.sleep(0.2)
            again = await scheduler.micro_once()  # by a new worker
            assert again is not None and again["ok"], again
            second = scheduler.worker_pid
            assert second is not None and second != first
            return first, second
        finally:
            await scheduler.stop()

    for worker in asyncio.run(run()):
        with pytest.raises(ProcessLookupError):
            os.killpg(worker, 0)  # each worker and its group are gone


def test_the_change_probe_sees_inserts_updates_and_deletes_on_every_backend(
        db: Database) -> None:
    """One query per look, on SQLite, MariaDB and PostgreSQL: unchanged store, same
    fingerprint; an insert, an update and a delete (its tombstone) each change it."""
    from sqlalchemy import update

    from tierlake.data.schema import Category, DeletedRow

    probe = ChangeProbe(db.url, Settings().extract.exclude)
    try:
        empty = probe.look()
        assert empty is not None and empty == probe.look()
        with db.session() as s:
            s.add(Category(slug="books", name="Books"))
        inserted = probe.look()
        assert inserted != empty and inserted == probe.look()
        time.sleep(0.01)  # updated_at has microseconds; some clocks tick coarser
        with db.session() as s:
            s.execute(update(Category).values(name="Books and more"))
        updated = probe.look()
        assert updated != inserted
        with db.session() as s:
            s.add(DeletedRow(table_name="categories", row_key="999"))
        assert probe.look() != updated
    finally:
        probe.close()
