"""Failures say what to do and leave the lake at its last good version."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from lake_helpers import assert_current_matches, seed

import servers
from tierlake.app.schemas import ProductUpdate
from tierlake.app.services import admin
from tierlake.data.db import Database
from tierlake.data.schema import UTCDateTime, utcnow
from tierlake.errors import DatabaseUnavailableError
from tierlake.lake import ExtractConfig, ExtractError, Lake, LakeError, extract


@pytest.mark.parametrize("url", ["gs://bucket/lake", "s3://", "  "])
def test_a_bad_lake_url_is_refused_with_the_fix(url: str) -> None:
    with pytest.raises(LakeError, match="TIERLAKE_LAKE_URL"):
        Lake(url)


def test_an_unreachable_database_is_a_clear_error(lake: Lake, tmp_path: Path) -> None:
    url = f"mysql+pymysql://app:app@127.0.0.1:{servers.free_port()}/store"
    with pytest.raises(DatabaseUnavailableError, match="cannot reach the database.*Check"):
        extract(url, lake)
    assert lake.list_tables() == []
    with pytest.raises(DatabaseUnavailableError):
        extract(f"sqlite:///{tmp_path}/no/such/dir/store.db", lake)


def test_a_table_of_an_unmappable_type_fails_alone(db: Database, lake: Lake) -> None:
    """``m_odd`` sorts between ``inventory`` and ``order_lines``: the tables before and after
    it are extracted in the same run, it stays at its last good version."""
    seed(db)
    odd = sa.Table("m_odd", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("name", sa.String(20)), sa.Column("updated_at", UTCDateTime()))
    odd.create(db.engine)
    try:
        with db.engine.begin() as conn:
            conn.execute(odd.insert().values(id=1, name="one", updated_at=utcnow()))
        extract(db.url, lake)
        before = {t.uri: t.version for t in lake.list_tables() if "m_odd" in t.uri}
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE m_odd ADD COLUMN opens TIME")
            conn.execute(odd.update().values(name="changed", updated_at=utcnow()))
        with db.read() as s:
            first_product = s.execute(sa.text("SELECT min(id) FROM products")).scalar()
        admin.update_product(db, first_product, ProductUpdate(price_cents=999))

        with pytest.raises(ExtractError) as failed:
            extract(db.url, lake)
        message = str(failed.value)
        assert "m_odd.opens" in message and "extract.exclude" in message
        assert [t.table for t in failed.value.info.failed] == ["m_odd"]
        assert {t.uri: t.version for t in lake.list_tables() if "m_odd" in t.uri} == before
        assert lake.read_arrow("current", "m_odd")["name"].to_pylist() == ["one"]
        assert failed.value.info.table("products").rows == 1  # the others went on
        assert_current_matches(db, lake, ["products", "orders"])

        fixed = ExtractConfig(exclude=[*ExtractConfig().exclude, "m_odd.opens"])
        assert extract(db.url, lake, fixed).table("m_odd").rows == 1
        assert lake.read_arrow("current", "m_odd")["name"].to_pylist() == ["changed"]
    finally:
        odd.drop(db.engine)


def test_a_failed_write_commits_nothing(lake: Lake) -> None:
    lake.write("curated", "totals", pa.table({"n": [1, 2]}))

    def failing():  # type: ignore[no-untyped-def]
        yield pa.record_batch({"n": [3]})
        raise RuntimeError("the job died mid-stream")

    reader = pa.RecordBatchReader.from_batches(pa.schema({"n": pa.int64()}), failing())
    with pytest.raises(RuntimeError, match="mid-stream"):
        lake.write("curated", "totals", reader)
    table = lake.table("curated", "totals")
    assert table is not None and table.version() == 0
    assert lake.read_arrow("curated", "totals")["n"].to_pylist() == [1, 2]
