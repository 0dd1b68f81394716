"""TWO ENGINES, ONE ANSWER: every curated table from Spark equals DuckDB's, exactly.

One Spark session (``local[2]``) for the module. Skipped without PySpark or Java.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analytics_lake import Lake, LoggedLake
from test_analytics_merge_on_read import assert_same_rows, engine_view

from tierlake.analytics.engines.duckdb import DuckDBEngine
from tierlake.analytics.jobs import JOBS
from tierlake.analytics.runner import run_jobs
from tierlake.lake import current


def _missing(message: str) -> None:
    """Skip loudly; in CI (TIERLAKE_REQUIRE_SERVICES=1) a missing part is a failure."""
    if os.environ.get("TIERLAKE_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


if importlib.util.find_spec("pyspark") is None:
    _missing("pyspark is not installed: pip install 'tierlake[spark]'")
if shutil.which("java") is None:
    _missing("Spark needs Java 17: apt-get install -y openjdk-17-jre-headless")

from tierlake.analytics.engines.spark import SparkEngine  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:fetch_arrow_table:DeprecationWarning"),
              # pyspark 4.0 and ibis 12 call pandas 3 APIs deprecated for pandas 4.
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
              pytest.mark.filterwarnings("ignore:The 'future.infer_string' option")]


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkEngine]:
    with SparkEngine("local[2]") as engine:
        yield engine


def _run(engine, lake: Lake) -> tuple[dict[str, pa.Table], float]:  # type: ignore[no-untyped-def]
    out: dict[str, pa.Table] = {}
    start = time.perf_counter()
    run_jobs(engine, lake.files, write=out.__setitem__, progress=False)
    return out, time.perf_counter() - start


@pytest.fixture(scope="module")
def both(spark: SparkEngine, lake: Lake) -> tuple[dict[str, pa.Table], dict[str, pa.Table]]:
    with DuckDBEngine() as duck:
        duck_out, duck_s = _run(duck, lake)
    spark_out, spark_s = _run(spark, lake)
    print(f"\nfull job set: duckdb {duck_s:.2f}s, spark {spark_s:.2f}s")
    return duck_out, spark_out


def _normalised(table: pa.Table) -> pa.Table:
    return table.replace_schema_metadata(None).combine_chunks()


@pytest.mark.parametrize("job", [j.name for j in JOBS])
def test_spark_equals_duckdb(both, job: str) -> None:  # type: ignore[no-untyped-def]
    duck, spark = (_normalised(out[job]) for out in both)
    assert spark.schema.equals(duck.schema), f"{job}: {spark.schema} != {duck.schema}"
    assert spark.num_rows == duck.num_rows > 0
    for name in duck.column_names:
        a, b = duck[name].to_pylist(), spark[name].to_pylist()
        first = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)
        assert first is None, f"{job}.{name} row {first}: duckdb {a[first]!r} spark {b[first]!r}"
    assert spark.equals(duck)


def test_spark_reads_arrow_and_hive_partitioned_inputs(spark: SparkEngine, lake: Lake,
                                                       tmp_path) -> None:
    orders = pa.concat_tables(pq.read_table(f) for f in lake.files["orders"])
    table = spark.execute(spark.register_arrow("arrow_orders", orders).count().as_table())
    assert table.column(0).to_pylist() == [orders.num_rows]
    files = []
    for dt in ("2025-01-01", "2025-01-02"):
        path = tmp_path / "t" / f"dt={dt}" / "part-0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"x": [1, 2]}), path)
        files.append(str(path))
    hive = spark.execute(spark.load("hive_t", files, hive_partitioning=True))
    assert hive.schema.field("dt").type == pa.string()
    assert sorted(zip(hive["dt"].to_pylist(), hive["x"].to_pylist(), strict=True)) == [
        ("2025-01-01", 1), ("2025-01-01", 2), ("2025-01-02", 1), ("2025-01-02", 2)]
    assert spark.execute(spark.load("plain_t", files)).column_names == ["x"]


def test_spark_applies_the_change_log_as_the_lake_does(spark: SparkEngine,
                                                       logged_lake: LoggedLake) -> None:
    """Merge-on-read on Spark: each store table with changes not merged yet, as Spark's
    jobs see it, equals the lake's own view (tests/analytics/test_analytics_merge_on_read)."""
    assert logged_lake.changed
    for name in logged_lake.changed:
        todo = current.pending(logged_lake.lake, name)
        assert todo is not None
        assert_same_rows(engine_view(spark, logged_lake, name),
                         current.read(logged_lake.lake, name), todo.key(name), f"spark {name}")
