"""Helpers shared by the page modules: API access, login checks, redirects, forms."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse

from tierlake.web.client import ApiClient
from tierlake.web.session import Auth, WebContext


class LoginRequired(Exception):  # a control-flow signal, not an error
    """Raised by a page that needs a logged-in customer; becomes a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def api(request: Request) -> ApiClient:
    return request.app.state.api


def web(request: Request) -> WebContext:
    return request.state.web


def current_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def return_path(request: Request) -> str:
    """Where to come back to after logging in: this page, or for a form post the page it
    was posted from (when that is on this site)."""
    if request.method == "GET":
        return current_path(request)
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc and referer.netloc != request.url.netloc:
        return "/"
    path = referer.path + (f"?{referer.query}" if referer.query else "")
    return safe_next(path, "/")


def require_login(request: Request, next_path: str | None = None) -> Auth:
    auth = web(request).auth
    if auth is None:
        raise LoginRequired(next_path or return_path(request))
    return auth


def token(request: Request) -> str:
    return require_login(request).token


_UNSAFE_NEXT = re.compile(r"[\x00-\x1f\x7f\\]")


def safe_next(value: Any, default: str = "/") -> str:
    """``value`` if it is a same-site relative path, else ``default`` (no open redirects)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return default
    if _UNSAFE_NEXT.search(value) or len(value) > 2000:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def login_url(next_path: str) -> str:
    return "/login?next=" + quote(safe_next(next_path), safe="/")


def redirect(url: str) -> RedirectResponse:
    """A 303 See Other: after a POST the browser GETs the next page."""
    return RedirectResponse(url, status_code=303)


def flash(request: Request, message: str, kind: str = "success") -> None:
    web(request).flash(message, kind)


def track(request: Request, event_type: str, **fields: Any) -> None:
    """Record a clickstream action event (search, add_to_cart, ...) for this request."""
    web(request).events.append({"event_type": event_type, **fields})


def track_page(request: Request, **fields: Any) -> None:
    """Fill in the page_view's product_id / category / query."""
    web(request).page.update({k: v for k, v in fields.items() if v is not None})


def int_param(value: Any, default: int = 1, lo: int = 1, hi: int = 100_000) -> int:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return default
    return max(lo, min(hi, number))


async def form_data(request: Request) -> dict[str, str]:
    """The submitted form as plain strings (files ignored), trimmed."""
    form = await request.form()
    data = {k: v.strip() for k, v in form.items() if isinstance(v, str)}
    data.pop("csrf_token", None)
    return data


def parse_price(text: str) -> int | None:
    """``"12.34"`` / ``"$1,234.5"`` -> cents; None when not a price."""
    cleaned = text.replace("$", "").replace(",", "").strip()
    if not cleaned:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    exponent = value.as_tuple().exponent  # a letter for NaN and infinities
    if not isinstance(exponent, int) or value < 0 or exponent < -2:
        return None
    return int(value * 100)


def page_window(page: int, pages: int, width: int = 2) -> list[int | None]:
    """Page numbers to show around ``page`` (None is a gap)."""
    if pages <= 1:
        return []
    keep = {1, pages, *range(max(1, page - width), min(pages, page + width) + 1)}
    out: list[int | None] = []
    last = 0
    for n in sorted(keep):
        if n - last > 1:
            out.append(None)
        out.append(n)
        last = n
    return out
