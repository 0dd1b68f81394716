"""CSRF protection for every form POST.

Each page carries a token (hidden field ``csrf_token``) that is the visitor's
id signed with the secret key and a timestamp. A state-changing request is
accepted only if its token is genuine, recent and bound to the same visitor
cookie the request carries; otherwise the visitor gets a 403 page asking them
to reload the page. No server-side state is needed, so any instance can check
a token another instance issued.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FIELD = "csrf_token"
HEADER = "x-csrf-token"
MAX_AGE = 24 * 3600
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class CsrfSigner:
    def __init__(self, secret: str, max_age: int = MAX_AGE) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="tierlake.web.csrf")
        self.max_age = max_age

    def token(self, visitor_id: str) -> str:
        return self._serializer.dumps(visitor_id)

    def valid(self, token: Any, visitor_id: str | None) -> bool:
        if not isinstance(token, str) or not token or not visitor_id or len(token) > 500:
            return False
        try:
            return self._serializer.loads(token, max_age=self.max_age) == visitor_id
        except (BadSignature, ValueError, TypeError):
            return False


FailureRenderer = Callable[[Request], Awaitable[Response]]


class CSRFMiddleware:
    """Checks the token of every unsafe request before the route sees it.

    Runs inside the web-context middleware (which puts the visitor id in
    ``scope["state"]["web"]``) and the body cap (``limits.web_max_body_bytes``). The body
    is read once, checked, and replayed to the application unchanged.
    """

    def __init__(self, app: ASGIApp, signer: CsrfSigner, on_failure: FailureRenderer) -> None:
        self.app = app
        self.signer = signer
        self.on_failure = on_failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            chunks.append(body)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        request = Request(scope, replay)
        token: Any = request.headers.get(HEADER)
        if token is None:
            try:
                form = await request.form()
                token = form.get(FIELD)
                await form.close()
            except Exception:  # noqa: BLE001 - an unparseable body has no token
                token = None
        web = scope.get("state", {}).get("web")
        visitor = getattr(web, "visitor_id", None)
        if not self.signer.valid(token, visitor):
            response = await self.on_failure(Request(scope, receive))
            await response(scope, receive, send)
            return
        replayed = False
        await self.app(scope, replay, send)
