"""Retention: vacuum leaves a table's folder holding its rows, and time travel within the
retention period keeps working."""

from __future__ import annotations

import pyarrow.dataset as ds
import sqlalchemy as sa
from deltalake import DeltaTable
from lake_helpers import assert_current_matches, seed

from tierlake.data.db import Database
from tierlake.data.schema import Order, utcnow
from tierlake.lake import ExtractConfig, Lake, extract
from tierlake.lake.retention import vacuum_lake

EACH_RUN = ExtractConfig(compact_ratio=0.0)  # every run MERGEs: current/ files are rewritten


def _runs(db: Database, lake: Lake, n: int) -> None:
    seed(db)
    extract(db.url, lake, EACH_RUN)
    for i in range(n):
        with db.engine.begin() as conn:
            conn.execute(sa.update(Order).where(Order.id % 3 == i % 3).values(
                status=f"step-{i}", updated_at=utcnow()))
        extract(db.url, lake, EACH_RUN)


def _folder_rows(lake: Lake, zone: str, name: str) -> int:
    return ds.dataset(lake.uri(zone, name), format="parquet").count_rows()


def test_after_vacuum_a_tables_folder_read_as_parquet_holds_exactly_its_rows(
        db: Database, lake: Lake) -> None:
    _runs(db, lake, 4)
    orders = lake.read_arrow("current", "orders").num_rows
    assert _folder_rows(lake, "current", "orders") > orders  # old versions' files

    done = vacuum_lake(lake, retention_hours=0, checkpoint_interval=2)
    vacuumed = {v.table: v for v in done}
    assert vacuumed["current/orders"].files > 0 and vacuumed["current/orders"].bytes > 0
    assert vacuumed["current/orders"].checkpoint is not None
    for info in lake.list_tables():
        plain = ds.dataset(lake.uri(info.zone, info.name), format="parquet",
                           partitioning="hive").count_rows()
        assert plain == info.rows, info.uri
    assert _folder_rows(lake, "current", "orders") == orders
    assert_current_matches(db, lake)
    # the lake keeps working after it: another change, another run
    with db.engine.begin() as conn:
        conn.execute(sa.update(Order).values(status="done", updated_at=utcnow()))
    extract(db.url, lake, EACH_RUN)
    assert_current_matches(db, lake)
    assert vacuum_lake(lake, retention_hours=0, dry_run=True)


def test_time_travel_within_the_default_retention_still_works(
        db: Database, lake: Lake) -> None:
    _runs(db, lake, 3)
    uri = lake.uri("current", "orders")
    before = {v: DeltaTable(uri, version=v).to_pyarrow_table()
              for v in range(DeltaTable(uri).version() + 1)}
    done = vacuum_lake(lake)  # 7 days: everything removed here is younger
    assert sum(v.files for v in done) == 0
    for version, rows in before.items():
        assert DeltaTable(uri, version=version).to_pyarrow_table().equals(rows)


def test_a_dry_run_removes_nothing(db: Database, lake: Lake) -> None:
    _runs(db, lake, 2)
    listed = vacuum_lake(lake, retention_hours=0, dry_run=True)
    assert sum(v.files for v in listed) > 0
    again = vacuum_lake(lake, retention_hours=0, dry_run=True)
    assert [(v.table, v.files, v.bytes) for v in again] == [
        (v.table, v.files, v.bytes) for v in listed]
