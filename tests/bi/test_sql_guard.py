"""The SQL page: one read-only SELECT over the curated tables, nothing else, within limits.

Every refusal is DuckDB's judgement (its parser's statement type, its locked file access),
checked here by what a user would type.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_lake import BiLake, build_bi_lake

from tierlake.bi.engine import BiEngine
from tierlake.bi.model import Principal, QueryRefused
from tierlake.bi.query_guard import QueryError

ANALYST = Principal(email="analyst@bi.test", role="analyst")


@pytest.fixture(scope="module")
def bi_lake(tmp_path_factory: pytest.TempPathFactory) -> BiLake:
    return build_bi_lake(tmp_path_factory.mktemp("bi-sql"))


@pytest.fixture(scope="module")
def engine(bi_lake: BiLake) -> Iterator[BiEngine]:
    built = BiEngine(bi_lake.lake_url, status_path=bi_lake.status_path, sql_row_limit=50,
                     sql_timeout_seconds=1.0)
    yield built
    built.close()


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file the queries try to read or write."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.csv").write_text("a,b\n1,2\n")
    return folder


def test_selects_run_and_see_the_curated_tables(engine: BiEngine, bi_lake: BiLake) -> None:
    got = engine.sql("SELECT COUNT(DISTINCT order_id) AS orders FROM sales_lines", ANALYST)
    truth = bi_lake.sql("SELECT COUNT(*) FROM orders WHERE status != 'cancelled'")[0][0]
    assert got.columns == ("orders",) and got.rows == ((truth,),) and not got.truncated
    for ok in ("WITH d AS (SELECT day, SUM(revenue_cents) r FROM daily_sales GROUP BY day) "
               "SELECT MAX(r) FROM d", "FROM funnel LIMIT 1", "DESCRIBE sales_lines",
               "SHOW TABLES", "SELECT * FROM pipeline_tables", "VALUES (1)"):
        assert engine.sql(ok, ANALYST).columns, ok
    joined = engine.sql("SELECT COUNT(*) FROM sales_lines JOIN customer_directory "
                        "USING (customer_id)", ANALYST)
    assert joined.rows == ((engine.sql("SELECT COUNT(*) FROM sales_lines", ANALYST).rows[0][0],),)
    tables = {row[0] for row in engine.sql("SHOW TABLES", ANALYST).rows}
    assert {"sales_lines", "customer_directory", "pipeline_runs"} <= tables


@pytest.mark.parametrize(("query", "says"), [
    ("DELETE FROM sales_lines", "writes (DELETE)"),
    ("INSERT INTO sales_lines SELECT * FROM sales_lines", "writes (INSERT)"),
    ("UPDATE sales_lines SET quantity = 0", "writes (UPDATE)"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("DROP VIEW sales_lines", "DROP"),
    ("ATTACH '{out}/x.duckdb' AS x", "ATTACH"),
    ("COPY sales_lines TO '{out}/copy.csv'", "COPY"),
    ("PRAGMA enable_external_access", "PRAGMA"),
    ("SET enable_external_access = true", "SET"),
    ("INSTALL httpfs", "extensions"),
    ("LOAD httpfs", "extensions"),
    ("EXPLAIN SELECT 1", "EXPLAIN"),
    ("SELECT 1; SELECT 2", "2 statements"),
    ("SELECT 1; DROP VIEW sales_lines", "2 statements"),
    ("SELECT * FROM read_csv('{out}/secret.csv')", "files"),
    ("SELECT * FROM read_parquet('{out}/*.parquet')", "files"),
    ("SELECT * FROM '{out}/secret.csv'", "files"),
    ("SELECT * FROM 'secret.csv'", "files"),
    ("SELECT * FROM sales_lines JOIN '{out}/secret.csv' USING (customer_id)", "files"),
    ("SELECT * FROM glob('{out}/*')", "files"),
    ("SELECT * FROM read_text('/etc/passwd')", "files"),
    ("SELECT * FROM sqlite_scan('{out}/x.db', 't')", "extension sqlite_scanner"),
    ("", "empty"),
])
def test_refused_with_a_message_naming_what_is_allowed(engine: BiEngine, outside: Path,
                                                      query: str, says: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        engine.sql(query.format(out=outside), ANALYST)
    message = str(refused.value)
    assert says in message, message
    assert "SELECT" in message or "curated tables" in message
    assert not (outside / "copy.csv").exists() and not (outside / "x.duckdb").exists()


def test_errors_are_duckdbs_message(engine: BiEngine) -> None:
    with pytest.raises(QueryError, match="syntax error"):
        engine.sql("SELEC 1", ANALYST)
    with pytest.raises(QueryError, match="no_such_column"):
        engine.sql("SELECT no_such_column FROM sales_lines", ANALYST)
    with pytest.raises(QueryError, match="store_orders"):
        engine.sql("SELECT * FROM store_orders", ANALYST)


def test_row_limit_cuts_and_says_so(engine: BiEngine) -> None:
    got = engine.sql("SELECT * FROM sales_lines", ANALYST)
    assert len(got.rows) == 50 and got.truncated
    exact = engine.sql("SELECT * FROM sales_lines LIMIT 50", ANALYST)
    assert len(exact.rows) == 50 and not exact.truncated


@pytest.mark.timeout(60)
def test_time_limit_stops_a_long_query(engine: BiEngine) -> None:
    with pytest.raises(QueryError, match=r"stopped after 1 s"):
        engine.sql("SELECT COUNT(*) FROM range(100000000000) a, sales_lines", ANALYST)
    # the engine still answers afterwards
    assert engine.sql("SELECT 1 AS one", ANALYST).rows == ((1,),)
