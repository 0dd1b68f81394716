"""The load balancer's data plane: one client connection, its requests, and their forwarding.

Built on asyncio Protocols and httptools (no streams: a request costs a few callbacks, not
a chain of awaits per line). Both sides keep connections alive; request and response
bodies are streamed with back pressure both ways (a full socket pauses reading on the other
side), never held whole. Each finished request gives one :class:`AccessLogEntry` to the
observers.

The answers the balancer gives itself are ALB's (AWS, "Troubleshoot your Application Load
Balancers", HTTP 400/460/463/502/503/504): 400 for a malformed or oversized request, 463
for an X-Forwarded-For of more than 30 addresses, 503 when the target group has no routable
target, 502 when the target refused, reset or closed the connection or answered malformed
HTTP, 504 when it stayed silent for the idle timeout, and 460 (logged, nothing sent) when
the client left first. Error reasons are ALB's access-log codes.

Retries go beyond ALB (which never retries):

* a connection refused, reset or timed out before any byte of the request was sent: the
  request goes to another target whatever its method, and the group hears of it
  (``report_connect_failure``, passive health);
* a connection that breaks after the request was sent, before any answer: an idempotent
  method (RFC 9110 9.2.2) whose body is still held (at most 64 KiB) is sent once more, to
  another target; POST and PATCH never are (they may have taken effect): 502;
* a pooled keep-alive connection the target had closed: an idempotent request is sent
  again on a fresh connection; a non-idempotent one only ever reuses a connection idle for
  under a second, so the target's keep-alive timeout cannot close it under the request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools
import structlog

from tierlake.edge.lb import http
from tierlake.edge.lb.model import AccessLogEntry, RequestObserver
from tierlake.edge.lb.rules import FixedResponse, Forward, Redirect, RequestView, RuleSet
from tierlake.edge.lb.targets import Target, TargetGroup
from tierlake.edge.lb.upstream import UpstreamConnection, UpstreamPool

log = structlog.get_logger(__name__)

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
REPLAY_LIMIT = 64 * 1024  # a request body up to this is held for a retry
BODY_HIGH_WATER = 256 * 1024  # buffered request body that pauses reading the client
CONNECT_TIMEOUT = 10.0  # ALB's connection timeout to a target
FRESH_FOR_NON_IDEMPOTENT = 1.0  # seconds a pooled connection may idle and carry a POST
_NO_BODY_STATUS = (204, 304)


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
    connections: set[ClientConnection] = field(default_factory=set)
    on_empty: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self, entry: AccessLogEntry) -> None:
        for observer in self.observers:
            try:
                observer.request_done(entry)
            except Exception:  # an observer's fault never breaks a request
                log.exception("lb.observer_failed", observer=type(observer).__name__)


class _BadRequest(Exception):
    pass


class _Request:
    """A request from the client: its head, its body as it arrives, and its log entry."""

    __slots__ = ("method", "url", "version", "headers", "keep_alive", "chunks", "buffered",
                 "body_done", "waiter", "replay", "replayed", "length", "chunked",
                 "received", "start", "created", "entry", "expect_continue")

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

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def header(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n == name]


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
        self._head_size = 0
        self._head_phase = True
        self._reading: _Request | None = None
        self._pending: deque[_Request] = deque()
        self._active: _Request | None = None
        self._task: asyncio.Task[None] | None = None
        self._read_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.attempt: _Attempt | None = None  # the exchange whose answer is being relayed
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
        self._write_paused = True
        if self.attempt is not None:
            self.attempt.pause_upstream()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()
        if self.attempt is not None:
            self.attempt.resume_upstream()

    def _wake_drain(self) -> None:
        waiter, self._drain = self._drain, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
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
        self._head_phase = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > http.MAX_REQUEST_LINE:
            raise _BadRequest("request line longer than 16 K")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > http.MAX_HEADER:
            raise _BadRequest("a header longer than 16 K")
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        head_size = len(self._url) + sum(len(n) + len(v) + 4 for n, v in self._headers)
        if head_size > http.MAX_HEADERS:
            raise _BadRequest("request header larger than 64 K")
        self._head_phase = False
        self._head_size = 0
        req = _Request(parser.get_method(), self._url, parser.get_http_version(),
                       self._headers, parser.should_keep_alive())
        req.start = self.loop.time()
        req.created = time.time()
        req.received = head_size + len(req.method) + 14
        for name, value in self._headers:
            if name == b"content-length":
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

    def take_body(self, req: _Request) -> bytes | None:
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

    async def wait_body(self, req: _Request) -> None:
        if req.chunks or req.body_done or self.closed:
            return
        req.waiter = self.loop.create_future()
        await req.waiter

    def _begin(self, req: _Request) -> None:
        self._active = req
        if req.expect_continue and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._task = self.loop.create_task(self._serve(req))

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
        entry = _new_entry(self, None)
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

    async def _serve(self, req: _Request) -> None:
        entry = req.entry = _new_entry(self, req)
        try:
            await _Exchange(self, req, entry).run()
        except asyncio.CancelledError:
            if not self.closed:
                raise
            _client_gone(entry)
        except Exception:
            log.exception("lb.proxy_error", client=self.client)
            if entry.elb_status_code is None and not self.closed:
                _answer_error(self, req, entry, 502, "-")
            else:
                req.keep_alive = False
        finally:
            entry.time = time.time()
            self.ctx.notify(entry)
        self._finished(req)

    def _finished(self, req: _Request) -> None:
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


def _new_entry(conn: ClientConnection, req: _Request | None) -> AccessLogEntry:
    ctx = conn.ctx
    host = ""
    user_agent = "-"
    request_line = "- - - -"
    if req is not None:
        for name, value in req.headers:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
        authority = host if ":" in host.rsplit("]", 1)[-1] else f"{host}:{ctx.port}"
        request_line = (f"{req.method.decode('latin-1')} {ctx.protocol}://{authority}"
                        f"{req.url.decode('latin-1')} HTTP/{req.version}")
    return AccessLogEntry(
        type="http", time=0.0, elb=ctx.lb_name, client=conn.client, target=None,
        request_processing_time=-1.0, target_processing_time=-1.0,
        response_processing_time=-1.0, elb_status_code=None, target_status_code=None,
        received_bytes=req.received if req is not None else 0, sent_bytes=0,
        request=request_line, user_agent=user_agent, target_group="-", trace_id="-",
        domain_name=host.rsplit(":", 1)[0] if host and not host.endswith("]") else host or "-",
        matched_rule_priority="-",
        request_creation_time=req.created if req is not None else time.time(),
        actions_executed=[])


def _client_gone(entry: AccessLogEntry) -> None:
    """ALB's 460: the client closed before the answer; logged, nothing sent."""
    if entry.elb_status_code is None:
        entry.elb_status_code = 460
        entry.error_reason = "ClientClosed"


