"""A tier's edge in one ASGI layer: the request id, the security headers, the access log
and (optionally) the body cap.

These were four middlewares, one per concern. Each layer cost a coroutine, a ``send``
wrapper and a headers object per message: together an eighth of a checkout's CPU in
process, about 280 Python calls per request (docs/benchmarks.md). One layer does each
piece once: it reads and rewrites the raw header lists itself, one ``send`` wrapper adds
the response headers, and the access-log line is written as the request ends.

What each piece does is documented in its module: :mod:`tierlake.asgi.request_id`,
:mod:`tierlake.asgi.security_headers`, :mod:`tierlake.asgi.access_log`,
:mod:`tierlake.asgi.body_limit`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierlake.asgi.access_log import AccessLog
from tierlake.asgi.body_limit import BodyLimit, BodyTooLargeError
from tierlake.asgi.request_id import HEADER, REQUEST_ID, request_id_from

_ID = HEADER.lower().encode("latin-1")


class EdgeMiddleware:
    """``headers``: what every response gets unless the handler set it (the tier's security
    headers); ``access_log``: one line per request, or none; ``body_limit``: the body cap,
    or none (a tier that needs it further in adds :class:`BodyLimitMiddleware` there)."""

    def __init__(self, app: ASGIApp, *, headers: Mapping[str, str],
                 access_log: AccessLog | None = None, body_limit: BodyLimit | None = None) -> None:
        self.app = app
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in headers.items()]
        self.access_log = access_log
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        incoming: list[tuple[bytes, bytes]] = []
        sent_id = None
        for header in scope["headers"]:
            if header[0] == _ID:
                sent_id = header[1].decode("latin-1")
            else:
                incoming.append(header)
        request_id = request_id_from(sent_id)
        raw_id = request_id.encode("latin-1")
        incoming.append((_ID, raw_id))
        scope["headers"] = incoming  # what the app and its logs see
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False
        defaults = self.headers

        async def edge_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                out = [h for h in message.get("headers", ()) if h[0].lower() != _ID]
                present = {h[0].lower() for h in out}
                out.extend(h for h in defaults if h[0] not in present)
                out.append((_ID, raw_id))
                message["headers"] = out
            await send(message)

        limit = self.body_limit
        token = REQUEST_ID.set(request_id)
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            refused = limit.declared_too_large(scope) if limit is not None else None
            if refused is None:
                try:
                    await self.app(scope, limit.counted(receive) if limit else receive,
                                   edge_send)
                except BodyTooLargeError as exc:
                    if started or limit is None:
                        raise
                    refused = exc
            if refused is not None and limit is not None:
                await limit.too_large(scope, refused)(scope, receive, edge_send)
        finally:
            if self.access_log is not None:
                self.access_log.write(scope, status, time.perf_counter() - start, request_id)
            structlog.contextvars.reset_contextvars(**bound)
            REQUEST_ID.reset(token)
