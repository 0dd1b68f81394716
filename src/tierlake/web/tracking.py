"""Clickstream: turns a finished request into ClickEvents for the event log.

Every GET that renders an HTML page is a ``page_view``; pages and actions add
``search``, ``add_to_cart``, ``remove_from_cart``, ``checkout`` and
``purchase`` events through :func:`tierlake.web.common.track`. Static assets,
health checks and the favicon are never recorded. Events go to the in-memory
:class:`~tierlake.web.clickstream.EventLog` buffer - never to the database.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from typing import Any

import structlog

from tierlake.web.clickstream import EVENT_TYPES, EventLog, make_event
from tierlake.web.session import WebContext

log = structlog.get_logger(__name__)

UNTRACKED_PREFIXES = ("/static/", "/health", "/ready", "/favicon.ico", "/robots.txt")
_FIELDS = ("product_id", "category", "query", "order_id")


def instance_source() -> str:
    """A name unique to this web process, e.g. ``web-host1-4242``."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40] or "host"
    return f"web-{host}-{os.getpid()}"


def is_tracked_path(path: str) -> bool:
    return not any(path == p.rstrip("/") or path.startswith(p) for p in UNTRACKED_PREFIXES)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")[:500]
    return None


def record_request(
    event_log: EventLog,
    ctx: WebContext,
    scope: Mapping[str, Any],
    status: int,
    content_type: str,
) -> int:
    """Record this request's events; returns how many were recorded."""
    path: str = scope["path"]
    if not is_tracked_path(path):
        return 0
    headers = scope.get("headers", [])
    common: dict[str, Any] = {
        "path": path[:2000],
        "method": scope["method"],
        "status": status,
        "session_id": ctx.session_id,
        "visitor_id": ctx.visitor_id,
        "customer_id": ctx.auth.customer_id if ctx.auth else None,
        "referrer": _header(headers, b"referer"),
        "user_agent": _header(headers, b"user-agent"),
        "source": event_log.source,
    }
    events: list[dict[str, Any]] = []
    if scope["method"] == "GET" and content_type.startswith("text/html"):
        events.append({"event_type": "page_view", **ctx.page})
    events.extend(ctx.events)
    count = 0
    for spec in events:
        kind = spec.get("event_type")
        if kind not in EVENT_TYPES:
            continue
        fields: dict[str, Any] = {k: spec.get(k) for k in _FIELDS}
        try:
            event_log.record(make_event(kind, **common, **fields))
            count += 1
        except Exception:  # logged: analytics must never break a page
            log.exception("clickstream.record_failed", event_type=kind)
    return count
