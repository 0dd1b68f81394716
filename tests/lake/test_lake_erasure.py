"""Erasure reaches the lake: a deleted account's personal data is in no file of the lake.

The account is erased in the database the way the app does it (``customers.email`` NULL,
``name`` "", ``deleted_at`` set; the orders' ship_* "" except the country; ``updated_at``
moved), then the files are read directly with pyarrow, every file still on disk, whatever
version referenced it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from deltalake import DeltaTable
from lake_helpers import assert_current_matches, seed

from tierlake.data.db import Database
from tierlake.data.schema import Customer, Order, utcnow
from tierlake.lake import ExtractConfig, Lake, erasure, extract

SECRET = {"email": "erin.erasable@example.com", "name": "Erin Erasable-7f3a",
          "ship_name": "Erin Erasable-7f3a", "ship_address": "12 Forgotten Lane 7f3a",
          "ship_city": "Oblivion-7f3a", "ship_postcode": "ZZ9 7F3A"}
# merge-on-read (changes wait in raw/), and no age bound: the erasure must not rely on either
CONFIG = ExtractConfig(compact_ratio=0.5, max_staleness_seconds=None)


def _make_personal(db: Database) -> int:
    """The customer with the most orders gets unmistakable personal data; their id."""
    with db.engine.begin() as conn:
        who = conn.execute(sa.select(Order.customer_id).group_by(Order.customer_id)
                           .order_by(sa.func.count().desc()).limit(1)).scalar_one()
        conn.execute(sa.update(Customer).where(Customer.id == who).values(
            email=SECRET["email"], name=SECRET["name"], updated_at=utcnow()))
        conn.execute(sa.update(Order).where(Order.customer_id == who).values(
            ship_name=SECRET["ship_name"], ship_address=SECRET["ship_address"],
            ship_city=SECRET["ship_city"], ship_postcode=SECRET["ship_postcode"],
            updated_at=utcnow()))
    return who


def _erase_in_database(db: Database, who: int) -> None:
    now = utcnow()
    with db.engine.begin() as conn:
        conn.execute(sa.update(Customer).where(Customer.id == who).values(
            email=None, name="", deleted_at=now, updated_at=now))
        conn.execute(sa.update(Order).where(Order.customer_id == who).values(
            ship_name="", ship_address="", ship_city="", ship_postcode="", updated_at=now))


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _files_holding_secrets(lake: Lake) -> list[str]:
    """Every Parquet file under the four tables that still holds a secret value (listed
    and read through the lake's filesystem: a local directory or S3)."""
    fs = lake.filesystem()
    found = []
    for zone, name in (("raw", "db/customers"), ("raw", "db/orders"), ("current", "customers"),
                       ("current", "orders")):
        root = lake.uri(zone, name).removeprefix("s3://")
        for path in fs.find(root):
            if "_delta_log" in path or not path.endswith(".parquet"):
                continue
            with fs.open(path, "rb") as fh:
                table = pq.read_table(fh)
            values = {v for col in table.columns if _is_text(col.type) for v in col.to_pylist()}
            if values & set(SECRET.values()):
                found.append(path)
    return found


def _extract_history(db: Database, lake: Lake) -> int:
    seed(db)
    extract(db.url, lake, CONFIG)
    who = _make_personal(db)
    extract(db.url, lake, ExtractConfig(compact_ratio=0.0))  # into current/: a version
    with db.engine.begin() as conn:  # and more versions of current/ holding the data
        conn.execute(sa.update(Order).where(Order.customer_id == who).values(
            status="shipped", updated_at=utcnow()))
    extract(db.url, lake, ExtractConfig(compact_ratio=0.0))
    assert _files_holding_secrets(lake), "the test's personal data never reached the lake"
    return who


@pytest.fixture(params=["local", "s3"])
def any_lake(request: pytest.FixtureRequest) -> Lake:
    return request.getfixturevalue("lake" if request.param == "local" else "s3_lake")


def test_an_erased_account_leaves_no_personal_data_in_any_lake_file(
        db: Database, any_lake: Lake) -> None:
    lake = any_lake
    who = _extract_history(db, lake)
    _erase_in_database(db, who)
    info = extract(db.url, lake, CONFIG)

    assert info.erasure is not None and who in info.erasure.customers
    assert _files_holding_secrets(lake) == []
    assert_current_matches(db, lake)
    # a plain Delta reader of the bases sees the erasure too, and the books are kept
    orders = DeltaTable(lake.uri("current", "orders"),
                        storage_options=lake.storage_options).to_pyarrow_table()
    mine = orders.filter(pa.compute.equal(orders["customer_id"], who))
    assert mine.num_rows and set(mine["ship_name"].to_pylist()) == {""}
    assert all(c for c in mine["ship_country"].to_pylist())
    # the next run has nothing to erase (the marker moved) and changes nothing
    again = extract(db.url, lake, CONFIG)
    assert again.erasure is not None and again.erasure.files_deleted == 0
    assert_current_matches(db, lake)


def test_an_erasure_killed_halfway_is_finished_by_the_next_run(
        db: Database, lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    who = _extract_history(db, lake)
    _erase_in_database(db, who)
    real_purge = erasure._purge

    def crash(*args: object, **kwargs: object) -> int:  # after the orders' UPDATEs committed
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(erasure, "_purge", crash)
    with pytest.raises(KeyboardInterrupt):
        extract(db.url, lake, CONFIG)
    assert _files_holding_secrets(lake)  # the old files are still there
    monkeypatch.setattr(erasure, "_purge", real_purge)

    info = extract(db.url, lake, CONFIG)
    assert info.erasure is not None and who in info.erasure.customers
    assert _files_holding_secrets(lake) == []
    assert_current_matches(db, lake)
