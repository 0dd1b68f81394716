"""One instance: an OS process on a free port, started from a command, stopped in order.

:class:`Process` runs any argv (a launch template's command with its ``{port}`` filled in)
in its own session and dies with the control plane, even one killed with SIGKILL
(``PR_SET_PDEATHSIG``); :meth:`Process.stop` sends SIGTERM, then SIGKILL after a grace.
:class:`Instance` is a tier's process (``tierlake serve <tier> --port N``) health-checked over
HTTP, as the fixed-size group runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import Mapping, Sequence

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


class Process:
    """An OS process from an argv: its own session, dies with its parent, stopped in order."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], *, name: str = "") -> None:
        if not argv:
            raise ValueError("a process needs a command (an argv with at least the program)")
        self.argv, self.env = list(argv), dict(env)
        self.name = name or argv[0]
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, preexec_fn=die_with_parent,
            # Its own session: a Ctrl-C at the terminal reaches the control plane only, which
            # stops the instances in order (web before app) instead of all at once.
            start_new_session=True)
        log.info("process.started", name=self.name, pid=self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``grace`` seconds."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(grace):
                await proc.wait()
        except TimeoutError:
            log.warning("process.kill", name=self.name, pid=proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        log.info("process.stopped", name=self.name, pid=proc.pid, code=proc.returncode)


class Instance:
    """A tier process: started, health-checked, stopped."""

    def __init__(self, tier: Tier, host: str, env: dict[str, str]) -> None:
        self.tier, self.host, self.env = tier, host, env
        self.port = free_port(host)
        self.process = Process(
            [sys.executable, "-m", "tierlake", "serve", tier.name,
             "--host", host, "--port", str(self.port)], env, name=tier.name)
        self.started_at = 0.0

    @property
    def proc(self) -> asyncio.subprocess.Process | None:
        return self.process.proc

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def target(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    async def start(self) -> None:
        await self.process.start()
        self.started_at = time.monotonic()
        log.info("instance.started", tier=self.tier.name, pid=self.pid, url=self.url)

    def alive(self) -> bool:
        return self.process.alive()

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
        if not self.alive():
            return
        await self.process.stop(grace)
        log.info("instance.stopped", tier=self.tier.name, pid=self.pid)
