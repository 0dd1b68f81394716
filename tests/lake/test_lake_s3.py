"""The extract end to end on an S3 endpoint (moto's server), and the lake's S3 errors."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from lake_helpers import assert_current_matches, seed
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_lake_extract import make_changes

from tierlake.data.db import Database
from tierlake.data.schema import Order, OrderLine, Product
from tierlake.lake import Lake, LakeError, extract


def test_extract_to_s3_mirrors_the_database(db: Database, s3_lake: Lake, tmp_path: Path) -> None:
    events = tmp_path / "events"
    seed(db, events_dir=events, orders=10)
    first = extract(db.url, s3_lake, events_dir=events)
    assert first.files_ingested > 0 and first.lake_bytes > 0
    assert_current_matches(db, s3_lake)
    leaver = make_changes(db)["leaver"]
    with db.read() as session:  # erased with the account: their orders' addresses moved
        leavers_orders = session.scalar(
            select(func.count()).where(Order.customer_id == leaver))
    second = extract(db.url, s3_lake, events_dir=events)
    assert second.table("orders").rows == leavers_orders and second.table("products").rows == 2
    assert_current_matches(db, s3_lake)
    assert all(f.startswith(s3_lake.root + "/current/orders/")
               for f in s3_lake.files("current", "orders"))
    catalog = {(t.zone, t.name) for t in s3_lake.list_tables()}
    assert ("current", "orders") in catalog and ("raw", "clickstream/events") in catalog

    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    con.register_filesystem(s3_lake.filesystem())
    files = s3_lake.files("current", "orders")
    assert con.execute("select count(*) from read_parquet($f)", {"f": files}).fetchone() == (10,)


def test_a_missing_bucket_is_named_with_the_fix(s3_env: str, tmp_path: Path) -> None:
    lake = Lake("s3://missing-bucket/lake")
    with pytest.raises(LakeError, match=r"missing-bucket.*does not exist.*aws s3 mb"):
        lake.check()
    with pytest.raises(LakeError, match="missing-bucket"):
        extract(f"sqlite:///{tmp_path / 'none.db'}", lake)
    with pytest.raises(LakeError, match="missing-bucket"):
        lake.write("curated", "x", __import__("pyarrow").table({"a": [1]}))


def sold_order_categories(store: Database) -> int:
    """``daily_sales``'s total of ``orders`` by its definition, read from the database: an
    order counts once per category of its lines (and on one day), cancelled orders not at all."""
    pairs = (select(OrderLine.order_id, Product.category_id).distinct()
             .join(Product, Product.id == OrderLine.product_id)
             .join(Order, Order.id == OrderLine.order_id)
             .where(Order.status != "cancelled").subquery())
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(pairs)) or 0)


def test_the_whole_pipeline_runs_on_s3(s3_lake: Lake, tmp_path: Path) -> None:
    """Extract and every job, end to end, with the lake on the S3 endpoint (DuckDB engine)."""
    from tierlake.config import Settings
    from tierlake.data import migrate
    from tierlake.pipeline.run import run_pipeline

    store = Database(f"sqlite:///{tmp_path / 'store.db'}")
    migrate.upgrade(store.engine)
    seed(store, events_dir=tmp_path / "events", orders=200)
    settings = Settings(data_dir=tmp_path / "var", lake_url=s3_lake.root,
                        events={"dir": tmp_path / "events"}, database_url=store.url)
    info = run_pipeline(settings, progress=False)
    assert {j.name for j in info.jobs} >= {"daily_sales", "funnel", "customer_segments"}
    curated = {t.name: t for t in s3_lake.list_tables() if t.zone == "curated"}
    assert curated["daily_sales"].uri.startswith("s3://")
    sales = s3_lake.read_arrow("curated", "daily_sales")
    before = sum(sales["orders"].to_pylist())
    assert before == sold_order_categories(store) > 0

    # Five orders cancelled: logged in raw on S3, not merged; the jobs apply the log.
    def cancel(s: Session) -> None:
        for order in s.scalars(select(Order).where(Order.status != "cancelled")
                               .order_by(Order.id).limit(5)):
            order.status = "cancelled"

    store.write(cancel)
    store.dispose()
    version = s3_lake.table("current", "orders").version()  # type: ignore[union-attr]
    run_pipeline(settings, progress=False)
    assert s3_lake.table("current", "orders").version() == version  # type: ignore[union-attr]
    sales = s3_lake.read_arrow("curated", "daily_sales")
    # The cancelled orders leave sales: each one once per category of its lines (with
    # lake_helpers' seed, 12 (order, category) pairs: more than one per order).
    after = sum(sales["orders"].to_pylist())
    assert after == sold_order_categories(store) < before
