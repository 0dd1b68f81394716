"""Helpers of the proxy tests: a balancer started over real backends, bounded waits, and
an observer that keeps the access-log entries."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import httpx

from tierlake.edge.lb.balancer import Listener, LoadBalancer
from tierlake.edge.lb.model import AccessLogEntry, HealthCheckSettings, TargetGroupSettings
from tierlake.edge.lb.rules import Action, Forward, Rule
from tierlake.edge.lb.targets import TargetGroup

# Checks every 250 ms on /health: targets are healthy within a second, and a backend slowed
# by a busy machine still answers within the timeout.
QUICK = TargetGroupSettings(
    health_check=HealthCheckSettings(path="/health", interval_seconds=0.25, timeout_seconds=0.2,
                                     healthy_threshold=2, unhealthy_threshold=2),
    deregistration_delay_seconds=1.0)


class Entries:
    """An observer keeping every access-log entry."""

    def __init__(self) -> None:
        self.entries: list[AccessLogEntry] = []

    def request_done(self, entry: AccessLogEntry) -> None:
        self.entries.append(entry)


def group(name: str, *ports: int, settings: TargetGroupSettings = QUICK) -> TargetGroup:
    tg = TargetGroup(name, settings, seed=7)
    for i, port in enumerate(ports):
        tg.register(f"{name}-{i}", "127.0.0.1", port)
    return tg


@asynccontextmanager
async def balancer(default: Action | TargetGroup, rules: Sequence[Rule] = (), *,
                   observers: Sequence[object] = (), idle_timeout: float = 60.0
                   ) -> AsyncIterator[tuple[LoadBalancer, str]]:
    """A started balancer and its base URL; stopped after."""
    action = Forward.to(default) if isinstance(default, TargetGroup) else default
    lb = LoadBalancer("test-alb", listeners=[Listener(0, list(rules), action)],
                      observers=observers, idle_timeout=idle_timeout)  # type: ignore[arg-type]
    await lb.start()
    try:
        yield lb, f"http://127.0.0.1:{lb.listeners[0].port}"
    finally:
        await lb.stop(0.5)


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=10)


async def until(condition: Callable[[], bool], what: str, deadline: float = 5.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"still waiting for: {what}")
        await asyncio.sleep(0.01)


async def raw(port: int, data: bytes, *, read_until_close: bool = True) -> bytes:
    """Send bytes on a fresh connection; what came back until the balancer closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(10):
            return await reader.read(-1) if read_until_close else await reader.read(65536)
    finally:
        writer.close()


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
