"""A cap on request bodies: 413 Content Too Large, without reading the rest.

A ``Content-Length`` above the cap is answered at once, before the application
runs. A body sent without one (chunked) is counted as the application reads it;
the read that passes the cap raises :class:`BodyTooLargeError` (an
``HTTPException`` 413, so a framework's error handlers render it in the tier's
own format), and if it escapes them the middleware answers the 413 itself,
provided no response has started.

:class:`BodyLimit` is the cap; :class:`tierlake.asgi.edge.EdgeMiddleware` applies it in
the tier's outermost layer, :class:`BodyLimitMiddleware` as a layer of its own (the web
tier's 413 page needs the web context, set up inside the edge).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than the {describe(limit)} this "
                              "server accepts; send a smaller one.")
        self.limit = limit


def describe(limit: int) -> str:
    """``65536`` -> ``64 KiB``."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"


class BodyLimit:
    """``max_bytes`` per request body; ``too_large(scope, error)`` builds the tier's 413."""

    def __init__(self, max_bytes: int,
                 too_large: Callable[[Scope, BodyTooLargeError], Response]) -> None:
        self.max_bytes = max_bytes
        self.too_large = too_large

    def declared_too_large(self, scope: Scope) -> BodyTooLargeError | None:
        """The error if the request's ``Content-Length`` is above the cap."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    return BodyTooLargeError(self.max_bytes)
                break
        return None

    def counted(self, receive: Receive) -> Receive:
        """``receive``, raising :class:`BodyTooLargeError` on the read that passes the cap."""
        limit = self.max_bytes
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLargeError(limit)
            return message

        return counted_receive


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int,
                 too_large: Callable[[Scope, BodyTooLargeError], Response]) -> None:
        self.app = app
        self.limit = BodyLimit(max_bytes, too_large)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.limit.declared_too_large(scope)
        if refused is not None:
            await self.limit.too_large(scope, refused)(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self.limit.counted(receive), watched_send)
        except BodyTooLargeError as exc:
            if started:
                raise
            await self.limit.too_large(scope, exc)(scope, receive, send)
