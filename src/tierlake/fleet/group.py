"""An instance group: N instances of one tier kept running behind its listener.

The Auto Scaling group of the design at a fixed size: instances start on free ports and are
registered with the tier's :class:`~tierlake.fleet.listener.Listener` once ``/health``
answers; an instance that dies, or fails its health check three times running, is
deregistered and replaced. Replacements back off (1 s, 2 s, 4 s ... up to 30 s); the
back-off resets once an instance has stayed healthy for ``control.healthy_reset_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import structlog

from tierlake.fleet.listener import Listener
from tierlake.fleet.process import Instance, InstanceStartError
from tierlake.fleet.tiers import Tier

log = structlog.get_logger(__name__)
CHECK_SECONDS = 1.0
UNHEALTHY_AFTER = 3  # failed checks in a row
MAX_BACKOFF_SECONDS = 30.0


def backoff_seconds(failures: int) -> float:
    """Delay before the replacement after ``failures`` recent deaths (1, 2, 4 ... 30 s)."""
    return min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(failures, 6))


class InstanceGroup:
    def __init__(self, tier: Tier, host: str, listener: Listener,
                 env: Callable[[], dict[str, str]], *,
                 size: int = 1, start_timeout: float = 60.0, healthy_reset: float = 60.0
                 ) -> None:
        self.tier, self.host, self.listener, self._env = tier, host, listener, env
        self.env: dict[str, str] = {}
        self.size, self.start_timeout, self.healthy_reset = size, start_timeout, healthy_reset
        self.name = f"{tier.name} instances"
        self.instances: list[Instance] = []
        self.failures = 0  # recent deaths, for the back-off
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.env = self._env()  # the listeners it calls are bound by now
        for _ in range(self.size):
            inst = Instance(self.tier, self.host, self.env)
            self.instances.append(inst)
            await inst.start()
            await inst.wait_healthy(self.start_timeout)
            self.listener.register(inst.target)
        self._task = asyncio.create_task(self._watch(), name=f"{self.tier.name}-group")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for inst in self.instances:
            self.listener.deregister(inst.target)
        await asyncio.gather(*(inst.stop() for inst in reversed(self.instances)))

    async def _watch(self) -> None:
        misses: dict[int, int] = {}
        healthy_since: dict[int, float] = {}
        async with httpx.AsyncClient() as client:
            while not self._stopping.is_set():
                await asyncio.sleep(CHECK_SECONDS)
                for i, inst in enumerate(list(self.instances)):
                    if inst.alive() and await inst.healthy(client):
                        misses[id(inst)] = 0
                        self.listener.register(inst.target)
                        since = healthy_since.setdefault(id(inst), time.monotonic())
                        if self.failures and time.monotonic() - since >= self.healthy_reset:
                            log.info("instance.backoff_reset", tier=self.tier.name,
                                     healthy_s=self.healthy_reset)
                            self.failures = 0
                        continue
                    healthy_since.pop(id(inst), None)
                    misses[id(inst)] = misses.get(id(inst), 0) + 1
                    if inst.alive() and misses[id(inst)] < UNHEALTHY_AFTER:
                        continue
                    self.listener.deregister(inst.target)
                    await self._replace(i, inst)

    async def _replace(self, slot: int, dead: Instance) -> None:
        code = dead.proc.returncode if dead.proc else None
        await dead.stop(grace=5.0)  # an unhealthy one still running
        self.failures += 1
        delay = backoff_seconds(self.failures)
        log.warning("instance.died", tier=self.tier.name, pid=dead.pid, code=code,
                    restart_in_s=delay, restarts=self.failures)
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
            return  # stopping: no replacement
        except TimeoutError:
            pass
        inst = Instance(self.tier, self.host, self.env)
        self.instances[slot] = inst
        await inst.start()
        try:
            await inst.wait_healthy(self.start_timeout)
        except InstanceStartError as exc:
            log.warning("instance.replacement_failed", tier=self.tier.name, error=str(exc))
            return  # the next check sees it dead or unhealthy and tries again
        self.listener.register(inst.target)
        log.info("instance.replaced", tier=self.tier.name, pid=inst.pid, url=inst.url)
