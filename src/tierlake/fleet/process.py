"""One instance: an OS process on a free port, started from a command, stopped in order.

:class:`Process` runs any argv (a launch template's command with its ``{port}`` filled in)
in its own session and dies with the control plane, even one killed with SIGKILL
(``PR_SET_PDEATHSIG``); :meth:`Process.stop` sends SIGTERM, then SIGKILL after a grace.
Auto Scaling groups (:mod:`tierlake.fleet.asg`) run their instances as these.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Mapping, Sequence

import structlog

from tierlake.fleet.lifeline import die_with_parent

log = structlog.get_logger(__name__)


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

