"""``X-Request-ID``: one id per request, kept across the tiers and on every log line.

The id is taken from the incoming header when it is sane (printable token
characters, 8 to 128 of them: what a load balancer or a client would send),
otherwise a new one is generated. :class:`tierlake.asgi.edge.EdgeMiddleware` puts it
in the scope in place of the incoming header, binds it to structlog's context variables
for the request (every log line of the request carries it) and to :data:`REQUEST_ID`
(read with :func:`current_request_id`: the web tier forwards it to the app tier), and sends
it back on the response.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar

HEADER = "X-Request-ID"
_SANE = re.compile(r"^[A-Za-z0-9._:@/+=-]{8,128}$")
REQUEST_ID: ContextVar[str | None] = ContextVar("tierlake_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served (None outside a request)."""
    return REQUEST_ID.get()


def request_id_from(value: str | None) -> str:
    """``value`` if it is a sane request id, else a new random one.

    A new id is 128 bits of the ``random`` module, not ``uuid4``: an id needs to be unique,
    not secret, and ``uuid4`` reads the kernel's random source, a system call per request
    on the event loop's thread (a tenth of that thread's time in a checkout profile,
    docs/benchmarks.md)."""
    if value and _SANE.match(value):
        return value
    return f"{random.getrandbits(128):032x}"
