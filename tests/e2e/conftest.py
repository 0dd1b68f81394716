"""Fixtures for end-to-end tests: the system as `tierlake up` starts it, and Debian's chromium
driven by Playwright (flags from RECIPES.md: no sandbox, no background networking)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from system_proc import System, start_system, stop_system

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    # Never look up hosts outside this machine.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]


@pytest.fixture
def seeded_system(tmp_path: Path) -> Iterator[System]:
    system = start_system(tmp_path, seed=True)
    yield system
    stop_system(system)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not executable:
        message = "chromium is not installed: apt-get install -y chromium"
        if os.environ.get("TIERLAKE_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, headless=True,
                                      args=LAUNCH_ARGS)
        yield launched
        launched.close()
