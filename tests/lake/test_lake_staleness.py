"""What a plain Delta reader of ``current/`` sees: stale by a bounded age, never silently wrong.

A plain reader (delta-rs, DuckDB, Athena) reads the base and applies nothing from ``raw/``;
the age bound (``extract_max_staleness_seconds``) makes the next extract merge a change
that has waited that long, whether or not that extract finds anything new.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from deltalake import DeltaTable
from lake_helpers import assert_current_matches, read_db_table, seed

from tierlake.data.db import Database
from tierlake.data.schema import Product, utcnow
from tierlake.lake import ExtractConfig, Lake, LakeError, current, extract
from tierlake.lake.retention import vacuum_lake


def _plain_read_equals_database(db: Database, lake: Lake, table: str) -> bool:
    plain = DeltaTable(lake.uri("current", table)).to_pyarrow_table()
    plain = plain.cast(plain.schema)  # as stored: what any Delta reader gets
    expected = read_db_table(db, table, lake.read_arrow("current", table).schema)
    got = plain.select(expected.column_names).cast(expected.schema).sort_by("id")
    return got.equals(expected.sort_by("id"))


def _change_one_price(db: Database) -> None:
    with db.engine.begin() as conn:
        first = conn.execute(sa.select(sa.func.min(Product.id))).scalar_one()
        conn.execute(sa.update(Product).where(Product.id == first).values(
            price_cents=Product.price_cents + 1, updated_at=utcnow()))


def _one_young_change_waiting(db: Database, lake: Lake) -> None:
    """A full load, then one changed product of twenty logged: below the volume rule, and
    younger than the age bound of this extract."""
    seed(db)
    waits = ExtractConfig(compact_ratio=0.5, max_staleness_seconds=3600)
    extract(db.url, lake, waits)
    _change_one_price(db)
    extract(db.url, lake, waits)


def test_a_small_change_waiting_past_the_age_is_merged_by_the_next_run(
        db: Database, lake: Lake) -> None:
    _one_young_change_waiting(db, lake)
    todo = current.pending(lake, "products")
    assert todo is not None and todo.rows == 1
    assert not _plain_read_equals_database(db, lake, "products")  # stale for a plain reader
    assert_current_matches(db, lake, ["products"])  # tierlake's readers apply the log

    time.sleep(1.1)  # the change is now older than the bound of the next run
    info = extract(db.url, lake, ExtractConfig(compact_ratio=0.5, max_staleness_seconds=1))
    assert info.table("products").rows == 0  # nothing new was read
    todo = current.pending(lake, "products")
    assert todo is not None and not todo.paths
    assert _plain_read_equals_database(db, lake, "products")
    assert_current_matches(db, lake, ["products"])


def test_without_an_age_bound_a_small_change_waits(db: Database, lake: Lake) -> None:
    seed(db)
    by_volume = ExtractConfig(compact_ratio=0.5, max_staleness_seconds=None)
    extract(db.url, lake, by_volume)
    _change_one_price(db)
    extract(db.url, lake, by_volume)
    time.sleep(1.1)
    extract(db.url, lake, by_volume)
    todo = current.pending(lake, "products")
    assert todo is not None and todo.rows == 1 and todo.age_seconds() > 1


def _applied(lake: Lake, table: str) -> int:
    todo = current.pending(lake, table)
    assert todo is not None
    return todo.applied


def _corrupt_log_entry(lake: Lake, table: str, version: int) -> None:
    """A log entry the current base needs, unreadable (a checkpoint lets the latest version
    load without it, so only the read of the base's raw version meets it)."""
    raw = lake.table("raw", f"db/{table}")
    assert raw is not None
    raw.create_checkpoint()
    entry = Path(lake.uri("raw", f"db/{table}")) / "_delta_log" / f"{version:020d}.json"
    entry.write_text("{not json")


def test_a_storage_fault_reading_the_base_version_is_an_error_not_everything_pending(
        db: Database, lake: Lake) -> None:
    _one_young_change_waiting(db, lake)
    applied = _applied(lake, "products")
    _corrupt_log_entry(lake, "products", applied)
    with pytest.raises(LakeError, match=r"cannot read version \d+ of the change log.*Json"):
        lake.read_arrow("current", "products")


def test_a_log_cleaned_up_after_a_checkpoint_still_reads_right(
        db: Database, lake: Lake) -> None:
    """The one normal case of a missing base version: retention removed its log entry."""
    seed(db)
    waits = ExtractConfig(compact_ratio=0.5, max_staleness_seconds=None)
    extract(db.url, lake, waits)
    for _ in range(3):
        _change_one_price(db)
        extract(db.url, lake, waits)
    raw = lake.table("raw", "db/products")
    assert raw is not None
    applied = _applied(lake, "products")
    raw.create_checkpoint()
    log_dir = Path(lake.uri("raw", "db/products")) / "_delta_log"
    for v in range(applied + 1):
        (log_dir / f"{v:020d}.json").unlink()
    assert_current_matches(db, lake, ["products"])
    prices = lake.read_arrow("current", "products", ["price_cents"])
    assert pc.sum(prices["price_cents"]).as_py() > 0
    vacuum_lake(lake, retention_hours=0, checkpoint_interval=1)
    assert_current_matches(db, lake, ["products"])
