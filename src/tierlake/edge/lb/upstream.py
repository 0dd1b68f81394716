"""Connections from the balancer to targets, and a per-target pool of idle ones.

A connection kept alive after a response saves the target a TCP handshake and the proxy a
connect per request (ALB keeps connections to targets too). The connection is an asyncio
Protocol; whoever uses it sets ``handler`` and receives the target's bytes and the loss of
the connection. An idle connection that receives anything (the target closing it, or
unsolicited bytes) is dropped from the pool at once, so a request rarely meets a stale one.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import structlog

log = structlog.get_logger(__name__)

MAX_IDLE_PER_TARGET = 64


class UpstreamHandler(Protocol):
    """The request in flight on a connection."""

    def upstream_data(self, data: bytes) -> None: ...

    def upstream_lost(self, exc: Exception | None) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a target."""

    def __init__(self, pool: UpstreamPool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.handler: UpstreamHandler | None = None
        self.closed = False
        self.requests = 0  # how many requests it carried (1 on first use)
        self.idle_since = 0.0
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are no subclass
        self.transport.set_write_buffer_limits(high=256 * 1024)

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.upstream_data(data)
        else:  # bytes on an idle connection: it cannot be reused safely
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.upstream_lost(exc)
        else:
            self.pool.discard(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()

    def _wake(self) -> None:
        waiter, self._drain = self._drain, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Wait while the target's receive side is full (back pressure on request bodies)."""
        if self._write_paused and not self.closed:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        self.handler = None
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True
        self.pool.discard(self)

    def abort(self) -> None:
        self.handler = None
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True
        self.pool.discard(self)


class UpstreamPool:
    """Idle keep-alive connections per target address, most recently used first."""

    def __init__(self, max_idle_per_target: int = MAX_IDLE_PER_TARGET) -> None:
        self.max_idle = max_idle_per_target
        self._idle: dict[tuple[str, int], list[UpstreamConnection]] = {}
        self._open: set[UpstreamConnection] = set()
        self.connects = 0  # connections opened so far

    def take_idle(self, key: tuple[str, int], *, max_idle_seconds: float | None = None
                  ) -> UpstreamConnection | None:
        stack = self._idle.get(key)
        loop_time = asyncio.get_running_loop().time()
        while stack:
            conn = stack.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if max_idle_seconds is not None and loop_time - conn.idle_since > max_idle_seconds:
                stack.append(conn)  # still good for a request that may be replayed
                return None
            return conn
        return None

    async def connect(self, key: tuple[str, int], timeout: float) -> UpstreamConnection:
        """A new connection; OSError (refused, reset, unreachable) or TimeoutError."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(lambda: UpstreamConnection(self, key), *key)
        self.connects += 1
        self._open.add(conn)
        return conn

    def put(self, conn: UpstreamConnection) -> None:
        """Keep a connection whose exchange finished cleanly."""
        conn.handler = None
        stack = self._idle.setdefault(conn.key, [])
        if conn.closed or len(stack) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        stack.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        self._open.discard(conn)
        stack = self._idle.get(conn.key)
        if stack and conn in stack:
            stack.remove(conn)

    def close(self) -> None:
        """Close every connection (idle or not)."""
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        self._open.clear()
