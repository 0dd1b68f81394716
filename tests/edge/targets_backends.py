"""Real HTTP backends for the target-group tests: small asyncio servers on free ports.

Each :class:`Backend` answers ``GET /health`` as its ``mode`` says (``ok`` 200, ``fail``
503, ``code`` any status, ``hang`` never answers) and every other path with 200 and its
name, so a test can tell which target served a request. ``dead_port()`` is a port nobody
listens on (connection refused).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tierlake.edge.lb.model import HealthCheckSettings, TargetGroupSettings, TargetState
from tierlake.edge.lb.targets import Target, TargetGroup


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Backend:
    name: str
    mode: str = "ok"  # ok | fail | code | hang
    code: int = 200
    port: int = 0
    checks: int = 0
    user_agents: list[str] = field(default_factory=list)
    peer: Backend | None = None  # record whether this one hangs when we are checked
    peer_hanging: list[bool] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _hanging: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self) -> Backend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def hanging(self) -> int:
        return len(self._hanging)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._hanging):
                task.cancel()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            path = head.split(" ", 2)[1]
            if path == "/health":
                self.checks += 1
                for line in head.split("\r\n"):
                    if line.lower().startswith("user-agent:"):
                        self.user_agents.append(line.split(":", 1)[1].strip())
                if self.peer is not None:
                    self.peer_hanging.append(self.peer.hanging > 0)
                if self.mode == "hang":  # until the checker gives up and closes
                    task = asyncio.current_task()
                    assert task is not None
                    self._hanging.add(task)
                    await reader.read(1)
                    return
                status = {"ok": 200, "fail": 503, "code": self.code}[self.mode]
                body = b"health"
            else:
                status, body = 200, self.name.encode()
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (status, len(body), body))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._hanging.discard(asyncio.current_task())  # type: ignore[arg-type]
            writer.close()


def quick(**health: Any) -> TargetGroupSettings:
    """Settings with checks every 50 ms (tests of the state machine)."""
    algorithm = health.pop("algorithm", "round_robin")
    slow_start = health.pop("slow_start_seconds", 0.0)
    delay = health.pop("deregistration_delay_seconds", 5.0)
    passive = health.pop("passive_detection", True)
    params: dict[str, Any] = {"path": "/health", "interval_seconds": 0.05,
                              "timeout_seconds": 0.04, "healthy_threshold": 2,
                              "unhealthy_threshold": 2}
    params.update(health)
    return TargetGroupSettings(health_check=HealthCheckSettings(**params), algorithm=algorithm,
                               slow_start_seconds=slow_start,
                               deregistration_delay_seconds=delay, passive_detection=passive)


async def until(condition: Callable[[], bool], what: str, deadline: float = 5.0) -> None:
    """Wait (bounded) until ``condition`` holds; fail saying what was awaited."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"still waiting for: {what}")
        await asyncio.sleep(0.01)


async def until_state(group: TargetGroup, target_id: str, state: TargetState,
                      deadline: float = 5.0) -> None:
    await until(lambda: group.health(target_id)[0] is state,
                f"{target_id} {state} (now {group.health(target_id)})", deadline)


async def settle(group: TargetGroup, *backends: Backend) -> None:
    """Register the backends, start the checks and wait until all are healthy."""
    for b in backends:
        group.register(b.name, "127.0.0.1", b.port)
    await group.start()
    for b in backends:
        await until_state(group, b.name, TargetState.HEALTHY)




def target(group: TargetGroup, target_id: str) -> Target:
    found = group.get(target_id)
    assert found is not None, f"{target_id} is not registered in {group.name}"
    return found


Make = Callable[[str], Awaitable["Backend"]]


@pytest.fixture
async def backend() -> AsyncIterator[Make]:
    """Start backends by name; every one started is stopped after the test."""
    started: list[Backend] = []

    async def make(name: str) -> Backend:
        b = await Backend(name).start()
        started.append(b)
        return b

    yield make
    for b in started:
        await b.stop()
