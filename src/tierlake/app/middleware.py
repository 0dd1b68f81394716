"""The app tier's access log (a pure ASGI middleware): one line per request.

Runs inside :class:`tierlake.asgi.request_id.RequestIdMiddleware`, so each line
carries the request's ``X-Request-ID`` (the web tier's, when it made the call).
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierlake.asgi.request_id import current_request_id

log = structlog.get_logger("tierlake.access")


class RequestLogMiddleware:
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
            if not path.endswith(("/health", "/ready")):
                log.info("request", method=scope.get("method"), path=path, status=status,
                         ms=round((time.perf_counter() - start) * 1000, 1),
                         request_id=current_request_id())
