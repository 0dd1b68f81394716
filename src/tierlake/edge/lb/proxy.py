"""The load balancer's data plane: one client connection, parsed and answered in order.

Built on asyncio Protocols and httptools (no streams: a request costs a few callbacks, not
a chain of awaits per line). Both sides keep connections alive; request and response
bodies are streamed with back pressure both ways (a full socket pauses reading on the other
side), never held whole. Requests are answered in order (pipelining); each finished request
gives one :class:`AccessLogEntry` to the observers. Forwarding and retries live in
``forward.py``.

ALB's limits (AWS, "Troubleshoot your Application Load Balancers", HTTP 400): a request
line over 16 K, a header over 16 K or a whole head over 64 K, malformed HTTP, or HTTP/1.1
without one Host, is answered 400 and the connection closed. ALB's idle timeout: a
connection with no request in progress and no byte for ``idle_timeout`` is closed.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from typing import cast

import httptools
import structlog

from tierlake.edge.lb import http
from tierlake.edge.lb.forward import Attempt, Exchange
from tierlake.edge.lb.model import AccessLogEntry
from tierlake.edge.lb.request import (
    REPLAY_LIMIT,
    ListenerContext,
    Relay,
    Request,
    answer_error,
    client_gone,
    new_entry,
)
from tierlake.edge.lb.targets import Target

log = structlog.get_logger(__name__)

BODY_HIGH_WATER = 256 * 1024  # buffered request body that pauses reading the client
# Request headers the balancer reads.
_READ = frozenset({b"host", b"user-agent", b"x-forwarded-for", b"x-amzn-trace-id",
                   b"connection", b"content-length", b"transfer-encoding", b"expect"})

__all__ = ["ClientConnection"]


class _BadRequest(Exception):
    pass


class ClientConnection(asyncio.Protocol):
    """One client's connection to a listener: parses its requests, answers them in order."""

    def __init__(self, ctx: ListenerContext) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] = ("-", 0)
        self.closed = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._head_size = 0
        self._head_phase = True
        self._reading: Request | None = None
        self._pending: deque[Request] = deque()
        self._active: Request | None = None
        self._task: asyncio.Task[None] | None = None
        self._read_paused = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.attempt: Relay | None = None  # the exchange whose answer is being relayed
        self.last_activity = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None

    # -- transport events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are no subclass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client = (str(peer[0]), int(peer[1]))
        self.transport.set_write_buffer_limits(high=256 * 1024)
        self.ctx.connections.add(self)
        self.ctx.on_empty.clear()
        self._timer = self.loop.call_later(self.ctx.idle_timeout, self._idle_check)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        if self._head_phase:
            self._head_size += len(data)
        try:
            self.parser.feed_data(data)
            if self._head_phase and self._head_size > http.MAX_HEADERS + http.MAX_REQUEST_LINE:
                raise _BadRequest("request header beyond ALB's limits")
        except httptools.HttpParserUpgrade:
            # Upgrade (WebSocket) is not supported: the request went on as plain HTTP; any
            # bytes after it belong to no request we can read.
            self.parser = httptools.HttpRequestParser(self)
        except (httptools.HttpParserError, _BadRequest) as exc:
            cause = exc.__context__ if isinstance(exc.__context__, _BadRequest) else exc
            self._head_size = 0
            self._reject(400, str(cause) or type(cause).__name__)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._wake_drain()
        attempt = self.attempt
        if attempt is not None:
            attempt.client_gone()
        if self._task is not None and not self._task.done() and attempt is None:
            self._task.cancel()  # waiting on a connect or a pick: nothing to relay
        for req in self._pending:
            req.wake()
        if self._active is not None:
            self._active.wake()
        self.ctx.connections.discard(self)
        if not self.ctx.connections:
            self.ctx.on_empty.set()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.attempt is not None:
            self.attempt.pause_upstream()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()
        if self.attempt is not None:
            self.attempt.resume_upstream()

    def _wake_drain(self) -> None:
        waiter, self._drain = self._drain, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            self._drain = self.loop.create_future()
            await self._drain

    def _idle_check(self) -> None:
        """ALB's idle timeout: a connection with no request in progress and no byte for
        this long is closed."""
        if self.closed:
            return
        idle = self.loop.time() - self.last_activity
        if self._active is None and idle >= self.ctx.idle_timeout:
            log.debug("lb.client_idle_closed", client=self.client)
            self.close()
            return
        wait = self.ctx.idle_timeout - idle if self._active is None else self.ctx.idle_timeout
        self._timer = self.loop.call_later(max(wait, 0.05), self._idle_check)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def drain_and_close(self) -> None:
        """The balancer stops: an idle connection closes now, a busy one after its
        answer."""
        if self._active is None:
            self.close()

    # -- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._head_phase = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > http.MAX_REQUEST_LINE:
            raise _BadRequest("request line longer than 16 K")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        if size > http.MAX_HEADER:
            raise _BadRequest("a header longer than 16 K")
        self._header_bytes += size + 4
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        head_size = len(self._url) + self._header_bytes
        if head_size > http.MAX_HEADERS:
            raise _BadRequest("request header larger than 64 K")
        self._head_phase = False
        self._head_size = 0
        req = Request(parser.get_method(), self._url, parser.get_http_version(),
                       self._headers, parser.should_keep_alive())
        req.start = self.loop.time()
        req.created = time.time()
        req.received = head_size + len(req.method) + 14
        for name, value in self._headers:  # one pass for every header the balancer reads
            if name not in _READ:
                continue
            if name == b"host":
                req.hosts.append(value)
            elif name == b"user-agent":
                req.user_agent = value
            elif name == b"x-forwarded-for":
                req.forwarded_for.append(value)
            elif name == b"x-amzn-trace-id":
                req.trace = value
            elif name == b"connection":
                req.connection.append(value)
            elif name == b"content-length":
                req.length = value
            elif name == b"transfer-encoding":
                req.chunked = b"chunked" in value.lower()
            elif name == b"expect":
                req.expect_continue = value.lower() == b"100-continue"
        self._reading = req
        if self._active is None:
            self._begin(req)
        else:  # pipelined: answered in order; stop reading until the one before is done
            self._pending.append(req)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        req = self._reading
        if req is None:
            return
        req.chunks.append(body)
        req.buffered += len(body)
        req.received += len(body)
        req.wake()
        if req.buffered > BODY_HIGH_WATER:
            self._pause_reading()

    def on_message_complete(self) -> None:
        req = self._reading
        self._reading = None
        self._head_phase = True
        if req is not None:
            req.body_done = True
            req.wake()

    # -- flow -----------------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()

    def take_body(self, req: Request) -> bytes | None:
        """The next body chunk held for ``req`` (None: none yet); resumes reading when
        the buffer has room."""
        if not req.chunks:
            return None
        chunk = req.chunks.popleft()
        req.buffered -= len(chunk)
        if req.buffered < BODY_HIGH_WATER // 2 and not self._pending:
            self._resume_reading()
        if req.replay is not None:
            if req.replayed + len(chunk) <= REPLAY_LIMIT:
                req.replay.append(chunk)
                req.replayed += len(chunk)
            else:
                req.replay = None
        return chunk

    async def wait_body(self, req: Request) -> None:
        if req.chunks or req.body_done or self.closed:
            return
        req.waiter = self.loop.create_future()
        await req.waiter

    def _begin(self, req: Request) -> None:
        self._active = req
        if req.expect_continue and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if req.chunked or req.length not in (None, b"0"):
            self._task = self.loop.create_task(self._serve(req))
            return
        # No body: most requests. Routed, and sent on a pooled connection, without a task;
        # a connect or a retry continues in one.
        entry = req.entry = new_entry(self, req)
        exchange = Exchange(self, req, entry)
        try:
            action = exchange.route()
            if action is None:
                self._complete(req, entry)
                return
            target = exchange.prepare(action).pick()
            if target is not None:
                upstream = exchange.pooled(target)
                if upstream is not None:
                    attempt = exchange.launch(upstream, target, reused=True)
                    attempt.start(exchange.head).add_done_callback(
                        functools.partial(self._attempt_done, exchange, attempt))
                    return
        except Exception:
            log.exception("lb.proxy_error", client=self.client)
            self._failed(req, entry)
            self._complete(req, entry)
            return
        self._task = self.loop.create_task(self._serve(req, exchange, target))

    def _attempt_done(self, exchange: Exchange, attempt: Attempt,
                      done: asyncio.Future[str | None]) -> None:
        req, entry = exchange.req, exchange.entry
        try:
            if not exchange.settle(attempt, done.result()):
                self._task = self.loop.create_task(self._serve(req, exchange))
                return
        except Exception:
            log.exception("lb.proxy_error", client=self.client)
            self._failed(req, entry)
        self._complete(req, entry)

    def _failed(self, req: Request, entry: AccessLogEntry) -> None:
        """A fault of the balancer itself: 502 if nothing was sent yet, else close."""
        if entry.elb_status_code is None and not self.closed:
            answer_error(self, req, entry, 502, "-")
        else:
            req.keep_alive = False

    def _complete(self, req: Request, entry: AccessLogEntry) -> None:
        entry.time = time.time()
        entry.received_bytes = req.received  # the body counted as it came
        self.ctx.notify(entry)
        self._finished(req)

    def _reject(self, status: int, why: str) -> None:
        """A request the balancer cannot read: answer and close (nothing after it can be
        framed)."""
        if self.closed:
            return
        log.info("lb.bad_request", client=self.client, status=status, reason=why)
        if self._active is not None:  # an answer is under way: close after it, send nothing
            self._active.keep_alive = False
            self._pending.clear()
            self._pause_reading()
            return
        entry = new_entry(self, None)
        body = http.error_page(status)
        head = http.response_head(status, [(b"Content-Type", b"text/html"),
                                           (b"Content-Length", str(len(body)).encode())],
                                  close=True)
        self.write(head + body)
        entry.elb_status_code = status
        entry.sent_bytes = len(head) + len(body)
        entry.time = time.time()
        self.ctx.notify(entry)
        self._pending.clear()
        self.close()

    async def _serve(self, req: Request, exchange: Exchange | None = None,
                     first: Target | None = None) -> None:
        """A request in a task: one with a body, or one that needs a connect or a retry
        (``exchange`` then holds where it stands)."""
        if exchange is None:
            entry = req.entry = new_entry(self, req)
        else:
            entry = exchange.entry
        try:
            if exchange is None:
                exchange = Exchange(self, req, entry)
                action = exchange.route()
                if action is not None:
                    exchange.prepare(action)
                    await exchange.forward()
            else:
                await exchange.forward(first)
        except asyncio.CancelledError:
            if not self.closed:
                raise
            client_gone(entry)
        except Exception:
            log.exception("lb.proxy_error", client=self.client)
            self._failed(req, entry)
        self._complete(req, entry)

    def _finished(self, req: Request) -> None:
        self._active = None
        self._task = None
        self.attempt = None
        if self.closed:
            return
        if not req.keep_alive or not req.body_done or self.ctx.draining:
            self.close()
            return
        if self._pending:
            nxt = self._pending.popleft()
            if not self._pending:
                self._resume_reading()
            self._begin(nxt)
        else:
            self._resume_reading()
