"""The control plane behind `tierlake up`, driven as an operator would: real processes on
free ports, killed, replaced and stopped (docs/architecture.md, "The control plane")."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from system_proc import (
    System,
    alive,
    descendants,
    seed_small_store,
    start_system,
    stop_system,
)

from servers import free_port

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _wait(what: str, check, system: System, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s:\n{system.output()[-4000:]}")
        time.sleep(0.1)


def _instances(system: System, tier: str) -> list[int]:
    return [pid for pid, cmd in descendants(system.proc.pid).items()
            if f"serve {tier}" in cmd]


def _log_in(web_url: str, email: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=web_url, timeout=30) as client:
        page = client.get("/login")
        assert page.status_code == 200, page.text
        token = CSRF.search(page.text)
        assert token, "the login form carries a CSRF token"
        r = client.post("/login", data={"csrf_token": token.group(1), "email": email,
                                        "password": password, "next": "/account"})
        if r.status_code == 303:
            account = client.get(r.headers["location"])
            assert account.status_code == 200 and email in account.text
        return r


def test_supervisor_killed_during_a_pipeline_run_leaves_no_process(tmp_path: Path) -> None:
    """SIGKILL the supervisor while a scheduled run is extracting: the tiers, the run and
    what the run started (its SQLite reader) all die with it."""
    seed_small_store(tmp_path / "var")
    s = start_system(tmp_path, seed=False,
                     extra_env={"TIERLAKE_PIPELINE__INTERVAL_SECONDS": "1"})
    try:
        def run_with_a_child() -> bool:
            procs = descendants(s.proc.pid)
            runs = {p for p, cmd in procs.items() if "pipeline run" in cmd}
            return any(_parent(p) in runs for p in procs)

        _wait("no pipeline run with a child process", run_with_a_child, s, timeout=120)
        living = descendants(s.proc.pid)
        assert any("serve app" in c for c in living.values())
        assert any("serve web" in c for c in living.values())
        assert any("pipeline run" in c for c in living.values())
        status = s.data_dir / "pipeline" / "status.json"
        before = status.read_bytes() if status.exists() else b""
        os.kill(s.proc.pid, signal.SIGKILL)
        s.proc.wait()
        deadline = time.monotonic() + 15
        while any(alive(p) for p in living) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = {p: c for p, c in living.items() if alive(p)}
        assert not survivors, f"processes outlived their supervisor: {survivors}"
        # An orphaned run would have gone on to finish (and write its outcome): it was
        # killed instead, so the last outcome on file is the one from before the kill.
        assert (status.read_bytes() if status.exists() else b"") == before
    finally:
        for pid in descendants(s.proc.pid):  # only if the test failed
            os.kill(pid, signal.SIGKILL)


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def test_the_banner_logins_work_through_the_web_tier(tmp_path: Path) -> None:
    seed_small_store(tmp_path / "var")
    s = start_system(tmp_path, seed=False)
    try:
        lines = s.output().splitlines()
        assert f"API docs: {s.app_url}/api/docs" in lines, "the docs URL is on its line, whole"
        admin = next(re.fullmatch(r"Admin login: (\S+) / (\S+)", line) for line in lines
                     if line.startswith("Admin login:"))
        assert admin is not None
        shoppers = next(line for line in lines if line.startswith("Demo shopper logins:"))
        logins = re.findall(r"(\S+@\S+) / (\S+?)(?:,|$)", shoppers)
        assert len(logins) == 2, shoppers
        for email, password in [admin.groups(), *logins]:
            r = _log_in(s.web_url, email, password)
            assert r.status_code == 303, f"{email} cannot log in: {r.status_code} {r.text[:300]}"
    finally:
        stop_system(s)


def test_ready_reveals_no_configuration(tmp_path: Path) -> None:
    s = start_system(tmp_path, seed=False)
    try:
        for url in (s.app_url + "/ready", s.app_url + "/api/v1/ready", s.web_url + "/ready"):
            r = httpx.get(url)
            assert r.status_code == 200 and r.json()["status"] == "ok", r.text
            assert "://" not in r.text and str(s.data_dir) not in r.text, r.text
        for url in (s.app_url + "/health", s.web_url + "/health"):
            assert httpx.get(url).json() == {"status": "ok"}
    finally:
        stop_system(s)
    # An app tier whose database does not answer: 503, naming the dependency, not its URL.
    port = free_port()
    env = {**os.environ, "TIERLAKE_DATA_DIR": str(tmp_path / "other"),
           "TIERLAKE_DATABASE_URL": "mysql+pymysql://shop:hunter2@127.0.0.1:1/store"}
    with (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tierlake", "serve", "app", "--port",
                                 str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=30)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, \
                    (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(0.2)
        assert r.status_code == 503
        assert r.json()["checks"]["database"]["ok"] is False
        for secret in ("hunter2", "127.0.0.1", "mysql", "shop"):
            assert secret not in r.text, r.text
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_tier_that_cannot_start_stops_the_others_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tierlake", "up", "--no-seed"], capture_output=True,
            text=True, timeout=120,
            env={**os.environ, "TIERLAKE_DATA_DIR": str(tmp_path), "TIERLAKE_WEB_PORT": str(port),
                 "TIERLAKE_APP_PORT": "0", "TIERLAKE_PIPELINE__INTERVAL_SECONDS": "0",
                 "TIERLAKE_FLEET__CONTROL_PORT": "0", "TIERLAKE_DNS__PORT": "0"})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"port {port}" in errors[0] and "TIERLAKE_WEB_PORT" in errors[0]
    assert "Traceback" not in result.stderr
    # The app tier had started (it comes first): it was stopped, not orphaned.
    started = re.findall(r"process\.started .*name=app/\S+ pid=(\d+)", result.stderr)
    assert len(started) == 2, result.stderr[-3000:]
    assert not [p for p in map(int, started) if alive(p)]
    assert len(re.findall(r"process\.stopped .*name=app/", result.stderr)) == 2
