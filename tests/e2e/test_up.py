"""`tierlake up`: the system a user starts, uses, breaks and stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from system_proc import start_system, stop_system


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_up_serves_the_store_and_stops_cleanly(seeded_system) -> None:
    s = seeded_system
    home = httpx.get(s.web_url + "/")
    assert home.status_code == 200
    assert "text/html" in home.headers["content-type"]
    products = httpx.get(s.app_url + "/api/v1/products").json()
    assert products["total"] >= 200, "the demo store is seeded on first start"
    assert s.web_url in s.output() and "Ctrl-C" in s.output()
    tiers = _children(s.proc.pid)
    assert len(tiers) == 2, "web and app tiers run as separate processes"
    assert stop_system(s) == 0
    assert "tierlake stopped" in s.output()
    for pid in tiers:
        assert not _alive(pid), "no orphan process after Ctrl-C"


def test_a_killed_tier_is_replaced(seeded_system) -> None:
    s = seeded_system
    web_before = set(_children(s.proc.pid))
    victim = max(web_before)  # the web tier starts second
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = set(_children(s.proc.pid))
        if victim not in now and len(now) == 2:
            try:
                if httpx.get(s.web_url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    else:
        raise AssertionError(f"the killed tier was not replaced:\n{s.output()[-3000:]}")
    assert "instance.died" in s.output()


def test_supervisor_killed_hard_leaves_no_orphans(tmp_path: Path) -> None:
    s = start_system(tmp_path, seed=False)
    tiers = _children(s.proc.pid)
    os.kill(s.proc.pid, signal.SIGKILL)
    s.proc.wait()
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in tiers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in tiers if _alive(p)], "tiers die with their supervisor"


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tierlake", "up", "--no-seed"], capture_output=True, text=True,
            timeout=60, env={**os.environ, "TIERLAKE_DATA_DIR": str(tmp_path),
                             "TIERLAKE_WEB_PORT": str(port), "TIERLAKE_APP_PORT": "0"})
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "TIERLAKE_WEB_PORT" in result.stderr
    assert "Traceback" not in result.stderr
