"""Fixtures shared by every test: real servers and migrated databases per backend.

Environment:

* ``TIERLAKE_TEST_DATABASES``: backends ``database_url``/``db`` run on, comma
  separated (default ``sqlite,mariadb,postgresql``).
* ``TIERLAKE_TEST_ENGINES``: analytics engines the job tests run on, comma separated
  (default ``duckdb,spark``; see tests/analytics/conftest.py).
* ``TIERLAKE_REQUIRE_SERVICES=1``: a missing server binary (or Java, PySpark) fails
  instead of skipping.

Tests never see the developer's ``tierlake.toml`` nor ``TIERLAKE_*`` variables.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete

import servers
from tierlake.config import reset_settings_cache
from tierlake.data.db import Database, create_db_engine
from tierlake.data.migrate import upgrade
from tierlake.data.schema import STORE_TABLES, Base

BACKENDS = ("sqlite", "mariadb", "postgresql")
# Variables that steer the test run itself; every other TIERLAKE_* is removed.
TEST_CONTROLS = ("TIERLAKE_TEST_DATABASES", "TIERLAKE_TEST_ENGINES", "TIERLAKE_REQUIRE_SERVICES",
                 "TIERLAKE_PG_BINDIR")


def _selected_backends() -> list[str]:
    raw = os.environ.get("TIERLAKE_TEST_DATABASES", ",".join(BACKENDS))
    return [n.strip().lower() for n in raw.split(",") if n.strip()]


def pytest_configure(config: pytest.Config) -> None:
    backends = _selected_backends()
    if not backends or not set(backends) <= set(BACKENDS):
        raise pytest.UsageError(
            f"TIERLAKE_TEST_DATABASES={os.environ.get('TIERLAKE_TEST_DATABASES')!r}: "
            f"give a comma-separated subset of {','.join(BACKENDS)}"
        )
    # Before collection, so that even import-time settings are hermetic.
    for key in [k for k in os.environ if k.startswith("TIERLAKE_") and k not in TEST_CONTROLS]:
        del os.environ[key]
    scratch = servers.scratch_dir("settings")
    config.add_cleanup(lambda: shutil.rmtree(scratch, ignore_errors=True))
    os.environ["TIERLAKE_CONFIG"] = str(scratch / "absent-tierlake.toml")
    os.environ["TIERLAKE_DATA_DIR"] = str(scratch / "var")
    reset_settings_cache()


# -- servers (started on first use, stopped at the end of the session) ---------------------------


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[servers.MariaDBServer]:
    with servers.mariadb_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[servers.PostgreSQLServer]:
    with servers.postgresql_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.RedisServer]:
    with servers.redis_server() as server:
        yield server


# -- databases on every selected backend ----------------------------------------------------------


@pytest.fixture(scope="session", params=_selected_backends())
def database_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> servers.DatabaseServer:
    """One backend (the parameter): has ``.name`` and ``.create_database(name) -> url``."""
    if request.param == "sqlite":
        return servers.SQLiteFiles(tmp_path_factory.mktemp("sqlite"))
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(scope="session")
def _migrated(database_server: servers.DatabaseServer) -> Iterator[tuple[str, Engine]]:
    """A database migrated to head once per session, and an engine to empty it."""
    url = database_server.create_database("tierlake_test")
    engine = create_db_engine(url, pool_size=1)
    upgrade(engine)
    yield url, engine
    engine.dispose()


# Rows still locked by a transaction some earlier test left open would make the
# emptying wait for ever (PostgreSQL) or 50 s (MariaDB): fail fast instead.
_LOCK_TIMEOUT = {
    "postgresql": "SET LOCAL lock_timeout = '10s'",
    "mysql": "SET SESSION innodb_lock_wait_timeout = 10",
    "mariadb": "SET SESSION innodb_lock_wait_timeout = 10",
}


@pytest.fixture
def database_url(_migrated: tuple[str, Engine]) -> str:
    """URL of a migrated database with every store table empty."""
    url, engine = _migrated
    with engine.begin() as conn:
        if sql := _LOCK_TIMEOUT.get(conn.dialect.name):
            conn.exec_driver_sql(sql)
        for name in reversed(STORE_TABLES):  # children first, for the foreign keys
            conn.execute(delete(Base.metadata.tables[name]))
    return url


@pytest.fixture
def empty_database_url(database_server: servers.DatabaseServer) -> str:
    """URL of a new database with no tables at all (e.g. to test migrations)."""
    return database_server.create_database(f"empty_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The store's ``Database`` on a migrated, emptied database."""
    database = Database(database_url)
    yield database
    database.dispose()
