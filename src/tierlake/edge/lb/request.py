"""What the proxy's parts share about one request: the listener's context, the request as
it arrives, the client connection as the forwarding sees it, and the balancer's own answers.

The client connection (``proxy.py``) parses and owns the socket; the forwarding
(``forward.py``) picks targets and relays answers. They meet here, through
:class:`Downstream` and :class:`Relay`, so that neither imports the other's internals.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from tierlake.edge.lb import http
from tierlake.edge.lb.model import AccessLogEntry, RequestObserver
from tierlake.edge.lb.rules import RuleSet
from tierlake.edge.lb.upstream import UpstreamPool

log = structlog.get_logger(__name__)

REPLAY_LIMIT = 64 * 1024  # a request body up to this is held for a retry


class Relay(Protocol):
    """The attempt relaying a target's answer to the client."""

    def check_timeout(self, now: float) -> None: ...

    def client_gone(self) -> None: ...

    def pause_upstream(self) -> None: ...

    def resume_upstream(self) -> None: ...


class Downstream(Protocol):
    """The client connection, as the forwarding uses it."""

    ctx: ListenerContext
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int]
    closed: bool
    write_paused: bool
    attempt: Relay | None

    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...

    def drain_and_close(self) -> None: ...

    def take_body(self, req: Request) -> bytes | None: ...

    async def wait_body(self, req: Request) -> None: ...


@dataclass
class ListenerContext:
    """What every connection of one listener shares."""

    lb_name: str
    rules: RuleSet
    observers: list[RequestObserver]
    idle_timeout: float
    pool: UpstreamPool
    port: int = 0
    protocol: str = "http"
    draining: bool = False
    connections: set[Downstream] = field(default_factory=set)
    on_empty: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: set[Relay] = field(default_factory=set)  # attempts waiting on a target
    _ticker: asyncio.TimerHandle | None = None

    def start_ticker(self) -> None:
        """Check the attempts in flight for the idle timeout a few times per timeout (one
        timer per listener, not one per request: a silent target is a 504 within 1.25
        times the timeout)."""
        loop = asyncio.get_running_loop()
        period = min(self.idle_timeout / 4, 1.0)

        def tick() -> None:
            now = loop.time()
            for attempt in list(self.in_flight):
                attempt.check_timeout(now)
            self._ticker = loop.call_later(period, tick)

        self._ticker = loop.call_later(period, tick)

    def stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def notify(self, entry: AccessLogEntry) -> None:
        for observer in self.observers:
            try:
                observer.request_done(entry)
            except Exception:  # an observer's fault never breaks a request
                log.exception("lb.observer_failed", observer=type(observer).__name__)


class Request:
    """A request from the client: its head, its body as it arrives, and its log entry."""

    __slots__ = ("method", "url", "version", "headers", "keep_alive", "chunks", "buffered",
                 "body_done", "waiter", "replay", "replayed", "length", "chunked",
                 "received", "start", "created", "entry", "expect_continue", "hosts",
                 "user_agent", "forwarded_for", "trace", "connection")

    def __init__(self, method: bytes, url: bytes, version: str,
                 headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        self.method = method
        self.url = url
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.body_done = False
        self.waiter: asyncio.Future[None] | None = None
        self.replay: list[bytes] | None = []  # None: body beyond REPLAY_LIMIT, not replayable
        self.replayed = 0  # bytes held in replay
        self.length: bytes | None = None
        self.chunked = False
        self.expect_continue = False
        self.received = 0
        self.start = 0.0
        self.created = 0.0
        self.entry: AccessLogEntry | None = None
        self.hosts: list[bytes] = []
        self.user_agent = b"-"
        self.forwarded_for: list[bytes] = []
        self.trace: bytes | None = None
        self.connection: list[bytes] = []

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def new_entry(conn: Downstream, req: Request | None) -> AccessLogEntry:
    """The access-log entry of a request as it arrives (None: one that could not be read,
    logged as ALB logs it, ``"- - - -"``); the exchange fills in the rest."""
    ctx = conn.ctx
    if req is None:
        return AccessLogEntry(
            "http", 0.0, ctx.lb_name, conn.client, None, -1.0, -1.0, -1.0, None, None, 0, 0,
            "- - - -", "-", "-", "-", "-", "-", time.time(), [])
    host = req.hosts[0].decode("latin-1") if req.hosts else ""
    if ":" in host and not host.endswith("]"):  # "name:port" or "[v6]:port"
        name, authority = host.rpartition(":")[0], host
    else:
        name, authority = host, f"{host}:{ctx.port}"
    line = (f"{req.method.decode('latin-1')} {ctx.protocol}://{authority}"
            f"{req.url.decode('latin-1')} HTTP/{req.version}")
    return AccessLogEntry(
        "http", 0.0, ctx.lb_name, conn.client, None, -1.0, -1.0, -1.0, None, None,
        req.received, 0, line, req.user_agent.decode("latin-1"), "-", "-", name or "-", "-",
        req.created, [])


def client_gone(entry: AccessLogEntry) -> None:
    """ALB's 460: the client closed before the answer; logged, nothing sent."""
    if entry.elb_status_code is None:
        entry.elb_status_code = 460
        entry.error_reason = "ClientClosed"


def answer(conn: Downstream, req: Request, entry: AccessLogEntry, status: int,
           body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """An answer of the balancer itself (fixed response, redirect, error page); the
    connection stays open unless the request or the balancer's state says otherwise."""
    close = not req.keep_alive or not req.body_done or conn.ctx.draining
    if close:
        req.keep_alive = False
    head = http.response_head(status, [*headers, (b"Content-Length", str(len(body)).encode())],
                              close=close)
    data = head if req.method == b"HEAD" else head + body
    conn.write(data)
    entry.elb_status_code = status
    entry.sent_bytes += len(data)


def answer_error(conn: Downstream, req: Request, entry: AccessLogEntry, status: int,
                 error_reason: str) -> None:
    answer(conn, req, entry, status, http.error_page(status),
           [(b"Content-Type", b"text/html")])
    entry.error_reason = error_reason
