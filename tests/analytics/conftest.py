"""Fixtures of the analytics tests: one seeded store and its stand-in lake per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from analytics_lake import Lake, build_lake


@pytest.fixture(scope="session")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """The store (SQLite) seeded once, exported to Parquet the way the lake holds it."""
    built = build_lake(tmp_path_factory.mktemp("analytics"))
    yield built
    built.db.dispose()
