"""Forwarding a request: rules, the choice of a target, attempts and retries, and the
relay of the target's answer to the client.

The answers the balancer gives itself are ALB's (AWS, "Troubleshoot your Application Load
Balancers", HTTP 400/460/463/502/503/504): 463 for an X-Forwarded-For of more than 30
addresses, 503 when the target group has no routable target, 502 when the target refused,
reset or closed the connection or answered malformed HTTP, 504 when it stayed silent for the
idle timeout, 460 (logged, nothing sent) when the client left first. Error reasons are
ALB's access-log codes.

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

import httptools
import structlog

from tierlake.edge.lb import http
from tierlake.edge.lb.model import AccessLogEntry
from tierlake.edge.lb.request import (
    Downstream,
    Request,
    answer,
    answer_error,
    client_gone,
)
from tierlake.edge.lb.rules import FixedResponse, Forward, Redirect, RequestView
from tierlake.edge.lb.targets import Target, TargetGroup
from tierlake.edge.lb.upstream import UpstreamConnection

log = structlog.get_logger(__name__)

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
CONNECT_TIMEOUT = 10.0  # ALB's connection timeout to a target
FRESH_FOR_NON_IDEMPOTENT = 1.0  # seconds a pooled connection may idle and carry a POST
_NO_BODY_STATUS = (204, 304)
# Request headers never passed on as they came (hop-by-hop, or set by the balancer).
_NOT_FORWARDED = http.HOP_BY_HOP | {b"x-forwarded-for", b"x-forwarded-proto",
                                    b"x-forwarded-port", b"x-amzn-trace-id", b"expect",
                                    b"content-length"}


class Exchange:
    """One request's way through rules, target picks and attempts."""

    def __init__(self, conn: Downstream, req: Request, entry: AccessLogEntry) -> None:
        self.conn = conn
        self.req = req
        self.entry = entry
        self.ctx = conn.ctx
        self.group: TargetGroup | None = None
        self.head = b""
        self.tried: list[str] = []  # target ids, in order
        self.replayed_once = False
        self.fresh_only = False
        self.idempotent = req.method in IDEMPOTENT
        self.error: tuple[int, str] = (503, "-")  # the answer when no target is left

    def _view(self, host: str) -> RequestView:
        url = self.req.url.decode("latin-1")
        path, _, query = url.partition("?")
        headers: dict[str, list[str]] = {}
        for name, value in self.req.headers:
            headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        return RequestView(self.req.method.decode("latin-1"), path, query,
                           host, headers, self.conn.client[0])

    def route(self) -> Forward | None:
        """Answer what the balancer answers itself; the forward action otherwise."""
        req, entry, conn = self.req, self.entry, self.conn
        if req.forwarded_for and http.forwarded_for_count(
                req.forwarded_for) > http.MAX_FORWARDED_FOR:
            answer_error(conn, req, entry, 463, "-")
            return None
        hosts = req.hosts
        if len(hosts) > 1 or (not hosts and req.version == "1.1"):
            req.keep_alive = False
            answer_error(conn, req, entry, 400, "-")
            return None
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
            answer(conn, req, entry, action.status_code, action.message_body.encode(),
                    [(b"Content-Type", action.content_type.encode())])
        elif isinstance(action, Redirect):
            url = req.url.decode("latin-1")
            path, _, query = url.partition("?")
            location = action.location(protocol=self.ctx.protocol, host=host or "-",
                                       port=self.ctx.port, path=path, query=query)
            entry.redirect_url = location
            answer(conn, req, entry, action.http_status, b"",
                    [(b"Location", location.encode("latin-1"))])
        else:
            return action
        return None

    def prepare(self, action: Forward) -> TargetGroup:
        """Choose the target group and build the head every attempt sends."""
        group: TargetGroup = action.choose()
        self.group = group
        self.entry.target_group = group.name
        self.head = self._upstream_head()
        return group

    def pooled(self, target: Target) -> UpstreamConnection | None:
        """Count ``target`` as tried; an idle connection to it, if the pool has one."""
        req, entry = self.req, self.entry
        self.tried.append(target.id)
        key = (target.host, target.port)
        entry.request_processing_time = self.conn.loop.time() - req.start
        entry.target = key
        entry.targets_tried.append(key)
        if self.fresh_only:
            return None
        return self.ctx.pool.take_idle(
            key, max_idle_seconds=None if self.idempotent else FRESH_FOR_NON_IDEMPOTENT)

    def launch(self, upstream: UpstreamConnection, target: Target, *, reused: bool
               ) -> Attempt:
        assert self.group is not None
        self.group.acquire(target)
        attempt = Attempt(self, upstream, target)
        attempt.reused = reused
        return attempt

    async def forward(self, first: Target | None = None) -> None:
        """Attempts until one answers or none is left (``first``: a target picked and
        counted already, with no idle connection in the pool)."""
        req, entry, conn, ctx, group = self.req, self.entry, self.conn, self.ctx, self.group
        assert group is not None
        while True:
            if first is not None:
                target: Target | None = first
                upstream = first = None
            else:
                target = group.pick(exclude=self.tried)
                if target is not None:
                    upstream = self.pooled(target)
            if target is None:
                answer_error(conn, req, entry, *self.error)
                return
            reused = upstream is not None
            if upstream is None:
                key = (target.host, target.port)
                try:
                    upstream = await ctx.pool.connect(key, min(CONNECT_TIMEOUT, ctx.idle_timeout))
                except (OSError, TimeoutError) as exc:
                    group.report_connect_failure(target)
                    log.warning("lb.retry", reason="connect_failed", target=target.id,
                                group=group.name, error=type(exc).__name__)
                    entry.target_status_codes.append(0)
                    self.error = (504, "TargetConnectionErrorCode") if isinstance(
                        exc, TimeoutError) else (502, "TargetConnectionErrorCode")
                    continue
            if conn.closed:
                ctx.pool.put(upstream)
                client_gone(entry)
                return
            attempt = self.launch(upstream, target, reused=reused)
            try:
                if req.chunked or req.length not in (None, b"0"):
                    outcome = await attempt.run(self.head)
                else:  # no body: wait for the answer with no coroutine in between
                    outcome = await attempt.start(self.head)
            except BaseException:
                attempt.end()
                group.release(target)
                raise
            if self.settle(attempt, outcome):
                return

    def settle(self, attempt: Attempt, outcome: str | None) -> bool:
        """After an attempt: True when the request is done (answered, or given up with
        an answer), False when another attempt is due (the state says where)."""
        req, entry, conn, target = self.req, self.entry, self.conn, attempt.target
        group = self.group
        assert group is not None
        attempt.end()
        group.release(target)
        entry.target_status_codes.append(attempt.status or 0)
        if outcome is None:
            return True
        if outcome == "client_gone":
            client_gone(entry)
            return True
        if outcome == "timeout":
            answer_error(conn, req, entry, 504, "TargetTimeout")
            return True
        replayable = req.replay is not None
        fresh = attempt.rx == 0 and self.idempotent and replayable
        if outcome == "reset" and attempt.reused and fresh:
            log.info("lb.retry", reason="stale_keepalive", target=target.id,
                     group=group.name, method=req.method.decode())
            self.tried.pop()  # same target, fresh connection
            self.fresh_only = True
            return False
        self.fresh_only = False
        if outcome == "reset" and fresh and not self.replayed_once:
            self.replayed_once = True
            log.info("lb.retry", reason="reset_after_send", target=target.id,
                     group=group.name, method=req.method.decode())
            self.error = (502, "TargetResponseError")
            return False
        log.warning("lb.target_failed", reason=outcome, target=target.id, group=group.name,
                    method=req.method.decode(), retried=False)
        answer_error(conn, req, entry, 502, "TargetResponseError")
        return True

    def _upstream_head(self) -> bytes:
        """The request's head as the target receives it: hop-by-hop headers removed, the
        X-Forwarded-* headers and the trace id set."""
        req, conn = self.req, self.conn
        drop = _NOT_FORWARDED | http.connection_tokens(req.connection) if req.connection \
            else _NOT_FORWARDED
        lines = [req.method + b" " + req.url + b" HTTP/1.1"]
        lines += [name + b": " + value for name, value in req.headers if name not in drop]
        forwarded_for = req.forwarded_for
        trace = req.trace.decode("latin-1") if req.trace is not None else None
        if not req.hosts:
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


