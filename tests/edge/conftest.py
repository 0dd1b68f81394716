"""Fixtures of the edge tests (load balancer): the anyio backend and the helper modules'
folder on the import path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(params=[pytest.param(("asyncio", {}), id="asyncio"),
                        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Each async edge test runs on asyncio's loop and on uvloop (the lead runs the
    balancer on uvloop when it is installed)."""
    return request.param  # type: ignore[no-any-return]
