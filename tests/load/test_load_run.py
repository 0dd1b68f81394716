"""`tierlake load` against a real store (`tierlake up` in a subprocess), as a user runs it.

The shoppers' choices are pinned (``--seed``) and their think times shortened
(``--think-scale``) so a few seconds hold every kind of journey; what is asserted is what a
user would check afterwards: orders in the database, pages of every kind in the summary,
its figures in the JSON file, and a Ctrl-C that still leaves a summary.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from e2e.system_proc import System, seed_small_store, start_system, stop_system
from servers import free_port
from tierlake.data.db import create_db_engine
from tierlake.data.schema import Customer, Order

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[System, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("load")
    seed_small_store(tmp / "var")
    ports = {"TIERLAKE_DNS__PORT": str(free_port()),
             "TIERLAKE_FLEET__CONTROL_PORT": str(free_port())}
    system = start_system(tmp, seed=False, extra_env=ports)
    env = {**os.environ, **ports, "TIERLAKE_DATA_DIR": str(tmp / "var"),
           "TIERLAKE_WEB_PORT": system.web_url.rsplit(":", 1)[1],
           "TIERLAKE_APP_PORT": system.app_url.rsplit(":", 1)[1]}
    yield system, env
    stop_system(system)


def _load(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tierlake.cli_load", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _load_orders(data_dir: Path) -> int:
    """Orders placed by the shoppers `tierlake load` registered (load-...@example.com)."""
    engine = create_db_engine(f"sqlite:///{data_dir / 'tierlake.db'}")
    try:
        with engine.connect() as conn:
            return int(conn.scalar(
                select(func.count()).select_from(Order.__table__)
                .join(Customer.__table__, Order.customer_id == Customer.id)
                .where(Customer.email.like("load-%@example.com"))) or 0)
    finally:
        engine.dispose()


def test_shoppers_browse_search_and_place_orders(store: tuple[System, dict[str, str]],
                                                 tmp_path: Path) -> None:
    system, env = store
    before = _load_orders(system.data_dir)
    out = tmp_path / "summary.json"
    proc = _load(env, "--users", "5", "--duration", "8", "--seed", "7", "--think-scale",
                 "0.02", "--json-out", str(out))
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    summary = json.loads(out.read_text())

    placed = _load_orders(system.data_dir) - before
    checkouts = summary["pages"].get("POST /checkout", {"requests": 0, "failures": 0})
    answered = checkouts["requests"] - checkouts["failures"]
    # every answered checkout is an order; one cut short by the end of the run may be too
    assert placed >= answered >= 1, (placed, summary["pages"])
    for page in ("GET /", "GET /c/[slug]", "GET /p/[slug]", "GET /search?q=[word]",
                 "POST /register", "POST /cart/add", "GET /cart", "GET /checkout",
                 "GET /orders/[id]"):
        assert summary["pages"].get(page, {}).get("requests", 0) >= 1, (page, summary["pages"])
    # browsing outnumbers buying, as in the mix
    assert summary["pages"]["GET /p/[slug]"]["requests"] > checkouts["requests"]
    assert summary["requests"] == sum(p["requests"] for p in summary["pages"].values())
    assert summary["failures"] == 0, summary["failures_by_kind"]
    assert summary["rps"] > 0 and summary["users"] == 5
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
    assert summary["target"] == system.web_url or "shop." in summary["note"], summary
    assert "Summary" in output and "GET /p/[slug]" in output


def test_ctrl_c_stops_the_shoppers_and_still_summarizes(store: tuple[System, dict[str, str]],
                                                        tmp_path: Path) -> None:
    _, env = store
    out = tmp_path / "summary.json"
    proc = _load(env, "--users", "3", "--duration", "300", "--seed", "11", "--think-scale",
                 "0.02", "--json-out", str(out))
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "3 shoppers for 300 s against ...": Locust starts
        assert "shoppers for 300 s" in first, first
        time.sleep(4)  # let the shoppers make some requests (no figure depends on how many)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = first + rest
    assert proc.returncode == 0, output
    summary = json.loads(out.read_text())
    assert summary["interrupted"] is True
    assert summary["requests"] > 0 and summary["p50_ms"] is not None
    assert summary["duration_s"] < 300
    assert "Stopped early by Ctrl-C" in output
