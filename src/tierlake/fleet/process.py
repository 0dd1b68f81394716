"""One instance: a tier's OS process on a free port, health-checked and stopped.

An instance runs ``tierlake serve <tier> --port N`` (the port chosen by the OS) and dies
with the control plane, even one killed with SIGKILL (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time

import httpx
import structlog

from tierlake.fleet.lifeline import die_with_parent
from tierlake.fleet.tiers import Tier

log = structlog.get_logger(__name__)


class InstanceStartError(RuntimeError):
    """An instance exited or stayed unhealthy while starting."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class Instance:
    """A tier process: started, health-checked, stopped."""

    def __init__(self, tier: Tier, host: str, env: dict[str, str]) -> None:
        self.tier, self.host, self.env = tier, host, env
        self.port = free_port(host)
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def target(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tierlake", "serve", self.tier.name,
            "--host", self.host, "--port", str(self.port),
            env=self.env, preexec_fn=die_with_parent,
            # Its own session: a Ctrl-C at the terminal reaches the control plane only, which
            # stops the instances in order (web before app) instead of all at once.
            start_new_session=True)
        self.started_at = time.monotonic()
        log.info("instance.started", tier=self.tier.name, pid=self.proc.pid, url=self.url)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def healthy(self, client: httpx.AsyncClient) -> bool:
        try:
            r = await client.get(self.url + self.tier.health_path, timeout=2.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    code = self.proc.returncode if self.proc else None
                    raise InstanceStartError(
                        f"the {self.tier.name} tier exited with code {code} while starting; "
                        "its log lines above say why")
                if await self.healthy(client):
                    return
                await asyncio.sleep(0.1)
        raise InstanceStartError(f"the {self.tier.name} tier did not answer "
                                 f"{self.tier.health_path} within {timeout:.0f} s")

    async def stop(self, grace: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            log.warning("instance.kill", tier=self.tier.name, pid=proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        log.info("instance.stopped", tier=self.tier.name, pid=proc.pid)
