"""Fixtures of the analytics tests: one seeded store and its stand-in lake per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from analytics_lake import Lake, LoggedLake, build_lake, build_logged_lake


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
