"""The web tier's page middleware: cookies in, cookies out, clickstream, one log line.

Builds the request's :class:`~tierlake.web.session.WebContext` from its
cookies (``request.state.web``), lets the page run, then adds the Set-Cookie
headers the page asked for (visitor id, rolling session, login, flash, cart
count), records the clickstream events and logs one short line.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierlake.asgi.request_id import current_request_id
from tierlake.web.clickstream import EventLog
from tierlake.web.session import CookieCodec, context_from_cookies, parse_cookies, response_cookies
from tierlake.web.tracking import is_tracked_path, record_request

log = structlog.get_logger("tierlake.web")

# Every asset is served by this tier, so pages may load nothing from elsewhere.
WEB_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'"
)


class WebContextMiddleware:
    def __init__(self, app: ASGIApp, codec: CookieCodec, event_log: EventLog) -> None:
        self.app = app
        self.codec = codec
        self.event_log = event_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        started = time.perf_counter()
        if not is_tracked_path(path):  # static assets, health: no cookies, no events
            await self.app(scope, receive, send)
            return
        headers = dict((k.lower(), v) for k, v in scope.get("headers", []))
        cookies = parse_cookies(headers.get(b"cookie", b"").decode("latin-1"))
        ctx = context_from_cookies(self.codec, cookies)
        scope.setdefault("state", {})["web"] = ctx
        secure = scope.get("scheme") == "https"
        result: dict[str, Any] = {"status": 500, "content_type": ""}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                result["status"] = message["status"]
                result["content_type"] = out.get("content-type", "")
                for value in response_cookies(self.codec, ctx, cookies, secure=secure):
                    out.append("set-cookie", value)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            status = int(result["status"])
            recorded = record_request(
                self.event_log, ctx, scope, status, str(result["content_type"])
            )
            log.info(
                "web.request",
                method=scope["method"],
                path=path,
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
                events=recorded,
                request_id=current_request_id(),
            )
