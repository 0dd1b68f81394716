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

# The same tiles with the category filter: an order counts when one of its lines is in the
# category, its revenue is those lines, and its customer is new when it is their first order
# (earliest placed_at, ties by id) whatever that order holds.
KPI_CATEGORY_SQL = """
WITH sold AS (
  SELECT o.id, o.customer_id, o.placed_at FROM orders o WHERE o.status != 'cancelled'
), firsts AS (
  SELECT s.id FROM sold s WHERE NOT EXISTS (
    SELECT 1 FROM sold t WHERE t.customer_id = s.customer_id
      AND (t.placed_at < s.placed_at OR (t.placed_at = s.placed_at AND t.id < s.id)))
), picked AS (
  SELECT l.order_id, l.line_total_cents FROM order_lines l
  JOIN products p ON p.id = l.product_id JOIN categories c ON c.id = p.category_id
  WHERE c.slug = :slug
), period AS (
  SELECT * FROM sold s WHERE placed_at >= :start AND placed_at < :stop
    AND EXISTS (SELECT 1 FROM picked WHERE picked.order_id = s.id)
)
SELECT
  (SELECT COALESCE(SUM(l.line_total_cents), 0) FROM picked l
     JOIN period p ON p.id = l.order_id) AS revenue_cents,
  (SELECT COUNT(*) FROM period) AS orders,
  (SELECT COUNT(DISTINCT customer_id) FROM period) AS customers,
  (SELECT COUNT(*) FROM period WHERE id IN (SELECT id FROM firsts)) AS new_customers
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


def _store_kpis(store: BiLake, start: date, end: date,
                slug: str | None = None) -> dict[str, float | int]:
    """The tiles computed on the store's database for the days ``start``..``end`` (UTC),
    of category ``slug`` when given."""
    sql = KPI_SQL if slug is None else KPI_CATEGORY_SQL
    query = text(sql).bindparams(bindparam("start", type_=UTCDateTime()),
                                 bindparam("stop", type_=UTCDateTime()))
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    stop = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    db = Database(store.database_url)
    try:
        with db.engine.connect() as conn:
            cents, orders, customers, new = conn.execute(
                query, {"start": begin, "stop": stop,
                        **({"slug": slug} if slug is not None else {})}).one()
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


@pytest.mark.parametrize(("start", "end"), [RANGES[0], RANGES[2]])
def test_sales_tiles_with_a_category_equal_sql_on_the_store(
        engine: BiEngine, store_lake: BiLake, start: date, end: date) -> None:
    """With a category filter the per-order figures come from that category's lines (the
    engine's ``sales_orders`` rollup is then made from them): still the store's numbers."""
    sales = engine.dashboard("sales")
    slug = store_lake.sql("SELECT c.slug FROM categories c JOIN products p "
                          "ON p.category_id = c.id GROUP BY c.slug ORDER BY COUNT(*) DESC, "
                          "c.slug")[0][0]
    filters = engine.parse_filters(sales, {"start": start.isoformat(), "end": end.isoformat(),
                                           "category": str(slug)})
    tiles = {r.visual: r for r in engine.run_dashboard(sales, filters, ADMIN)}
    expected = _store_kpis(store_lake, start, end, str(slug))
    previous = filters.previous_period()
    expected_before = _store_kpis(store_lake, previous.start, previous.end, str(slug))
    everything = _store_kpis(store_lake, start, end)
    assert 0 < expected["orders"] < everything["orders"]
    for tile in TILES:
        assert tiles[tile].value == pytest.approx(expected[tile]), tile
        assert tiles[tile].previous == pytest.approx(expected_before[tile]), f"{tile} before"
