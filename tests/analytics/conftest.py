"""Fixtures of the analytics tests: one seeded store and its stand-in lake per session, and
the engines the jobs are checked on.

``TIERLAKE_TEST_ENGINES`` (comma separated, default ``duckdb,spark``) chooses the engines
``engine`` and ``curated`` run on: every job test runs once per engine. Each engine starts
once per test session (Spark's session takes seconds), and each runs the full job set once.
Without PySpark or Java the Spark runs are skipped, or fail when
``TIERLAKE_REQUIRE_SERVICES=1`` (as in CI).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from analytics_lake import Lake, LoggedLake, build_lake, build_logged_lake

from tierlake.analytics.engines import ENGINE_NAMES
from tierlake.analytics.engines.base import Engine
from tierlake.analytics.engines.duckdb import DuckDBEngine
from tierlake.analytics.jobs import JOBS
from tierlake.analytics.runner import JobInfo, run_jobs


def _selected_engines() -> list[str]:
    raw = os.environ.get("TIERLAKE_TEST_ENGINES", ",".join(ENGINE_NAMES))
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if not names or not set(names) <= set(ENGINE_NAMES):
        raise pytest.UsageError(f"TIERLAKE_TEST_ENGINES={raw!r}: give a comma-separated "
                                f"subset of {','.join(ENGINE_NAMES)}")
    return names


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs on Spark are slow (``-m "not slow"`` leaves them out)."""
    here = Path(__file__).parent
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (item.path.is_relative_to(here) and callspec is not None
                and callspec.params.get("engine") == "spark"):
            item.add_marker(pytest.mark.slow)


def _missing(message: str) -> None:
    """Skip loudly; in CI (TIERLAKE_REQUIRE_SERVICES=1) a missing part is a failure."""
    if os.environ.get("TIERLAKE_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """The store (SQLite) seeded once, exported to Parquet the way the lake holds it."""
    built = build_lake(tmp_path_factory.mktemp("analytics"))
    yield built
    built.db.dispose()


@pytest.fixture(scope="session")
def logged_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedLake]:
    """A real lake (the extract's) whose store changed after the full load, the changes
    logged in raw and not merged into current/ (merge-on-read)."""
    built = build_logged_lake(tmp_path_factory.mktemp("logged"))
    yield built
    built.db.dispose()


@pytest.fixture(scope="session")
def duckdb_engine() -> Iterator[Engine]:
    with DuckDBEngine() as engine:
        yield engine


@pytest.fixture(scope="session")
def spark_engine() -> Iterator[Engine]:
    """One Spark session (``local[2]``) for the whole test session."""
    if "spark" not in _selected_engines():
        pytest.skip("spark is not in TIERLAKE_TEST_ENGINES")
    if importlib.util.find_spec("pyspark") is None:
        _missing("pyspark is not installed: pip install 'tierlake[spark]'")
    if shutil.which("java") is None:
        _missing("Spark needs Java 17: apt-get install -y openjdk-17-jre-headless")
    from tierlake.analytics.engines.spark import SparkEngine

    # Two shuffle partitions for two cores: the test data are small (Spark's 200, or the
    # engine's 8, only add tasks).
    with SparkEngine("local[2]", shuffle_partitions=2) as engine:
        yield engine


@pytest.fixture(scope="session", params=_selected_engines())
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each selected engine in turn (the parameter)."""
    return request.getfixturevalue(f"{request.param}_engine")


Curated = dict[str, pa.Table]


@pytest.fixture(scope="session")
def curated_by(lake: Lake) -> Callable[[Engine], Curated]:
    """``curated_by(engine)``: every job's output on ``engine`` over ``lake``, run once per
    engine for the session."""
    done: dict[str, Curated] = {}

    def run(engine: Engine) -> Curated:
        if engine.name not in done:
            out: Curated = {}
            infos = run_jobs(engine, lake.files, write=out.__setitem__, progress=False)
            assert [i.name for i in infos] == [j.name for j in JOBS]
            assert all(isinstance(i, JobInfo) and i.rows == out[i.name].num_rows
                       for i in infos)
            done[engine.name] = out
        return done[engine.name]

    return run


@pytest.fixture(scope="session")
def curated(engine: Engine, curated_by: Callable[[Engine], Curated]) -> Curated:
    """Every job's output on ``engine`` over the session's ``lake``."""
    return curated_by(engine)
