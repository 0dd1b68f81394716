"""Security headers on every response of a tier (pages, JSON, docs, static files).

Headers a handler already set win (``setdefault``), so one page may carry its own
Content-Security-Policy (the API docs do).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def security_headers(content_security_policy: str) -> dict[str, str]:
    """The headers every response gets, with this tier's CSP (``frame-ancestors`` included)."""
    return {"content-security-policy": content_security_policy, **COMMON}


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = dict(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    out.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
