"""HTTP/1.1 pieces the proxy shares: ALB's own answers, its limits, the trace id, hop-by-hop.

Kept apart from the proxy's state machine so that each is small and testable alone.

AWS documentation followed: "Troubleshoot your Application Load Balancers" (the HTTP 4XX
and 5XX the load balancer generates, and its limits: request line 16 K, a single header
16 K, the whole header 64 K; X-Forwarded-For at most 30 addresses, else 463), "Request
tracing for your Application Load Balancer" (``X-Amzn-Trace-Id``: ``Root`` and ``Self``
fields, ``1-<8 hex epoch seconds>-<24 hex>``) and "HTTP headers and Application Load
Balancers" (``X-Forwarded-For``, ``-Proto``, ``-Port``). Hop-by-hop headers: RFC 9110
section 7.6.1.
"""

from __future__ import annotations

import random
import time
from http import HTTPStatus

MAX_REQUEST_LINE = 16 * 1024
MAX_HEADER = 16 * 1024
MAX_HEADERS = 64 * 1024
MAX_FORWARDED_FOR = 30

# RFC 9110 7.6.1, plus the pre-standard ones proxies still see; never forwarded.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})

# Codes ALB itself uses that have no registered reason phrase.
_REASONS = {460: "", 463: "", 561: "Unauthorized"}


def reason(status: int) -> str:
    if status in _REASONS:
        return _REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def error_page(status: int) -> bytes:
    """The small HTML page ALB sends with its own errors."""
    title = f"{status} {reason(status)}".rstrip()
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n").encode()


def response_head(status: int, headers: list[tuple[bytes, bytes]], *, close: bool) -> bytes:
    """A response head the balancer writes itself."""
    lines = [f"HTTP/1.1 {status} {reason(status)}".encode(),
             b"Server: tierlake-lb", b"Date: " + http_date().encode()]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"Connection: close" if close else b"Connection: keep-alive")
    return b"\r\n".join(lines) + b"\r\n\r\n"


_rng = random.Random()
_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header's value, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)))
    return _date_cache[1]


def new_trace_value(now: float | None = None) -> str:
    """``1-<epoch seconds, 8 hex>-<24 hex>``, as ALB's Root and Self fields."""
    # Not a secret, only unique: a PRNG seeded from the OS is enough and spares a syscall.
    return f"1-{int(now if now is not None else time.time()):08x}-{_rng.getrandbits(96):024x}"


def trace_header(incoming: str | None) -> str:
    """The ``X-Amzn-Trace-Id`` to forward, given the client's (if any).

    No header, or one without Root: a new ``Root``. A Root present: insert (or update) a
    ``Self`` field in front and keep every other field, as ALB does."""
    if incoming:
        fields = [f.strip() for f in incoming.split(";") if f.strip()]
        if any(f.startswith("Root=") for f in fields):
            kept = [f for f in fields if not f.startswith("Self=")]
            return ";".join([f"Self={new_trace_value()}", *kept])
        return ";".join([f"Root={new_trace_value()}", *fields])
    return f"Root={new_trace_value()}"


def connection_tokens(values: list[bytes]) -> set[bytes]:
    """Header names the ``Connection`` header lists (hop-by-hop for this message)."""
    return {t.strip().lower() for v in values for t in v.split(b",") if t.strip()}


def forwarded_for_count(values: list[bytes]) -> int:
    return sum(1 for v in values for t in v.split(b",") if t.strip())
