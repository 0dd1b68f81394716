"""HTML rendering: the Jinja2 environment, filters, and the page helper."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from tierlake.web.csrf import CsrfSigner

TEMPLATES = Path(__file__).parent / "templates"

COUNTRIES: list[tuple[str, str]] = [
    ("AU", "Australia"), ("AT", "Austria"), ("BE", "Belgium"), ("BR", "Brazil"),
    ("CA", "Canada"), ("CH", "Switzerland"), ("CZ", "Czechia"), ("DE", "Germany"),
    ("DK", "Denmark"), ("ES", "Spain"), ("FI", "Finland"), ("FR", "France"),
    ("GB", "United Kingdom"), ("GR", "Greece"), ("IE", "Ireland"), ("IN", "India"),
    ("IT", "Italy"), ("JP", "Japan"), ("KR", "South Korea"), ("MX", "Mexico"),
    ("NL", "Netherlands"), ("NO", "Norway"), ("NZ", "New Zealand"), ("PL", "Poland"),
    ("PT", "Portugal"), ("SE", "Sweden"), ("SG", "Singapore"), ("US", "United States"),
    ("ZA", "South Africa"),
]

SORTS: list[tuple[str, str]] = [
    ("relevance", "Relevance"), ("name", "Name"), ("price_asc", "Price: low to high"),
    ("price_desc", "Price: high to low"), ("newest", "Newest"),
]


def money(cents: Any) -> str:
    """``1234`` -> ``$12.34`` (negative amounts as ``-$1.00``)."""
    try:
        value = int(cents)
    except (TypeError, ValueError):
        return ""
    sign = "-" if value < 0 else ""
    dollars, rest = divmod(abs(value), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


def dollars(cents: Any) -> str:
    """``1234`` -> ``12.34`` (for price inputs)."""
    try:
        value = int(cents)
    except (TypeError, ValueError):
        return ""
    return f"{value // 100}.{value % 100:02d}"


def datefmt(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.strftime("%d %b %Y, %H:%M UTC")
    return ""


def hue(text: Any) -> int:
    """A stable colour hue for a product's placeholder tile."""
    return sum(ord(c) * (i + 1) for i, c in enumerate(str(text))) % 360


def initials(text: Any) -> str:
    words = [w for w in str(text).split() if w[:1].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def with_query(request: Request, **changes: Any) -> str:
    """The current path with some query parameters changed (None removes one)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    return request.url.path + (f"?{query}" if query else "")


class Renderer:
    def __init__(self, csrf: CsrfSigner) -> None:
        self.csrf = csrf
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(money=money, dollars=dollars, datefmt=datefmt, hue=hue,
                                initials=initials)
        self.env.globals.update(COUNTRIES=COUNTRIES, SORTS=SORTS, with_query=with_query)

    def page(
        self, request: Request, template: str, context: dict[str, Any] | None = None,
        status: int = 200, headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        web = request.state.web
        values: dict[str, Any] = {
            "request": request,
            "me": web.auth,
            "cart_count": web.cart_count,
            "csrf_token": self.csrf.token(web.visitor_id),
            "flash": web.take_flash(),
            "errors": {},
            "form": {},
        }
        values.update(context or {})
        html = self.env.get_template(template).render(values)
        response = HTMLResponse(html, status_code=status, headers=headers)
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200,
) -> HTMLResponse:
    renderer: Renderer = request.app.state.renderer
    return renderer.page(request, template, context, status)


def error_page(
    request: Request, status: int, title: str, message: str, *, action: str | None = None,
    action_url: str | None = None,
) -> HTMLResponse:
    return render(request, "error.html", {
        "status": status, "title": title, "message": message,
        "action": action, "action_url": action_url,
    }, status=status)