class Attempt:
    """One try of a request on one target connection; relays the answer as it arrives.

    ``run`` returns None when the answer was relayed (or the exchange ended in a way the
    client already saw), else why it failed before any answer byte reached the client:
    ``reset`` (closed or reset), ``malformed``, ``timeout`` or ``client_gone``."""

    def __init__(self, exchange: Exchange, upstream: UpstreamConnection, target: Target
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
        self._until_close = False
        self._done: asyncio.Future[str | None] = self.loop.create_future()
        self._last_rx = 0.0
        self._sent_at = 0.0
        self._head_at = 0.0
        self._upstream_paused = False
        self._out: list[bytes] = []  # for the client, written once per read from the target
        self.reused = False  # on a pooled connection

    def start(self, head: bytes) -> asyncio.Future[str | None]:
        """Send the head; the future tells how the attempt ended (see :meth:`run`)."""
        up = self.upstream
        up.handler = self
        up.requests += 1
        self.conn.attempt = self
        self._sent_at = self._last_rx = self.loop.time()
        self.x.ctx.in_flight.add(self)
        if self.conn.write_paused:
            self.pause_upstream()
        up.write(head)
        self.sent_all = True
        return self._done

    async def run(self, head: bytes) -> str | None:
        """Send the head and stream the body; wait for the end of the answer."""
        done = self.start(head)
        self.sent_all = False
        await self._send_body()
        return await done

    def end(self) -> None:
        self.x.ctx.in_flight.discard(self)
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
        out = self._out
        if out:  # one write for what one read brought: head, body and end together
            self.conn.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

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
        if self.finished:  # bytes after the answer: the connection is dropped anyway
            return
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
        length: bytes | None = None
        chunked = False
        lines = [b"HTTP/1.1 %d %b" % (status, self._reason)]
        listed: list[bytes] = []
        for name, value in self._headers:
            lower = name.lower()
            if lower in http.HOP_BY_HOP:
                if lower == b"transfer-encoding":
                    chunked = True
                elif lower == b"connection":
                    listed.append(value)
                continue
            if lower == b"content-length":
                length = value
                continue
            lines.append(name + b": " + value)
        if listed:  # headers the target's Connection names are hop-by-hop too
            tokens = http.connection_tokens(listed)
            lines = [line for line in lines
                     if line.split(b":", 1)[0].lower() not in tokens or line is lines[0]]
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
        self._out.append(data)
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
        self._out.append(data)
        self.entry.sent_bytes += len(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.finished:
            return
        if self._out_chunked:
            self._out.append(b"0\r\n\r\n")
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

    def check_timeout(self, now: float) -> None:
        """The listener's tick: a target silent for the idle timeout is a 504."""
        if self.finished:
            return
        if self._upstream_paused:  # the client reads slowly; the target is not silent
            self._last_rx = now
        quiet = now - self._last_rx
        if quiet >= self.x.ctx.idle_timeout:
            log.warning("lb.target_timeout", target=self.target.id, seconds=round(quiet, 3))
            self._fail("timeout")

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
