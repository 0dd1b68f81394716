"""One access-log line per request (a pure ASGI middleware), for every tier that logs its own.

Runs inside :class:`tierlake.asgi.request_id.RequestIdMiddleware`, so each line carries the
request's ``X-Request-ID`` (the caller's, when a tier made the call). Load balancers' health
checks and static files would drown the log, so a tier names the paths it keeps quiet.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierlake.asgi.request_id import current_request_id


def _checks(path: str) -> bool:
    return path.endswith(("/health", "/ready"))


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, *, logger: str = "tierlake.access", event: str = "request",
                 quiet: Callable[[str], bool] = _checks) -> None:
        self.app = app
        self.log = structlog.get_logger(logger)
        self.event = event
        self.quiet = quiet

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
            if not self.quiet(path):
                self.log.info(self.event, method=scope.get("method"), path=path, status=status,
                              ms=round((time.perf_counter() - start) * 1000, 1),
                              request_id=current_request_id())
