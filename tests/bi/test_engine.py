"""The BI engine over a lake the real pipeline built: every dashboard runs for every role,
analysts never see who a customer is, category rules hold, filters and drills narrow, and
the cache serves an unchanged lake and notices a new run.

TRUTH: the store's own database (customers' e-mails, order counts) and independent SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from engine_lake import BiLake, build_bi_lake

from tierlake.bi.engine import BiEngine
from tierlake.bi.model import MASK, FilterError, Principal, VisualResult

ADMIN = Principal(email="admin@bi.test", role="admin")
ANALYST = Principal(email="analyst@bi.test", role="analyst")


@pytest.fixture(scope="module")
def bi_lake(tmp_path_factory: pytest.TempPathFactory) -> BiLake:
    return build_bi_lake(tmp_path_factory.mktemp("bi-engine"))


@pytest.fixture(scope="module")
def engine(bi_lake: BiLake) -> Iterator[BiEngine]:
    built = BiEngine(bi_lake.lake_url, status_path=bi_lake.status_path, refresh_seconds=60)
    yield built
    built.close()


def _text(results: list[VisualResult]) -> str:
    return json.dumps([r.model_dump(mode="json") for r in results])


def _all_results(engine: BiEngine, principal: Principal) -> list[VisualResult]:
    """Every visual (hidden drill targets too) of every dashboard, and every detail."""
    found = []
    for dashboard in engine.dashboards():
        filters = engine.parse_filters(dashboard, {"start": "2025-01-01"}, principal)
        for visual in dashboard.visuals:
            result = engine.run_visual(dashboard, visual.id, filters, principal)
            found.append(result)
            if visual.drill and visual.drill.detail and result.rows:
                i = result.columns.index(visual.drill.column)
                found.append(engine.detail(dashboard, visual.id, filters, principal,
                                           str(result.rows[0][i])))
    return found


def test_every_dashboard_runs_every_visual_for_both_roles(engine: BiEngine) -> None:
    ids = [d.id for d in engine.dashboards()]
    assert "sales" in ids
    for principal in (ADMIN, ANALYST):
        for result in _all_results(engine, principal):
            assert result.columns, f"{result.dashboard}.{result.visual}: no columns"
            assert not any("no data yet" in n for n in result.notes), result.notes
    sales = engine.dashboard("sales")
    kpis = {r.visual: r for r in engine.run_dashboard(sales, engine.parse_filters(sales, {}),
                                                      ADMIN)}
    assert kpis["revenue"].value > 0 and kpis["orders"].value > 0
    assert kpis["revenue_trend"].figure and kpis["revenue_trend"].figure["data"]


def test_analyst_never_sees_an_email_admin_does(engine: BiEngine, bi_lake: BiLake) -> None:
    emails = bi_lake.emails()
    assert len(emails) > 100
    seen_by_admin = _text(_all_results(engine, ADMIN))
    assert any(e in seen_by_admin for e in emails)  # the search can find them
    seen = _text(_all_results(engine, ANALYST))
    sql = engine.sql("SELECT * FROM customer_directory", ANALYST)
    seen += json.dumps(sql.model_dump(mode="json"))
    leaked = [e for e in emails if e in seen]
    assert not leaked, f"analyst saw {leaked[:3]}"
    assert MASK in seen
    # also not through a query that tries to unmask (the copy is masked before DuckDB)
    tricks = engine.sql("SELECT DISTINCT customer_email, upper(customer_name) "
                        "FROM customer_directory", ANALYST)
    assert tricks.rows == ((MASK, MASK.upper()),)


def test_category_rule_never_returns_another_categorys_rows(engine: BiEngine) -> None:
    slugs = [slug for slug, _ in engine.categories(ADMIN)]
    mine = slugs[1]
    manager = Principal(email="books@bi.test", role="analyst",
                        rules={"category_slug": frozenset({mine})})
    assert engine.categories(manager) == [c for c in engine.categories(ADMIN) if c[0] == mine]
    for table in ("sales_lines", "daily_sales", "product_performance"):
        got = engine.sql(f"SELECT DISTINCT category_slug FROM {table}", manager)
        assert got.rows == ((mine,),), table
    sales = engine.dashboard("sales")
    filters = engine.parse_filters(sales, {"start": "2025-01-01"}, manager)
    by_category = engine.run_visual(sales, "revenue_by_category", filters, manager)
    assert [r[0] for r in by_category.rows] == [mine]
    detail = engine.detail(sales, "revenue_by_category", filters, manager, mine)
    assert detail.rows and {r[detail.columns.index("category_slug")] for r in detail.rows} == {mine}
    revenue = engine.run_visual(sales, "revenue", filters, manager).value
    assert 0 < revenue < engine.run_visual(sales, "revenue", filters, ADMIN).value
    # another category reads exactly as one that does not exist
    with pytest.raises(FilterError) as hidden:
        engine.parse_filters(sales, {"category": slugs[0]}, manager)
    with pytest.raises(FilterError) as unknown:
        engine.parse_filters(sales, {"category": "no-such"}, manager)
    assert str(hidden.value).replace(slugs[0], "X") == str(unknown.value).replace("no-such", "X")
    assert slugs[0] not in str(hidden.value).replace(repr(slugs[0]), "")
    with pytest.raises(FilterError):
        engine.detail(sales, "revenue_by_category", filters, manager, slugs[0])


def test_filters_and_drill_change_the_figures(engine: BiEngine, bi_lake: BiLake) -> None:
    sales = engine.dashboard("sales")
    wide = engine.parse_filters(sales, {"start": "2025-10-01", "end": "2026-03-20"})
    narrow = engine.parse_filters(sales, {"start": "2026-03-01", "end": "2026-03-20"})
    revenue = {f: engine.run_visual(sales, "revenue", f, ADMIN).value for f in (wide, narrow)}
    assert revenue[wide] > revenue[narrow] > 0
    expected = bi_lake.sql(
        "SELECT SUM(l.line_total_cents) FROM order_lines l JOIN orders o ON o.id = l.order_id "
        "WHERE o.status != 'cancelled' AND o.placed_at >= :a AND o.placed_at < :b",
        a="2026-03-01", b="2026-03-21")[0][0]
    assert revenue[narrow] == pytest.approx(expected / 100)
    slug = engine.categories(ADMIN)[0][0]
    one = engine.parse_filters(sales, {"start": "2025-10-01", "category": slug})
    assert 0 < engine.run_visual(sales, "revenue", one, ADMIN).value < revenue[wide]
    drilled = engine.parse_filters(sales, {"start": "2025-10-01", "drill.category": slug})
    shown = [r.visual for r in engine.run_dashboard(sales, drilled, ADMIN)]
    assert "revenue_by_product" in shown and "revenue_by_category" not in shown
    products = engine.run_visual(sales, "revenue_by_product", drilled, ADMIN)
    assert products.figure and products.figure["data"][0]["customdata"]


def test_kpi_compares_with_the_previous_period(engine: BiEngine) -> None:
    sales = engine.dashboard("sales")
    now = engine.parse_filters(sales, {"start": "2026-03-01", "end": "2026-03-14"})
    before = engine.parse_filters(sales, {"start": "2026-02-15", "end": "2026-02-28"})
    tile = engine.run_visual(sales, "orders", now, ADMIN)
    assert tile.previous == engine.run_visual(sales, "orders", before, ADMIN).value > 0
    assert tile.change == pytest.approx((tile.value - tile.previous) / tile.previous, abs=1e-6)


def test_default_range_ends_at_the_newest_day(engine: BiEngine) -> None:
    sales = engine.dashboard("sales")
    filters = engine.parse_filters(sales, {})
    assert filters.end == date(2026, 3, 20)
    assert filters.start == filters.end - timedelta(days=sales.default_days - 1)


@pytest.mark.parametrize(("params", "says"), [
    ({"start": "2026-13-01"}, "not a date; use YYYY-MM-DD"),
    ({"start": "'; drop table sales_lines; --"}, "not a date"),
    ({"start": "2026-03-10", "end": "2026-03-01"}, "is after the end date"),
    ({"start": "2000-01-01", "end": "2026-03-01"}, "pick at most 3660 days"),
    ({"category": "books'; DROP TABLE x; --"}, "unknown category"),
    ({"drill.nothing": "1"}, "no drill 'nothing'"),
])
def test_bad_filters_say_what_to_do(engine: BiEngine, params: dict[str, str], says: str) -> None:
    with pytest.raises(FilterError, match=says):
        engine.parse_filters(engine.dashboard("sales"), params, ADMIN)


def test_cache_serves_an_unchanged_lake_and_misses_after_a_run(bi_lake: BiLake,
                                                               tmp_path: Path) -> None:
    engine = BiEngine(bi_lake.lake_url, status_path=bi_lake.status_path)
    try:
        sales = engine.dashboard("sales")
        filters = engine.parse_filters(sales, {})
        first = engine.run_dashboard(sales, filters, ANALYST)
        assert not any(r.cached for r in first)
        queries = engine.stats["queries"]
        again = engine.run_dashboard(sales, filters, ANALYST)
        assert all(r.cached for r in again) and engine.stats["queries"] == queries
        assert [r.rows for r in again] == [r.rows for r in first]
        versions = engine.freshness().tables
        bi_lake.run_pipeline()
        deadline_versions = engine.freshness().tables
        import time
        end = time.monotonic() + 5
        while deadline_versions == versions and time.monotonic() < end:
            time.sleep(0.2)
            deadline_versions = engine.freshness().tables
        assert deadline_versions["sales_lines"] > versions["sales_lines"]
        after = engine.run_dashboard(sales, filters, ANALYST)
        assert not any(r.cached for r in after) and engine.stats["queries"] > queries
    finally:
        engine.close()


def test_freshness_reads_the_lake(engine: BiEngine) -> None:
    fresh = engine.freshness()
    assert fresh.as_of is not None and fresh.age_seconds is not None
    assert fresh.age_seconds >= 0 and fresh.next_refresh_seconds is not None
    assert {"sales_lines", "daily_sales", "customer_directory"} <= set(fresh.tables)


def test_from_settings_reads_the_settings_lake_and_interval(bi_lake: BiLake) -> None:
    engine = BiEngine.from_settings(bi_lake.settings)
    try:
        assert engine.sql_row_limit == bi_lake.settings.bi.sql_row_limit
        fresh = engine.freshness()
        assert fresh.tables["sales_lines"] >= 0
        assert fresh.next_refresh_seconds is not None
        assert fresh.next_refresh_seconds <= bi_lake.settings.pipeline.interval_seconds
        runs = engine.sql("SELECT ok, rows_written FROM pipeline_runs", ADMIN)
        assert runs.rows and runs.rows[0][0] is True and runs.rows[0][1] > 0
    finally:
        engine.close()
