"""The control plane behind `tierlake up`: one asyncio loop owning every component.

A component has one lifecycle, ``await start()`` then ``await stop()``. The control plane
starts them in dependency order (for each tier of :data:`~tierlake.fleet.tiers.TIERS`: its
listener on the configured port, then its instance group on free ports; the pipeline
scheduler last) and stops them in reverse, on SIGINT/SIGTERM or when one fails to start.
A component that fails to start ends `tierlake up` with one line naming the fix, after
every component already started has been stopped.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from functools import partial
from typing import Protocol

import structlog

from tierlake.config import Settings
from tierlake.errors import ConfigError, TierlakeError
from tierlake.fleet.group import InstanceGroup
from tierlake.fleet.listener import Listener
from tierlake.fleet.process import InstanceStartError
from tierlake.fleet.tiers import TIERS, Tier
from tierlake.pipeline.scheduler import PipelineScheduler

log = structlog.get_logger(__name__)


class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class StartupError(TierlakeError):
    """A component could not start; the message names the fix."""


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.listeners: dict[str, Listener] = {}
        self.groups: dict[str, InstanceGroup] = {}
        self.components: list[Component] = []
        for tier in TIERS.values():
            listener = Listener(tier.name, settings.host, tier.listener_port(settings))
            group = InstanceGroup(
                tier, settings.host, listener, partial(self._env, tier),
                size=settings.control.instances,
                start_timeout=settings.control.start_timeout_seconds,
                healthy_reset=settings.control.healthy_reset_seconds)
            self.listeners[tier.name], self.groups[tier.name] = listener, group
            self.components += [_ListenerComponent(listener, tier.port_variable), group]
        self.scheduler = PipelineScheduler(settings)
        self.components.append(self.scheduler)
        self._started: list[Component] = []

    def _env(self, tier: Tier) -> dict[str, str]:
        """An instance's environment: ours, and the listener URL of the tier it calls."""
        env = {**os.environ}
        if tier.calls:
            called, variable = tier.calls
            env[variable] = self.listeners[called].url
        return env

    def url(self, tier: str) -> str:
        return self.listeners[tier].url

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Start everything and supervise until SIGINT/SIGTERM."""
        asyncio.run(self._main(on_ready))

    async def _main(self, on_ready: Callable[[], None] | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            starting = asyncio.create_task(self._start_all())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # raises a start-up failure
                if on_ready is not None:
                    on_ready()
                await stopped
            else:
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                stopped.cancel()
        finally:
            await self._stop_all()

    async def _start_all(self) -> None:
        for component in self.components:
            self._started.append(component)
            try:
                await component.start()
            except InstanceStartError as exc:
                raise StartupError(str(exc)) from exc
            log.info("component.started", name=component.name)

    async def _stop_all(self) -> None:
        while self._started:
            component = self._started.pop()
            try:
                await component.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others all the same
                log.error("component.stop_failed", name=component.name, error=str(exc))
            log.info("component.stopped", name=component.name)


class _ListenerComponent:
    """A listener whose port, when taken, is a one-line error naming its setting."""

    def __init__(self, listener: Listener, variable: str) -> None:
        self.listener, self.variable = listener, variable
        self.name = f"{listener.name} listener"

    async def start(self) -> None:
        try:
            await self.listener.start()
        except OSError as exc:
            raise ConfigError(
                f"port {self.listener.port} on {self.listener.host} is in use (wanted by the "
                f"{self.listener.name} tier's listener: {exc.strerror}); stop the other "
                f"process or choose another port with {self.variable}=<port>") from exc

    async def stop(self) -> None:
        await self.listener.stop()
