"""Fixtures for end-to-end tests: the system as `tierlake up` starts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from system_proc import System, start_system, stop_system


@pytest.fixture
def seeded_system(tmp_path: Path) -> Iterator[System]:
    system = start_system(tmp_path, seed=True)
    yield system
    stop_system(system)
