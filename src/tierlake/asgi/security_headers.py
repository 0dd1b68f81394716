"""Security headers on every response of a tier (pages, JSON, docs, static files), sent by
:class:`tierlake.asgi.edge.EdgeMiddleware`.

Headers a handler already set win, so one page may carry its own
Content-Security-Policy (the API docs do).
"""

from __future__ import annotations

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def security_headers(content_security_policy: str) -> dict[str, str]:
    """The headers every response gets, with this tier's CSP (``frame-ancestors`` included)."""
    return {"content-security-policy": content_security_policy, **COMMON}
