"""The Sales dashboard's KPI tiles equal plain SQL on the store's own database.

The store (SQLite, MariaDB: every backend of ``TIERLAKE_TEST_DATABASES``) is seeded, the
pipeline extracts it into a lake and runs the jobs, and the BI engine reads the lake only;
each tile, for several date ranges and the previous period of each, is compared with SQL
written straight against ``orders`` and ``order_lines``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from engine_lake import BiLake, build_bi_lake
from sqlalchemy import bindparam, text

import servers
from tierlake.bi.engine import BiEngine
from tierlake.bi.model import Principal
from tierlake.data.db import Database
from tierlake.data.schema import UTCDateTime

ADMIN = Principal(email="admin@bi.test", role="admin")
RANGES = [(date(2026, 3, 1), date(2026, 3, 20)), (date(2026, 2, 14), date(2026, 2, 14)),
          (date(2025, 10, 1), date(2026, 1, 31))]
TILES = ("revenue", "orders", "average_order_value", "new_customers", "returning_customers")

KPI_SQL = """
WITH sold AS (
  SELECT o.id, o.customer_id, o.placed_at FROM orders o WHERE o.status != 'cancelled'
), firsts AS (
  SELECT customer_id, MIN(placed_at) AS first_at FROM sold GROUP BY customer_id
), period AS (
  SELECT * FROM sold WHERE placed_at >= :start AND placed_at < :stop
)
SELECT
  (SELECT COALESCE(SUM(l.line_total_cents), 0) FROM order_lines l
     JOIN period p ON p.id = l.order_id) AS revenue_cents,
  (SELECT COUNT(*) FROM period) AS orders,
  (SELECT COUNT(DISTINCT customer_id) FROM period) AS customers,
  (SELECT COUNT(*) FROM firsts WHERE first_at >= :start AND first_at < :stop) AS new_customers
"""


@pytest.fixture(scope="module")
def store_lake(database_server: servers.DatabaseServer,
               tmp_path_factory: pytest.TempPathFactory) -> BiLake:
    """A seeded store on the backend and the lake the pipeline built from it."""
    name = "bi_kpi"
    url = database_server.create_database(name)
    return build_bi_lake(tmp_path_factory.mktemp(f"bi-kpi-{database_server.name}"), url)


@pytest.fixture(scope="module")
def engine(store_lake: BiLake) -> Iterator[BiEngine]:
    built = BiEngine(store_lake.lake_url)
    yield built
    built.close()


def _store_kpis(store: BiLake, start: date, end: date) -> dict[str, float | int]:
    """The tiles computed on the store's database for the days ``start``..``end`` (UTC)."""
    query = text(KPI_SQL).bindparams(bindparam("start", type_=UTCDateTime()),
                                     bindparam("stop", type_=UTCDateTime()))
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    stop = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    db = Database(store.database_url)
    try:
        with db.engine.connect() as conn:
            cents, orders, customers, new = conn.execute(
                query, {"start": begin, "stop": stop}).one()
    finally:
        db.dispose()
    cents, orders, customers, new = int(cents), int(orders), int(customers), int(new)
    return {
        "revenue": cents / 100,
        "orders": orders,
        # half up to a whole cent, in integers
        "average_order_value": ((2 * cents + orders) // (2 * orders)) / 100 if orders else None,
        "new_customers": new,
        "returning_customers": customers - new,
    }


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_sales_tiles_equal_sql_on_the_store(engine: BiEngine, store_lake: BiLake,
                                            start: date, end: date) -> None:
    sales = engine.dashboard("sales")
    filters = engine.parse_filters(sales, {"start": start.isoformat(), "end": end.isoformat()})
    tiles = {r.visual: r for r in engine.run_dashboard(sales, filters, ADMIN)}
    expected = _store_kpis(store_lake, start, end)
    previous = filters.previous_period()
    expected_before = _store_kpis(store_lake, previous.start, previous.end)
    assert expected["orders"] > 0 or (start, end) == RANGES[1]
    for tile in TILES:
        assert tiles[tile].value == pytest.approx(expected[tile]), tile
        assert tiles[tile].previous == pytest.approx(expected_before[tile]), f"{tile} before"
