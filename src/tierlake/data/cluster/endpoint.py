"""The cluster's writer and reader endpoints: an RDS-Proxy-like TCP proxy.

An RDS Multi-AZ deployment moves its endpoint's DNS name to the standby on failover; RDS
Proxy goes further and keeps accepting connections while the writer changes, so clients see
a slow connect instead of an error ("Improving application availability with Amazon RDS
Proxy"). This endpoint does the latter at the TCP level: a client connection is forwarded byte
for byte to the current target, chosen when the connection opens. While the endpoint is
*held* (during a failover), new connections are accepted but wait (up to ``hold_timeout``)
until the endpoint is released to the new writer. Moving the endpoint closes the
connections to the old target, so their clients reconnect, as after an RDS failover.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT = 5.0
CHUNK = 65536
RETRY_INTERVAL = 0.05


class _Link:
    """A client connection and its server connection."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server

    def close(self) -> None:
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.close()


class Endpoint:
    """A TCP endpoint on ``host:port`` forwarding to a movable ``(host, port)`` target."""

    def __init__(self, name: str, host: str, port: int, *, hold_timeout: float = 30.0) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.hold_timeout = hold_timeout
        self.target: tuple[str, int] | None = None
        self._open = asyncio.Event()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self.connections_total = 0
        self.connections_refused = 0  # no target reachable within hold_timeout

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("db_cluster.endpoint_listening", endpoint=self.name, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.close_connections()
            await self._server.wait_closed()
            self._server = None

    @property
    def held(self) -> bool:
        return not self._open.is_set()

    @property
    def connections(self) -> int:
        return len(self._links)

    def hold(self) -> None:
        """New connections wait from now on (existing ones carry on)."""
        self._open.clear()

    def release(self, target: tuple[str, int]) -> int:
        """Point at ``target`` and let waiting connections through; connections to another
        target are closed (their clients reconnect). Returns how many were closed."""
        closed = self.close_connections() if target != self.target else 0
        if target != self.target:
            log.info("db_cluster.endpoint_moved", endpoint=self.name, old=self.target,
                     new=target, closed=closed)
        self.target = target
        self._open.set()
        return closed

    def close_connections(self) -> int:
        links = list(self._links)
        for link in links:
            link.close()
        self._links.clear()
        return len(links)

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for open connections to end; how many are still open."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._links and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return len(self._links)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        try:
            server_reader, link = await asyncio.wait_for(self._connect(writer),
                                                         self.hold_timeout)
        except TimeoutError:
            self.connections_refused += 1
            log.warning("db_cluster.endpoint_refused", endpoint=self.name, target=self.target,
                        waited=self.hold_timeout)
            writer.close()
            return
        try:
            await asyncio.gather(self._pipe(reader, link.server, link),
                                 self._pipe(server_reader, writer, link))
        finally:
            self._links.discard(link)
            link.close()

    async def _connect(self, client: asyncio.StreamWriter) -> tuple[asyncio.StreamReader, _Link]:
        """A registered link to the target; while the endpoint is held or its target refuses
        (a primary that just died, before the monitor noticed), wait and try again: the
        client sees a slow connect, not an error. A connection that completes after a
        hold() or a move is dropped and made again, so none reaches a fenced server and
        :meth:`drain` sees every link to the old target."""
        while True:
            await self._open.wait()
            target = self.target
            assert target is not None  # a released endpoint always has one
            try:
                server_reader, server_writer = await asyncio.wait_for(
                    asyncio.open_connection(*target), CONNECT_TIMEOUT)
            except (TimeoutError, OSError):
                await asyncio.sleep(RETRY_INTERVAL)
                continue
            if self.held or self.target != target:
                server_writer.close()
                continue
            link = _Link(client, server_writer)
            self._links.add(link)  # no await since the check: atomic on the event loop
            return server_reader, link

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    link: _Link) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            link.close()  # one side gone: end the other so its peer sees it at once
