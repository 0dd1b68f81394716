"""TWO ENGINES, ONE ANSWER: every curated table from Spark equals DuckDB's, exactly.

The session's engines (tests/analytics/conftest.py) and their full job set runs, shared with
the job tests. Skipped without PySpark or Java, or when Spark is not in
``TIERLAKE_TEST_ENGINES``.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pytest

from tierlake.analytics.engines.base import Engine
from tierlake.analytics.jobs import JOBS

pytestmark = pytest.mark.slow
Curated = dict[str, pa.Table]


def _normalised(table: pa.Table) -> pa.Table:
    return table.replace_schema_metadata(None).combine_chunks()


@pytest.mark.parametrize("job", [j.name for j in JOBS])
def test_spark_equals_duckdb(duckdb_engine: Engine, spark_engine: Engine,
                             curated_by: Callable[[Engine], Curated], job: str) -> None:
    duck, spark = (_normalised(curated_by(e)[job]) for e in (duckdb_engine, spark_engine))
    assert spark.schema.equals(duck.schema), f"{job}: {spark.schema} != {duck.schema}"
    assert spark.num_rows == duck.num_rows > 0
    for name in duck.column_names:
        a, b = duck[name].to_pylist(), spark[name].to_pylist()
        first = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)
        assert first is None, f"{job}.{name} row {first}: duckdb {a[first]!r} spark {b[first]!r}"
    assert spark.equals(duck)
