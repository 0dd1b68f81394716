"""A TCP listener that forwards each connection to a healthy instance of its group.

The placeholder for the load balancer of the next issue (an ALB-style listener with target
groups and its own health checks replaces it): the control plane owns the configured port
(``web_port``, ``app_port``), instances run on free ports behind it, and the instance group
calls :meth:`Listener.register` / :meth:`Listener.deregister` as instances become healthy
or die. Each accepted connection goes to the next registered target (round robin) and bytes
are copied both ways until either side closes. With no target registered a connection is
closed at once (an ALB answers 503 there; the balancer that replaces this one will).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import structlog

log = structlog.get_logger(__name__)
Target = tuple[str, int]
_CHUNK = 64 * 1024


class Listener:
    def __init__(self, name: str, host: str, port: int) -> None:
        self.name, self.host, self.port = name, host, port
        self._targets: list[Target] = []
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def targets(self) -> list[Target]:
        return list(self._targets)

    def register(self, target: Target) -> None:
        if target not in self._targets:
            self._targets.append(target)
            log.info("listener.target_registered", listener=self.name, target=f"{target[1]}")

    def deregister(self, target: Target) -> None:
        if target in self._targets:
            self._targets.remove(target)
            log.info("listener.target_deregistered", listener=self.name, target=f"{target[1]}")

    def _pick(self) -> Target | None:
        if not self._targets:
            return None
        return self._targets[next(self._turn) % len(self._targets)]

    async def start(self) -> None:
        """Bind the port (an OSError says it is taken)."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]  # port 0: the OS chose
        log.info("listener.started", listener=self.name, url=self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._conns.discard(task)
            writer.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                       ) -> None:
        target = self._pick()
        if target is None:
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*target), timeout=5)
        except (OSError, TimeoutError) as exc:
            log.warning("listener.target_unreachable", listener=self.name,
                        target=f"{target[1]}", error=str(exc))
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close the other side."""
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        with contextlib.suppress(OSError):
            dst.close()