def _answer(conn: ClientConnection, req: _Request, entry: AccessLogEntry, status: int,
            body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    close = not req.keep_alive or not req.body_done or conn.ctx.draining
    if close:
        req.keep_alive = False
    head = http.response_head(status, [*headers, (b"Content-Length", str(len(body)).encode())],
                              close=close)
    data = head if req.method == b"HEAD" else head + body
    conn.write(data)
    entry.elb_status_code = status
    entry.sent_bytes += len(data)


def _answer_error(conn: ClientConnection, req: _Request, entry: AccessLogEntry, status: int,
                  error_reason: str) -> None:
    _answer(conn, req, entry, status, http.error_page(status),
            [(b"Content-Type", b"text/html")])
    entry.error_reason = error_reason


class _Exchange:
    """One request's way through rules, target picks and attempts."""

    def __init__(self, conn: ClientConnection, req: _Request, entry: AccessLogEntry) -> None:
        self.conn = conn
        self.req = req
        self.entry = entry
        self.ctx = conn.ctx

    def _view(self, host: str) -> RequestView:
        url = self.req.url.decode("latin-1")
        path, _, query = url.partition("?")
        headers: dict[str, list[str]] = {}
        for name, value in self.req.headers:
            headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        return RequestView(self.req.method.decode("latin-1"), path, query,
                           host, headers, self.conn.client[0])

    async def run(self) -> None:
        req, entry, conn = self.req, self.entry, self.conn
        if http.forwarded_for_count(req.header(b"x-forwarded-for")) > http.MAX_FORWARDED_FOR:
            _answer_error(conn, req, entry, 463, "-")
            return
        hosts = req.header(b"host")
        if len(hosts) > 1 or (not hosts and req.version == "1.1"):
            req.keep_alive = False
            _answer_error(conn, req, entry, 400, "-")
            return
        host_header = hosts[0].decode("latin-1") if hosts else ""
        host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        rules = self.ctx.rules
        if rules.rules:
            priority, action = rules.route(self._view(host))
        else:
            priority, action = "0", rules.default_action
        entry.matched_rule_priority = priority
        entry.actions_executed.append(action.type)
        if isinstance(action, FixedResponse):
            _answer(conn, req, entry, action.status_code, action.message_body.encode(),
                    [(b"Content-Type", action.content_type.encode())])
        elif isinstance(action, Redirect):
            url = req.url.decode("latin-1")
            path, _, query = url.partition("?")
            location = action.location(protocol=self.ctx.protocol, host=host or "-",
                                       port=self.ctx.port, path=path, query=query)
            entry.redirect_url = location
            _answer(conn, req, entry, action.http_status, b"",
                    [(b"Location", location.encode("latin-1"))])
        else:
            await self._forward(action)

    async def _forward(self, action: Forward) -> None:
        req, entry, conn, ctx = self.req, self.entry, self.conn, self.ctx
        group: TargetGroup = action.choose()
        entry.target_group = group.name
        head = self._upstream_head()
        tried: list[str] = []
        replayed_once = False
        error: tuple[int, str] = (503, "-")
        fresh_only = False
        idempotent = req.method in IDEMPOTENT
        while True:
            target = group.pick(exclude=tried)
            if target is None:
                _answer_error(conn, req, entry, *error)
                return
            tried.append(target.id)
            key = (target.host, target.port)
            upstream = None if fresh_only else ctx.pool.take_idle(
                key, max_idle_seconds=None if idempotent else FRESH_FOR_NON_IDEMPOTENT)
            reused = upstream is not None
            entry.request_processing_time = self.conn.loop.time() - req.start
            entry.target = key
            entry.targets_tried.append(key)
            if upstream is None:
                try:
                    upstream = await ctx.pool.connect(key, min(CONNECT_TIMEOUT, ctx.idle_timeout))
                except (OSError, TimeoutError) as exc:
                    group.report_connect_failure(target)
                    log.warning("lb.retry", reason="connect_failed", target=target.id,
                                group=group.name, error=type(exc).__name__)
                    entry.target_status_codes.append(0)
                    error = (504, "TargetConnectionErrorCode") if isinstance(
                        exc, TimeoutError) else (502, "TargetConnectionErrorCode")
                    continue
            if conn.closed:
                ctx.pool.put(upstream)
                _client_gone(entry)
                return
            group.acquire(target)
            try:
                attempt = _Attempt(self, upstream, target)
                outcome = await attempt.run(head)
            finally:
                group.release(target)
            entry.target_status_codes.append(attempt.status or 0)
            if outcome is None:
                return
            if outcome == "client_gone":
                _client_gone(entry)
                return
            if outcome == "timeout":
                _answer_error(conn, req, entry, 504, "TargetTimeout")
                return
            replayable = req.replay is not None
            if outcome == "reset" and reused and attempt.rx == 0 and idempotent and replayable:
                log.info("lb.retry", reason="stale_keepalive", target=target.id,
                         group=group.name, method=req.method.decode())
                tried.pop()  # same target, fresh connection
                fresh_only = True
                continue
            fresh_only = False
            if (outcome == "reset" and idempotent and replayable and not replayed_once
                    and attempt.rx == 0):
                replayed_once = True
                log.info("lb.retry", reason="reset_after_send", target=target.id,
                         group=group.name, method=req.method.decode())
                error = (502, "TargetResponseError")
                continue
            log.warning("lb.target_failed", reason=outcome, target=target.id, group=group.name,
                        method=req.method.decode(), retried=False)
            _answer_error(conn, req, entry, 502, "TargetResponseError")
            return

    def _upstream_head(self) -> bytes:
        """The request's head as the target receives it: hop-by-hop headers removed, the
        X-Forwarded-* headers and the trace id set."""
        req, conn = self.req, self.conn
        drop = http.HOP_BY_HOP | http.connection_tokens(req.header(b"connection"))
        lines = [req.method + b" " + req.url + b" HTTP/1.1"]
        forwarded_for: list[bytes] = []
        trace: str | None = None
        has_host = False
        for name, value in req.headers:
            if name in drop or name in (b"x-forwarded-proto", b"x-forwarded-port",
                                        b"expect", b"content-length"):
                continue
            if name == b"x-forwarded-for":
                forwarded_for.append(value)
                continue
            if name == b"x-amzn-trace-id":
                trace = value.decode("latin-1")
                continue
            if name == b"host":
                has_host = True
            lines.append(name + b": " + value)
        if not has_host:
            lines.append(f"host: {self.ctx.lb_name}:{self.ctx.port}".encode())
        client_ip = conn.client[0].encode()
        lines.append(b"x-forwarded-for: " + b", ".join([*forwarded_for, client_ip]))
        lines.append(b"x-forwarded-proto: " + self.ctx.protocol.encode())
        lines.append(b"x-forwarded-port: " + str(self.ctx.port).encode())
        trace_value = http.trace_header(trace)
        self.entry.trace_id = trace_value
        lines.append(b"x-amzn-trace-id: " + trace_value.encode())
        if req.chunked:
            lines.append(b"transfer-encoding: chunked")
        elif req.length is not None:
            lines.append(b"content-length: " + req.length)
        return b"\r\n".join(lines) + b"\r\n\r\n"


class _Attempt:
    """One try of a request on one target connection; relays the answer as it arrives.

    ``run`` returns None when the answer was relayed (or the exchange ended in a way the
    client already saw), else why it failed before any answer byte reached the client:
    ``reset`` (closed or reset), ``malformed``, ``timeout`` or ``client_gone``."""

    def __init__(self, exchange: _Exchange, upstream: UpstreamConnection, target: Target
                 ) -> None:
        self.x = exchange
        self.conn = exchange.conn
        self.req = exchange.req
        self.entry = exchange.entry
        self.upstream = upstream
        self.target = target
        self.loop = exchange.conn.loop
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self.rx = 0
        self.committed = False
        self.finished = False
        self.sent_all = False
        self._interim = False
        self._out_chunked = False
        self._close_after = False
        self._until_close = False
        self._done: asyncio.Future[str | None] = self.loop.create_future()
        self._last_rx = 0.0
        self._sent_at = 0.0
        self._head_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._upstream_paused = False

    async def run(self, head: bytes) -> str | None:
        up, req = self.upstream, self.req
        up.handler = self
        up.requests += 1
        self.conn.attempt = self
        self._sent_at = self._last_rx = self.loop.time()
        self._timer = self.loop.call_later(self.x.ctx.idle_timeout, self._timeout_check)
        if self.conn._write_paused:
            self.pause_upstream()
        try:
            up.write(head)
            if req.chunked or req.length not in (None, b"0"):
                await self._send_body()
            else:
                self.sent_all = True
            return await self._done
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self.conn.attempt = None

    async def _send_body(self) -> None:
        req, up, conn = self.req, self.upstream, self.conn
        chunked = req.chunked
        for held in req.replay or ():  # a retry: what the first attempt already sent
            up.write(b"%x\r\n%b\r\n" % (len(held), held) if chunked else held)
        while not self.finished:
            chunk = conn.take_body(req)
            if chunk is None:
                if req.body_done:
                    break
                if conn.closed:
                    self.client_gone()
                    return
                await conn.wait_body(req)
                continue
            if chunk:
                up.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                self._last_rx = self.loop.time()  # the target is busy reading, not silent
            await up.drain()
        if chunked and not self.finished:
            up.write(b"0\r\n\r\n")
        self.sent_all = not self.finished or req.body_done

    # -- from the target --------------------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        self.rx += len(data)
        self._last_rx = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self.finished:
                log.warning("lb.target_malformed", target=self.target.id, error=str(exc))
                self._fail("malformed")

    def upstream_lost(self, exc: Exception | None) -> None:
        if self.finished:
            return
        if self._until_close and self.committed:
            self._finish_ok(reusable=False)  # the body ran until the target closed
        else:
            self._fail("reset")

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # interim answer (100 Continue): the client got ours already
            self._interim = True
            self._headers = []
            self._reason = b""
            return
        self.status = status
        self._head_at = self.loop.time()
        req, conn = self.req, self.conn
        no_body = req.method == b"HEAD" or status in _NO_BODY_STATUS
        headers = self._headers
        drop = http.HOP_BY_HOP | http.connection_tokens(
            [v for n, v in headers if n.lower() == b"connection"])
        length: bytes | None = None
        chunked = False
        lines = [b"HTTP/1.1 %d %b" % (status, self._reason)]
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                length = value
                continue
            if lower == b"transfer-encoding":
                chunked = True
                continue
            if lower in drop:
                continue
            lines.append(name + b": " + value)
        close = not req.keep_alive or conn.ctx.draining or not req.body_done
        if no_body:
            if length is not None:
                lines.append(b"Content-Length: " + length)
        elif length is not None and not chunked:
            lines.append(b"Content-Length: " + length)
        else:
            self._until_close = not chunked
            if req.version == "1.1":
                self._out_chunked = True
                lines.append(b"Transfer-Encoding: chunked")
            else:
                close = True  # HTTP/1.0: the end of the body is the end of the connection
        if close:
            req.keep_alive = False
            lines.append(b"Connection: close")
        elif req.version == "1.0":
            lines.append(b"Connection: keep-alive")
        data = b"\r\n".join(lines) + b"\r\n\r\n"
        conn.write(data)
        self.committed = True
        entry = self.entry
        entry.sent_bytes += len(data)
        entry.target_status_code = status
        entry.elb_status_code = status
        entry.target_processing_time = self._head_at - self._sent_at
        entry.response_processing_time = self.loop.time() - self._head_at
        if no_body:
            self._finish_ok(reusable=self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.finished:
            return
        data = b"%x\r\n%b\r\n" % (len(body), body) if self._out_chunked else body
        self.conn.write(data)
        self.entry.sent_bytes += len(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.finished:
            return
        if self._out_chunked:
            self.conn.write(b"0\r\n\r\n")
            self.entry.sent_bytes += 5
        self._finish_ok(reusable=self.parser.should_keep_alive())

    # -- endings ------------------------------------------------------------------------

    def _finish_ok(self, *, reusable: bool) -> None:
        self.finished = True
        self.resume_upstream()
        up = self.upstream
        up.handler = None
        self.req.wake()
        if reusable and (self.sent_all or self.req.body_done) and not up.closed:
            if self.sent_all:
                self.x.ctx.pool.put(up)
            else:  # the target answered before the whole body went: the stream is unframed
                up.close()
        else:
            up.close()
        if not self._done.done():
            self._done.set_result(None)

    def _fail(self, why: str) -> None:
        self.finished = True
        self.upstream.abort()
        self.req.wake()
        if self.committed:  # the client has part of an answer: it cannot get another
            log.warning("lb.answer_cut", target=self.target.id, reason=why)
            self.req.keep_alive = False
            self.entry.error_reason = ("TargetTimeout" if why == "timeout"
                                       else "TargetResponseError")
            self.conn.abort()
            why_out: str | None = None
        else:
            why_out = why
        if not self._done.done():
            self._done.set_result(why_out)

    def client_gone(self) -> None:
        if self.finished:
            return
        if not self.committed:
            self._fail("client_gone")
        else:
            self.finished = True
            self.upstream.abort()
            if not self._done.done():
                self._done.set_result(None)

    def _timeout_check(self) -> None:
        if self.finished:
            return
        if self._upstream_paused:  # the client reads slowly; the target is not silent
            self._last_rx = self.loop.time()
        quiet = self.loop.time() - self._last_rx
        if quiet >= self.x.ctx.idle_timeout:
            log.warning("lb.target_timeout", target=self.target.id, seconds=round(quiet, 3))
            self._fail("timeout")
        else:
            self._timer = self.loop.call_later(self.x.ctx.idle_timeout - quiet,
                                               self._timeout_check)

    def pause_upstream(self) -> None:
        t = self.upstream.transport
        if not self._upstream_paused and t is not None and not self.upstream.closed:
            self._upstream_paused = True
            t.pause_reading()

    def resume_upstream(self) -> None:
        t = self.upstream.transport
        if self._upstream_paused and t is not None and not self.upstream.closed:
            self._upstream_paused = False
            t.resume_reading()


ConnectionFactory = Callable[[], ClientConnection]
