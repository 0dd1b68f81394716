"""``X-Request-ID``: one id per request, kept across the tiers and on every log line.

The id is taken from the incoming header when it is sane (printable token
characters, 8 to 128 of them: what a load balancer or a client would send),
otherwise a new one is generated. It replaces the incoming header in the scope,
is bound to structlog's context variables for the request (every log line of the
request carries it), is readable with :func:`current_request_id` (the web tier
forwards it to the app tier) and is sent back on the response.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_SANE = re.compile(r"^[A-Za-z0-9._:@/+=-]{8,128}$")
_current: ContextVar[str | None] = ContextVar("tierlake_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served (None outside a request)."""
    return _current.get()


def request_id_from(value: str | None) -> str:
    """``value`` if it is a sane request id, else a new random one.

    A new id is 128 bits of the ``random`` module, not ``uuid4``: an id needs to be unique,
    not secret, and ``uuid4`` reads the kernel's random source, a system call per request
    on the event loop's thread (a tenth of that thread's time in a checkout profile,
    docs/benchmarks.md)."""
    if value and _SANE.match(value):
        return value
    return f"{random.getrandbits(128):032x}"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = MutableHeaders(scope=scope)
        request_id = request_id_from(incoming.get(HEADER))
        incoming[HEADER] = request_id  # what the app and its logs see
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        token = _current.set(request_id)
        try:
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
