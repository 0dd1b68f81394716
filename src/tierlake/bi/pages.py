"""The BI tier's pages: login, the dashboard list, a dashboard, the SQL page, users.

Pages are drawn on the server with their filters and the list of visuals to show; each
visual's data is then fetched by the browser from the JSON API (``/bi/api/...``) with the
page's own URL parameters, so the URL is the whole state of a view (share it, reload it,
go back). A drill is a URL parameter ``drill.<param>=<value>``: the visual whose drill
declares ``to`` is replaced by that next level, and a drill with ``detail`` lists the rows
behind the clicked point under the visual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tierlake.bi.api import (
    ApiError,
    check_login,
    dashboard_or_404,
    engine_of,
    filter_params,
    parse,
    run_sql,
    set_session,
)
from tierlake.bi.auth import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Forbidden,
    Sessions,
    admin_principal,
    current_principal,
)
from tierlake.bi.model import Dashboard, Filters, Principal, QueryResult, Visual
from tierlake.bi.users import UserStore

router = APIRouter(include_in_schema=False)
Who = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(admin_principal)]


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status)


def message_page(request: Request, status: int, title: str, message: str) -> Response:
    return render(request, "message.html", {"title": title, "message": message}, status)


def login_page(request: Request, *, error: str | None = None, email: str = "",
               next_path: str = "", status: int = 200) -> Response:
    return render(request, "login.html", {"error": error, "email": email,
                                          "next": _safe_next(next_path)}, status)


def _safe_next(path: str) -> str:
    """Only a path on this tier (no scheme, no other host)."""
    if path.startswith("/bi/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/bi/"


def _csrf_ok(request: Request, token: str) -> bool:
    sessions: Sessions = request.app.state.sessions
    return sessions.csrf_valid(token, request.cookies.get(CSRF_COOKIE))


@router.get("/login")
def login_form(request: Request, next: str = "/bi/") -> Response:
    return login_page(request, next_path=next)


@router.post("/login")
def login_submit(request: Request, email: Annotated[str, Form(max_length=254)],
                 password: Annotated[str, Form(max_length=1000)],
                 csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
                 next: Annotated[str, Form()] = "/bi/") -> Response:
    if not _csrf_ok(request, csrf_token):
        return login_page(request, email=email, next_path=next, status=403,
                          error="This form has expired; log in again.")
    user = check_login(request, email, password)
    if user is None:
        return login_page(request, email=email, next_path=next, status=401,
                          error="Wrong e-mail or password.")
    response = RedirectResponse(_safe_next(next), 303)
    set_session(request, response, user.email)
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "") -> Response:
    if not _csrf_ok(request, csrf_token):
        return message_page(request, 403, "This form has expired",
                            "Reload the page and press Log out again.")
    response = RedirectResponse("/bi/login", 303)
    response.delete_cookie(SESSION_COOKIE, path="/bi")
    return response


@router.get("/")
def home(request: Request, who: Who) -> Response:
    return render(request, "home.html", {"dashboards": engine_of(request).dashboards()})


@dataclass
class Shown:
    """One slot of the dashboard grid: the visual drawn there after the drills."""

    visual: Visual
    crumbs: list[tuple[str, str]] = field(default_factory=list)  # (label, URL without it)
    detail_of: str | None = None  # the visual whose detail query lists the rows
    detail_value: str | None = None


def _url(path: str, params: list[tuple[str, str]]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def shown_visuals(dashboard: Dashboard, filters: Filters, path: str,
                  params: list[tuple[str, str]]) -> list[Shown]:
    drilled = dict(filters.drill)
    out: list[Shown] = []
    for top in dashboard.visuals:
        if top.hidden:
            continue
        slot = Shown(top)
        current, seen = top, {top.id}
        while current.drill is not None and current.drill.param in drilled:
            d = current.drill
            value = drilled[d.param]
            below = {f"drill.{x}" for x in _deeper(dashboard, current)}
            back = [(k, v) for k, v in params if k not in below]
            slot.crumbs.append((f"{d.column}: {value}", _url(path, back)))
            if d.detail:
                slot.detail_of, slot.detail_value = current.id, value
            if d.to is None or d.to in seen:
                break
            try:
                current = dashboard.visual(d.to)
            except KeyError:
                break
            seen.add(current.id)
            slot.visual = current
        out.append(slot)
    return out


def _deeper(dashboard: Dashboard, visual: Visual) -> list[str]:
    """The drill parameters below ``visual`` (cleared when going back above them)."""
    params: list[str] = []
    current: Visual | None = visual
    seen: set[str] = set()
    while current is not None and current.drill is not None and current.id not in seen:
        seen.add(current.id)
        params.append(current.drill.param)
        try:
            current = dashboard.visual(current.drill.to) if current.drill.to else None
        except KeyError:
            current = None
    return params


@router.get("/dashboards/{dashboard_id}")
def dashboard_page(request: Request, dashboard_id: str, who: Who) -> Response:
    engine = engine_of(request)
    try:
        dashboard = dashboard_or_404(engine, dashboard_id)
    except ApiError as exc:
        return message_page(request, 404, "No such dashboard", exc.message)
    params = filter_params(request)
    raw = [(k, v) for k, v in request.query_params.multi_items()
           if k in ("start", "end", "category") or k.startswith("drill.")]
    categories = engine.categories(who)
    base = {"dashboard": dashboard, "dashboards": engine.dashboards(), "categories": categories,
            "query": urlencode(raw), "start": params.get("start", ""),
            "end": params.get("end", ""),
            "chosen": set(",".join(request.query_params.getlist("category")).split(","))}
    try:
        filters = parse(engine, dashboard, params, who)
    except ApiError as exc:
        return render(request, "dashboard.html", {**base, "error": exc.message, "slots": [],
                                                  "filters": None}, 400)
    path = request.url.path
    slots = shown_visuals(dashboard, filters, path, raw)
    return render(request, "dashboard.html", {
        **base, "error": None, "filters": filters, "slots": slots,
        "start": filters.start.isoformat(), "end": filters.end.isoformat(),
        "chosen": set(filters.categories),
        "page": {"dashboard": dashboard.id, "query": urlencode(raw), "visuals": [
            {"slot": i, "id": s.visual.id, "kind": s.visual.kind, "title": s.visual.title,
             "format": s.visual.format, "formats": s.visual.formats,
             "value": s.visual.value, "compare": s.visual.compare,
             "drill": s.visual.drill.model_dump() if s.visual.drill else None,
             "detail_of": s.detail_of, "detail_value": s.detail_value}
            for i, s in enumerate(slots)]},
    })


@router.get("/sql")
def sql_page(request: Request, who: Who,
             q: Annotated[str, Query(max_length=100_000)] = "") -> Response:
    engine = engine_of(request)
    result: QueryResult | None = None
    error: str | None = None
    if q.strip():
        try:
            result = run_sql(engine, q, who)
        except ApiError as exc:
            error = exc.message
    chart: dict[str, Any] | None = None
    if result is not None and result.columns and result.rows:
        numeric = [i for i, _ in enumerate(result.columns)
                   if i > 0 and all(isinstance(r[i], int | float) and not isinstance(r[i], bool)
                                    for r in result.rows if r[i] is not None)
                   and any(r[i] is not None for r in result.rows)]
        if numeric:
            y = numeric[0]
            chart = {"x": [str(r[0]) for r in result.rows], "y": [r[y] for r in result.rows],
                     "x_title": result.columns[0], "y_title": result.columns[y]}
    return render(request, "sql.html", {
        "q": q, "result": result, "error": error, "chart": chart,
        "tables": _tables(request), "csv_url": _url("/bi/api/sql.csv", [("q", q)])},
        400 if error else 200)


def _tables(request: Request) -> list[Any]:
    """The curated tables the SQL page may read (the engine's catalog, when it has one)."""
    listed = getattr(engine_of(request), "sql_tables", None)
    return list(listed()) if callable(listed) else []


@router.get("/users")
def users_page(request: Request, who: Admin) -> Response:
    users: UserStore = request.app.state.users
    return render(request, "users.html", {"users": users.list_users(),
                                          "rules": users.list_rules()})


__all__ = ["Forbidden", "login_page", "message_page", "router"]
