"""Request id and access log for the app tier (a pure ASGI middleware)."""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("tierlake.access")


class RequestLogMiddleware:
    """Gives every request an ``X-Request-ID`` (kept if the caller sent one) and logs it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        if b"x-request-id" not in headers:
            scope["headers"] = [*scope.get("headers", []), (b"x-request-id", request_id.encode())]
        status = 500
        start = time.perf_counter()

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            path = scope.get("path", "")
            if not path.endswith(("/health", "/ready")):
                log.info("request", method=scope.get("method"), path=path, status=status,
                         ms=round((time.perf_counter() - start) * 1000, 1), request_id=request_id)
