"""One instance: a tier's OS process, started, health-checked and stopped.

Children get ``PR_SET_PDEATHSIG`` on Linux, so even a supervisor killed with
SIGKILL leaves no orphan behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import structlog

log = structlog.get_logger(__name__)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Instance:
    """A tier process: ``tierlake serve <tier> --port N`` with its environment."""

    tier: str
    host: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tierlake", "serve", self.tier,
               "--host", self.host, "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **self.env},
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        log.info("instance.started", tier=self.tier, pid=self.proc.pid, url=self.url)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"the {self.tier} tier exited with code {code} while starting; "
                                   "its log lines above say why")
            try:
                if httpx.get(self.url + self.health_path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the {self.tier} tier did not answer {self.health_path} "
                           f"within {timeout:.0f} s")

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("instance.kill", tier=self.tier, pid=self.proc.pid)
            self.proc.kill()
            self.proc.wait()
        log.info("instance.stopped", tier=self.tier, pid=self.proc.pid)
