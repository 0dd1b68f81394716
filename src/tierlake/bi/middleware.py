"""The BI tier's own ASGI pieces: one access-log line per request, and the CSRF cookie.

The CSRF cookie is set on the way out when a page rendered a form for a browser that had
none (``request.state.new_csrf``, see :func:`tierlake.bi.auth.csrf_cookie_value`), so any
template, bi-reports' included, can call ``csrf_token(request)`` and the token holds.
"""

from __future__ import annotations

import time

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierlake.asgi.request_id import current_request_id

log = structlog.get_logger("tierlake.bi")
_QUIET = ("/health", "/ready")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            path = scope.get("path", "")
            if path not in _QUIET and not path.startswith("/bi/static/"):
                log.info("bi.request", method=scope.get("method"), path=path, status=status,
                         ms=round((time.perf_counter() - start) * 1000, 1),
                         request_id=current_request_id())


class CsrfCookieMiddleware:
    def __init__(self, app: ASGIApp, cookie_path: str) -> None:
        self.app = app
        self.cookie_path = cookie_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                value = scope.get("state", {}).get("new_csrf")
                if value:
                    secure = "; Secure" if scope.get("scheme") == "https" else ""
                    MutableHeaders(scope=message).append(
                        "set-cookie", f"bi_csrf={value}; Path={self.cookie_path}; HttpOnly; "
                                      f"SameSite=Lax{secure}")
            await send(message)

        await self.app(scope, receive, _send)
