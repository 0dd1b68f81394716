"""Start and stop a whole system the way a user does: `tierlake up` in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from servers import free_port


@dataclass
class System:
    proc: subprocess.Popen[str]
    web_url: str
    app_url: str
    data_dir: Path
    log: Path
    control_url: str = ""
    dns_port: int = 0

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _wait_for(url: str, proc: subprocess.Popen[str], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tierlake up exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def seed_small_store(data_dir: Path) -> None:
    """A small demo store (seconds, not the minute of the default seed)."""
    result = subprocess.run(
        [sys.executable, "-m", "tierlake", "seed", "--products", "40", "--customers", "60",
         "--orders", "400", "--months", "2"], capture_output=True, text=True, timeout=180,
        env={**os.environ, "TIERLAKE_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr[-3000:]


def descendants(pid: int) -> dict[int, str]:
    """Every living descendant of ``pid`` (pid -> command line), read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = cmdline(child)
                todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie has exited all the same)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_system(tmp_path: Path, *, seed: bool, extra_env: dict[str, str] | None = None
                 ) -> System:
    web_port, app_port, control_port, dns_port = free_port(), free_port(), free_port(), free_port()
    log = tmp_path / "up.log"
    env = {**os.environ, "TIERLAKE_DATA_DIR": str(tmp_path / "var"),
           "TIERLAKE_WEB_PORT": str(web_port), "TIERLAKE_APP_PORT": str(app_port),
           "TIERLAKE_FLEET__CONTROL_PORT": str(control_port), "TIERLAKE_DNS__PORT": str(dns_port),
           "TIERLAKE_BI_PORT": str(free_port()), "TIERLAKE_BI__SMTP_PORT": str(free_port()),
           "TIERLAKE_EVENTS__FLUSH_SECONDS": "1", "TIERLAKE_PIPELINE__INTERVAL_SECONDS": "0",
           **(extra_env or {})}
    args = [sys.executable, "-m", "tierlake", "up"] + ([] if seed else ["--no-seed"])
    with log.open("w") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    system = System(proc, f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{app_port}",
                    tmp_path / "var", log, f"http://127.0.0.1:{control_port}", dns_port)
    _wait_for(system.web_url + "/health", proc, log, timeout=180)
    # The web tier answering is not enough: the supervisor has to have seen it too
    # (it polls), or a test that kills a tier now races the supervisor's start-up.
    deadline = time.monotonic() + 30
    while "Press Ctrl-C to stop" not in system.output():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"tierlake up never said it was up:\n{system.output()[-4000:]}")
        time.sleep(0.1)
    return system


def stop_system(system: System) -> int:
    if system.proc.poll() is None:
        system.proc.send_signal(signal.SIGINT)
        try:
            return system.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(system.proc.pid, signal.SIGKILL)
            system.proc.wait()
            pytest.fail(f"tierlake up did not stop on Ctrl-C:\n{system.output()[-4000:]}")
    return system.proc.returncode
