"""The database extract: full load, incremental changes, deletes, new columns, the late commit.

Every test runs on each selected backend (SQLite, MariaDB, PostgreSQL) and compares
``current/`` with the database table row for row.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from lake_helpers import assert_current_matches, seed
from sqlalchemy import func, select

from tierlake.app.schemas import CustomerCreate, ProductUpdate, StockSet
from tierlake.app.services import accounts, admin, carts
from tierlake.data.db import Database
from tierlake.data.schema import Category, Customer, Order, Product, utcnow
from tierlake.lake import ExtractConfig, ExtractInfo, Lake, current, extract
from tierlake.lake import extract as run_extract
from tierlake.lake.sources.database import watermark_app_id
from tierlake.seed import DEMO_PASSWORD


def make_changes(db: Database) -> dict[str, int]:
    """A day of the store: price change, retirement, stock, carts, a new and a deleted account.
    Returns the ids involved."""
    with db.read() as s:
        products = s.scalars(select(Product.id).order_by(Product.id).limit(4)).all()
        buyer, leaver = s.scalars(
            select(Customer.id).where(Customer.is_admin.is_(False)).order_by(Customer.id)
            .limit(2)).all()
    admin.update_product(db, products[0], ProductUpdate(price_cents=1234))
    admin.retire_product(db, products[1])
    admin.set_stock(db, products[2], StockSet(quantity=77))
    carts.set_item(db, buyer, products[2], 2)
    carts.set_item(db, buyer, products[3], 1)
    carts.set_item(db, buyer, products[3], 0)  # really deleted: a tombstone
    carts.set_item(db, leaver, products[2], 1)
    accounts.delete_account(db, leaver, DEMO_PASSWORD)  # anonymised; cart and items deleted
    body = CustomerCreate(email="new-buyer@example.com", password="password-123", name="New")
    new = accounts.register(db, body, ttl_hours=1)
    return {"new_customer": new.customer.id, "leaver": leaver}


@pytest.mark.parametrize("compact_ratio", [0.0, 0.5], ids=["merge-each-run", "merge-on-read"])
def test_full_then_incremental_extract_mirrors_the_database(
        db: Database, lake: Lake, compact_ratio: float) -> None:
    """Merged into current/ on every run, or logged in raw and applied by readers: the same
    view of the database either way."""
    seed(db)
    config = ExtractConfig(compact_ratio=compact_ratio)
    merged = compact_ratio == 0

    def extract(url: str, lake: Lake) -> ExtractInfo:
        return run_extract(url, lake, config)

    first = extract(db.url, lake)
    assert {t.mode for t in first.tables} == {"full"}
    assert first.table("orders").rows == first.table("orders").inserted == 40
    assert_current_matches(db, lake)
    raw = lake.read_arrow("raw", "db/customers")
    assert "password_hash" not in raw.column_names
    assert {"_op", "_extracted_at", "_batch"} <= set(raw.column_names)
    assert raw.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert lake.read_arrow("current", "products").schema.field("active").type == pa.bool_()

    ids = make_changes(db)
    second = extract(db.url, lake)
    assert {t.mode for t in second.tables} == {"incremental"}
    moved = {t.table: t.rows for t in second.tables}
    # Only changed rows move: 2 products, 1 stock level, the new and the anonymised customer,
    # and the anonymised customer's orders (their shipping name and address erased).
    with db.read() as s:
        leavers_orders = s.scalar(select(func.count()).where(Order.customer_id == ids["leaver"]))
    assert leavers_orders and moved["orders"] == leavers_orders
    assert moved["order_lines"] == moved["categories"] == 0
    assert moved["products"] == 2 and moved["inventory"] == 1 and moved["customers"] == 2
    assert second.table("cart_items").deleted == 0  # inserted and deleted between two runs
    if merged:
        assert second.table("products").updated == 2 and second.table("products").pending == 0
    else:  # logged: current/ is where the full load left it, readers apply the log
        assert second.table("products").pending == 2 and second.table("products").updated == 0
        assert lake.table("current", "products").version() == 0  # type: ignore[union-attr]
    assert_current_matches(db, lake)
    leaver = lake.read_arrow("current", "customers").filter(pc.field("id") == ids["leaver"])
    assert leaver["email"].to_pylist() == [None] and leaver["deleted_at"][0].is_valid

    carts.set_item(db, ids["new_customer"], _product_ids(db)[2], 1)
    third = extract(db.url, lake)
    assert third.rows == 2  # the new cart and its item, nothing else
    if merged:
        assert third.table("cart_items").inserted == third.table("carts").inserted == 1
    carts.set_item(db, ids["new_customer"], _product_ids(db)[2], 0)
    fourth = extract(db.url, lake)
    assert fourth.table("cart_items").rows == 1
    if merged:
        assert fourth.table("cart_items").deleted == 1
    assert lake.read_arrow("current", "cart_items").num_rows == 1
    assert_current_matches(db, lake)

    versions = {i.uri: i.version for i in lake.list_tables()}
    idle = extract(db.url, lake)
    assert idle.rows == 0
    assert {i.uri: i.version for i in lake.list_tables()} == versions  # nothing committed


def _product_ids(db: Database) -> list[int]:
    with db.read() as s:
        return list(s.scalars(select(Product.id).order_by(Product.id)))


def test_a_new_column_appears_in_raw_and_current_without_a_manual_step(
        db: Database, lake: Lake) -> None:
    seed(db)
    extract(db.url, lake)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE products ADD COLUMN gift_note VARCHAR(100)")
        # A column with a default fills every existing row without moving updated_at.
        conn.exec_driver_sql("ALTER TABLE products ADD COLUMN gift_wrap INTEGER DEFAULT 3 NOT NULL")
    try:
        first = _product_ids(db)[0]
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE products SET gift_note = 'with a bow', updated_at = :u "
                                 "WHERE id = :i"), {"u": _naive(utcnow()), "i": first})
        info = extract(db.url, lake)
        assert info.table("products").mode == "full"  # a new column: products read again
        for zone, name in (("raw", "db/products"), ("current", "products")):
            assert {"gift_note", "gift_wrap"} <= set(lake.read_arrow(zone, name).column_names)
        assert_current_matches(db, lake, ["products"])
        notes = lake.read_arrow("current", "products").filter(pc.field("id") == first)
        assert notes["gift_note"].to_pylist() == ["with a bow"]
        assert set(lake.read_arrow("current", "products")["gift_wrap"].to_pylist()) == {3}
        assert extract(db.url, lake).table("products").mode == "incremental"
    finally:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE products DROP COLUMN gift_note")
            conn.exec_driver_sql("ALTER TABLE products DROP COLUMN gift_wrap")


def _naive(when):  # type: ignore[no-untyped-def]
    return when.replace(tzinfo=None)


def test_a_late_commit_with_an_older_updated_at_is_still_picked_up(
        db: Database, lake: Lake) -> None:
    """The classic gap: a transaction stamped before the watermark commits after a run."""
    seed(db)
    extract(db.url, lake)
    with db.session() as s:  # moves the watermark to "now"
        s.scalars(select(Category)).first().description = "fresh"  # type: ignore[union-attr]
    extract(db.url, lake)
    watermark = lake.table("raw", "db/categories").transaction_version(  # type: ignore[union-attr]
        watermark_app_id("categories"))
    stamped = utcnow() - timedelta(seconds=10)  # began 10 s ago, commits only now
    with db.session() as s:
        s.add(Category(slug="late", name="Late", created_at=stamped, updated_at=stamped))
    stamped_us = (stamped - stamped.replace(year=1970, month=1, day=1, hour=0, minute=0,
                                            second=0, microsecond=0)) // timedelta(microseconds=1)
    assert stamped_us < watermark  # older than what the lake has already seen
    info = extract(db.url, lake, ExtractConfig(lookback_seconds=60))
    assert info.table("categories").rows == 1
    assert_current_matches(db, lake, ["categories"])


def test_progress_bars_and_catalog(db: Database, tmp_path: Path, lake: Lake) -> None:
    events = tmp_path / "events"
    seed(db, events_dir=events, orders=5)
    info = extract(db.url, lake, events_dir=events, progress=True)
    assert info.files_ingested > 0 and info.lake_bytes > 0 and info.elapsed_seconds > 0
    catalog = {(t.zone, t.name): t for t in lake.list_tables()}
    assert ("raw", "clickstream/events") in catalog and ("current", "orders") in catalog
    orders = catalog[("current", "orders")]
    assert orders.rows == 5 and orders.version == 0 and orders.files == 1
    assert orders.metadata == {"tierlake.raw_version": "0"}
    assert catalog[("raw", "clickstream/events")].partition_columns == ["month"]
    assert catalog[("raw", "db/orders")].metadata["tierlake.mode"] == "full"
    assert all(Path(f).is_file() for f in lake.files("current", "orders"))


def test_a_run_stopped_between_raw_and_current_is_finished_by_the_next(
        db: Database, lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """The raw batch (and its watermark) committed, the process died before the MERGE."""
    seed(db)
    extract(db.url, lake)
    admin.update_product(db, _product_ids(db)[0], ProductUpdate(price_cents=4321))
    real_apply, calls = current.apply_changes, []

    def dies_after_the_raw_commit(lake_, table, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(table)
        if table == "products" and calls.count("products") == 2:  # 1st: catch-up, 2nd: merge
            raise SystemExit("killed")
        return real_apply(lake_, table, *args, **kwargs)

    monkeypatch.setattr(current, "apply_changes", dies_after_the_raw_commit)
    merge_each_run = ExtractConfig(compact_ratio=0)
    with pytest.raises(SystemExit):
        extract(db.url, lake, merge_each_run)
    monkeypatch.setattr(current, "apply_changes", real_apply)
    raw, cur = lake.table("raw", "db/products"), lake.table("current", "products")
    assert raw.version() == 1 and cur.transaction_version(  # type: ignore[union-attr]
        "tierlake.current.products") == 0  # current is one raw version behind
    assert_current_matches(db, lake, ["products"])  # readers apply what is not merged
    info = extract(db.url, lake, merge_each_run)
    assert info.table("products").updated == 1 and info.table("products").rows == 0
    assert_current_matches(db, lake, ["products"])


def test_the_log_is_merged_once_enough_runs_wait(db: Database, lake: Lake) -> None:
    """Merge-on-read keeps readers' work bounded: after max_pending_commits logged runs the
    next one merges, however few the changes; compacting changes nothing readers see."""
    seed(db)
    config = ExtractConfig(compact_ratio=1e9, max_pending_commits=2)  # by size alone: never
    extract(db.url, lake, config)
    first = _product_ids(db)[0]
    versions = []
    for price in (1001, 1002, 1003):
        admin.update_product(db, first, ProductUpdate(price_cents=price))
        info = extract(db.url, lake, config)
        versions.append(lake.table("current", "products").version())  # type: ignore[union-attr]
        assert_current_matches(db, lake, ["products"])
        assert info.table("products").rows == 1
    assert versions == [0, 0, 1]  # two runs logged, the third merged all three
    assert current.pending(lake, "products").paths == ()  # type: ignore[union-attr]
    prices = lake.read_arrow("current", "products").filter(pc.field("id") == first)
    assert prices["price_cents"].to_pylist() == [1003]
