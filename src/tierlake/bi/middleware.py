"""The BI tier's own ASGI pieces: which requests its access log leaves out, and the CSRF
cookie.

The CSRF cookie is set on the way out when a page rendered a form for a browser that had
none (``request.state.new_csrf``, see :func:`tierlake.bi.auth.csrf_cookie_value`), so any
template, bi-reports' included, can call ``csrf_token(request)`` and the token holds.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_QUIET = ("/health", "/ready")


def quiet(path: str) -> bool:
    """Health checks and static files are not logged."""
    return path in _QUIET or path.startswith("/bi/static/")


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
