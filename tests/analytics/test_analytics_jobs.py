"""The jobs give the store's own answers on every engine, and fail naming the job and input.

TRUTH: each curated table is checked against an independent computation: plain SQL on
the seeded store database, or Python over the delivered clickstream files. Every test runs
once per engine of ``TIERLAKE_TEST_ENGINES`` (the ``engine`` and ``curated`` fixtures).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from analytics_lake import Lake
from sqlalchemy import text

from tierlake.analytics.engines.base import Engine
from tierlake.analytics.errors import JobError
from tierlake.analytics.jobs import JOBS, get_job
from tierlake.analytics.runner import run_jobs
from tierlake.errors import TierlakeError
from tierlake.events import iter_events

NOT_CANCELLED = "o.status != 'cancelled'"


def sql(lake: Lake, query: str) -> list[tuple]:
    with lake.db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(query))]


def rows(table: pa.Table, *columns: str) -> list[tuple]:
    return list(zip(*(table[c].to_pylist() for c in columns), strict=True))


def half_up(num: int, den: int, places: int = 4) -> float:
    return float((Decimal(num) / Decimal(den)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))


def test_every_job_has_rows_a_unique_key_and_documented_columns(curated) -> None:
    import importlib

    for job in JOBS:
        table = curated[job.name]
        assert table.num_rows > 0, job.name
        keys = rows(table, *job.order_by)
        assert len(set(keys)) == len(keys), f"{job.name}: order_by is not a unique key"
        assert keys == sorted(keys), f"{job.name}: not sorted by {job.order_by}"
        doc = importlib.import_module(f"tierlake.analytics.jobs.{job.name}").__doc__ or ""
        undocumented = [c for c in table.column_names if f"``{c}``" not in doc]
        assert not undocumented, f"{job.name}: columns missing from the docstring"


def test_daily_revenue_by_day_and_category_equals_sql(curated, lake: Lake) -> None:
    expected = sql(lake, f"""
        SELECT date(o.placed_at), p.category_id, COUNT(DISTINCT o.id), SUM(l.quantity),
               SUM(l.line_total_cents)
        FROM order_lines l JOIN orders o ON o.id = l.order_id JOIN products p ON p.id = l.product_id
        WHERE {NOT_CANCELLED} GROUP BY 1, 2 ORDER BY 1, 2""")
    got = rows(curated["daily_sales"], "day", "category_id", "orders", "units", "revenue_cents")
    assert [(d.isoformat(), *rest) for d, *rest in got] == expected
    by_day = sql(lake, f"""SELECT date(o.placed_at), SUM(l.line_total_cents) FROM order_lines l
        JOIN orders o ON o.id = l.order_id WHERE {NOT_CANCELLED} GROUP BY 1 ORDER BY 1""")
    totals: Counter[str] = Counter()
    for day, cents in rows(curated["daily_sales"], "day", "revenue_cents"):
        totals[day.isoformat()] += cents
    assert sorted(totals.items()) == by_day
    assert sql(lake, "SELECT COUNT(*) FROM orders WHERE status = 'cancelled'")[0][0] > 0
    for _, _, orders, _, revenue, aov in rows(curated["daily_sales"], *curated["daily_sales"]
                                             .column_names[:2], "orders", "units",
                                             "revenue_cents", "average_order_value_cents"):
        assert aov == half_up(revenue, orders, 0)


def test_product_sales_and_stock_equal_sql(curated, lake: Lake) -> None:
    table = curated["product_performance"]
    expected = sql(lake, f"""
        SELECT p.id, COALESCE(SUM(l.quantity), 0), COALESCE(SUM(l.line_total_cents), 0),
               i.quantity
        FROM products p JOIN inventory i ON i.product_id = p.id
        LEFT JOIN (order_lines l JOIN orders o ON o.id = l.order_id AND {NOT_CANCELLED})
          ON l.product_id = p.id
        GROUP BY p.id, i.quantity ORDER BY p.id""")
    assert rows(table, "product_id", "units", "revenue_cents", "stock_on_hand") == expected
    revenue_ranks = sorted(set(rows(table, "revenue_cents", "revenue_rank")), reverse=True)
    assert [r for _, r in revenue_ranks] == list(range(1, len(revenue_ranks) + 1))
    recent = dict(sql(lake, f"""
        SELECT l.product_id, SUM(l.quantity) FROM order_lines l JOIN orders o ON o.id = l.order_id
        WHERE {NOT_CANCELLED} AND julianday((SELECT date(MAX(placed_at)) FROM orders))
              - julianday(date(o.placed_at)) < 30
        GROUP BY 1"""))
    for pid, units_30d, stock, cover, slow in rows(table, "product_id", "units_30d",
                                                   "stock_on_hand", "stock_cover_days",
                                                   "slow_mover"):
        assert units_30d == recent.get(pid, 0)
        assert cover == (None if units_30d == 0 else half_up(stock * 30, units_30d, 0))
        if units_30d == 0 and stock > 0:
            assert slow
    assert 0 < sum(table["slow_mover"].to_pylist()) < table.num_rows


def test_rfm_equals_sql(curated, lake: Lake) -> None:
    table = curated["customer_segments"]
    expected = sql(lake, f"""
        SELECT o.customer_id,
               CAST(julianday((SELECT date(MAX(placed_at)) FROM orders))
                    - julianday(date(MAX(o.placed_at))) AS INTEGER),
               COUNT(*), SUM(o.total_cents)
        FROM orders o WHERE {NOT_CANCELLED} GROUP BY 1 ORDER BY 1""")
    got = rows(table, "customer_id", "recency_days", "frequency", "monetary_cents")
    assert got == expected
    few = {cid for cid, *_ in expected[:: max(1, len(expected) // 5)]}
    assert len(few) >= 5 and few <= {cid for cid, *_ in got}
    for r, f, m, rfm in rows(table, "r_score", "f_score", "m_score", "rfm"):
        assert {r, f, m} <= {1, 2, 3, 4, 5} and rfm == f"{r}{f}{m}"
    by_recency = sorted(rows(table, "recency_days", "r_score"))
    assert all(a[1] >= b[1] for a, b in zip(by_recency, by_recency[1:], strict=False))
    assert {"Champions", "Hibernating"} <= set(table["segment"].to_pylist())


def test_cohorts_cover_every_customer_with_orders(curated, lake: Lake) -> None:
    table = curated["cohort_retention"]
    first = [r for r in rows(table, "months_since_first", "cohort_size", "active_customers",
                             "retention_rate") if r[0] == 0]
    buyers = sql(lake, f"SELECT COUNT(DISTINCT customer_id) FROM orders o WHERE {NOT_CANCELLED}")
    assert sum(size for _, size, _, _ in first) == buyers[0][0]
    assert all(active == size and rate == 1.0 for _, size, active, rate in first)
    for size, active, rate in rows(table, "cohort_size", "active_customers", "retention_rate"):
        assert active <= size and rate == half_up(active, size)
    assert all(d.day == 1 for d in table["cohort_month"].to_pylist())


def _sessions(lake: Lake) -> dict[str, dict]:
    real_orders = {oid for (oid,) in sql(lake, "SELECT id FROM orders")}
    sessions: dict[str, dict] = defaultdict(lambda: {"first": None, "stages": set()})
    for e in iter_events(lake.events_dir):
        s = sessions[e["session_id"]]
        s["first"] = e["ts"] if s["first"] is None else min(s["first"], e["ts"])
        kind = e["event_type"]
        if kind == "page_view" and e["product_id"] is not None:
            s["stages"].add("product_view")
        elif kind == "add_to_cart":
            s["stages"].add("cart")
        elif kind == "checkout":
            s["stages"].add("checkout")
        elif kind == "purchase" and e["order_id"] in real_orders:
            s["stages"].add("purchase")
    return sessions


def test_funnel_counts_equal_python_over_the_event_files(curated, lake: Lake) -> None:
    stages = ("product_view", "cart", "checkout", "purchase")
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    for s in _sessions(lake).values():
        day = datetime.fromisoformat(s["first"]).date()
        per_day[day]["sessions"] += 1
        per_day[day].update(s["stages"])
    expected = [(d, c["sessions"], *(c[s] for s in stages)) for d, c in sorted(per_day.items())]
    table = curated["funnel"]
    got = rows(table, "day", "sessions", *(f"{s}_sessions" for s in stages))
    assert got == expected
    purchases = sum(c["purchase"] for c in per_day.values())
    assert purchases == sql(lake, "SELECT COUNT(*) FROM orders")[0][0]
    for n, bought, rate in rows(table, "sessions", "purchase_sessions", "conversion_rate"):
        assert rate == half_up(bought, n)


def test_funnel_ignores_purchases_of_unknown_orders(engine: Engine, lake: Lake,
                                                   curated) -> None:
    clicks = pa.concat_tables(pq.read_table(f) for f in lake.files["clickstream"])
    purchase = clicks.filter(pc.equal(clicks["event_type"], "purchase")).slice(0, 1)
    fake = purchase.set_column(purchase.schema.get_field_index("order_id"), "order_id",
                               pa.array([10**9], pa.int64()))
    fake = fake.set_column(fake.schema.get_field_index("session_id"), "session_id",
                           pa.array(["forged-session"]))
    out: dict[str, pa.Table] = {}
    run_jobs(engine, {**lake.files, "clickstream": pa.concat_tables([clicks, fake])},
             jobs=["funnel"], write=out.__setitem__, progress=False)
    day = fake["ts"][0].as_py().date()
    before, after = (next(r for r in rows(t, "day", "sessions", "purchase_sessions")
                          if r[0] == day) for t in (curated["funnel"], out["funnel"]))
    assert after == (day, before[1] + 1, before[2])


def test_traffic_and_top_pages_equal_python(curated, lake: Lake) -> None:
    views = [e for e in iter_events(lake.events_dir) if e["event_type"] == "page_view"]
    assert sum(curated["traffic_hourly"]["page_views"].to_pylist()) == len(views)
    by_hour = Counter(e["ts"][:13] for e in views)
    got = {f"{d.isoformat()}T{h:02d}": n
           for d, h, n in rows(curated["traffic_hourly"], "day", "hour", "page_views")}
    assert got == dict(by_hour)
    paths = Counter(e["path"] for e in views)
    top = rows(curated["top_pages"], "rank", "path", "page_views")
    assert top[0] == (1, *paths.most_common(1)[0])
    assert all(paths[p] == n for _, p, n in top)
    product_views = Counter(e["product_id"] for e in views if e["product_id"] is not None)
    assert all(product_views[p] == n for p, n in rows(curated["top_products"], "product_id",
                                                      "views"))


def test_arrow_inputs_give_the_same_result(engine: Engine, lake: Lake, curated) -> None:
    inputs: dict[str, list[str] | pa.Table] = dict(lake.files)
    inputs["orders"] = pa.concat_tables(pq.read_table(f) for f in lake.files["orders"])
    out: dict[str, pa.Table] = {}
    run_jobs(engine, inputs, jobs=["cohort_retention"], write=out.__setitem__, progress=False)
    assert out["cohort_retention"].equals(curated["cohort_retention"])


def test_progress_bar_runs(engine: Engine, lake: Lake, capsys) -> None:
    infos = run_jobs(engine, lake.files, jobs=[get_job("funnel")], write=lambda n, t: None)
    assert [i.name for i in infos] == ["funnel"] and infos[0].seconds >= 0


def test_missing_input_table_names_job_and_input(engine: Engine, lake: Lake) -> None:
    inputs = {k: v for k, v in lake.files.items() if k != "order_lines"}
    with pytest.raises(JobError) as err:
        run_jobs(engine, inputs, jobs=["daily_sales"], write=lambda n, t: None, progress=False)
    assert (err.value.job, err.value.input) == ("daily_sales", "order_lines")
    assert "'daily_sales'" in str(err.value) and "'order_lines'" in str(err.value)
    assert isinstance(err.value, TierlakeError)


def test_missing_column_names_job_input_and_column(engine: Engine, lake: Lake,
                                                    tmp_path) -> None:
    broken = tmp_path / "orders.parquet"
    orders = pa.concat_tables(pq.read_table(f) for f in lake.files["orders"])
    pq.write_table(orders.drop_columns(["placed_at"]), broken)
    inputs = {**lake.files, "orders": [str(broken)]}
    with pytest.raises(JobError) as err:
        run_jobs(engine, inputs, jobs=["daily_sales"], write=lambda n, t: None, progress=False)
    assert (err.value.job, err.value.input) == ("daily_sales", "orders")
    assert "placed_at" in str(err.value)


def test_unreadable_input_and_unknown_job(engine: Engine, lake: Lake, tmp_path) -> None:
    bad = tmp_path / "clicks.parquet"
    bad.write_text("not parquet")
    with pytest.raises(JobError) as err:
        run_jobs(engine, {**lake.files, "clickstream": [str(bad)]}, jobs=["funnel"],
                 write=lambda n, t: None, progress=False)
    assert (err.value.job, err.value.input) == ("funnel", "clickstream")
    with pytest.raises(KeyError, match="no analytics job 'nope'"):
        get_job("nope")


def test_hive_partitioned_files_keep_string_partition_values(engine: Engine,
                                                             tmp_path) -> None:
    files = []
    for dt in ("2025-01-01", "2025-01-02"):
        path = tmp_path / "t" / f"dt={dt}" / "part-0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"x": [1, 2]}), path)
        files.append(str(path))
    table = engine.execute(engine.load("hive_t", files, hive_partitioning=True))
    assert table.schema.field("dt").type == pa.string()
    assert sorted(rows(table, "dt", "x")) == [("2025-01-01", 1), ("2025-01-01", 2),
                                              ("2025-01-02", 1), ("2025-01-02", 2)]
    plain = engine.execute(engine.load("plain_t", files))
    assert plain.column_names == ["x"]
