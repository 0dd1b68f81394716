"""The BI tier's JSON API (under ``/bi/api``): what the pages draw from, and scripts use.

Every answer goes through the engine with the caller's principal, so the JSON, the CSV and
the pages hold the same rows with the same masks. Filters are the page's URL parameters
(``start``, ``end``, ``category`` — repeated or comma-separated —, ``drill.<param>``); a
value the engine cannot use is a 400 whose message says what to fix.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from tierlake.bi.auth import SESSION_COOKIE, Sessions, counted_login, current_principal
from tierlake.bi.model import (
    Dashboard,
    Engine,
    FilterError,
    Filters,
    Freshness,
    Principal,
    QueryResult,
    UnknownDashboard,
    VisualResult,
)
from tierlake.bi.users import UserStore

router = APIRouter(tags=["bi"])
Who = Annotated[Principal, Depends(current_principal)]
FILTER_KEYS = ("start", "end", "category")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"code": self.code, "message": self.message}}, self.status)


def filter_params(request: Request) -> dict[str, str]:
    """The URL's filter parameters; a repeated ``category`` becomes one comma-separated value."""
    out: dict[str, str] = {}
    for key in request.query_params:
        if key in FILTER_KEYS or key.startswith("drill."):
            values = [v for v in request.query_params.getlist(key) if v != ""]
            if values:
                out[key] = ",".join(values)
    return out


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def dashboard_or_404(engine: Engine, dashboard_id: str) -> Dashboard:
    try:
        return engine.dashboard(dashboard_id)
    except (UnknownDashboard, KeyError) as exc:
        raise ApiError(404, "unknown_dashboard", f"There is no dashboard {dashboard_id!r}; "
                       "GET /bi/api/dashboards lists them.") from exc


def parse(engine: Engine, dashboard: Dashboard, params: Mapping[str, str],
          who: Principal | None = None) -> Filters:
    """The URL's filters; with ``who``, a category they may not see reads as unknown (when
    the engine takes the principal: ``BiEngine.parse_filters(..., principal=)``)."""
    try:
        if who is not None and _takes_principal(engine):
            parse_as: Any = engine.parse_filters
            filters: Filters = parse_as(dashboard, params, principal=who)
            return filters
        return engine.parse_filters(dashboard, params)
    except FilterError as exc:
        raise ApiError(400, "bad_filter", str(exc)) from exc
    except ValueError as exc:  # pydantic wraps a validator's FilterError
        raise ApiError(400, "bad_filter", _first_message(exc)) from exc


def _takes_principal(engine: Engine) -> bool:
    import inspect

    try:
        return "principal" in inspect.signature(engine.parse_filters).parameters
    except (TypeError, ValueError):
        return False


def _first_message(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            found = errors()
            if found:
                return str(found[0].get("msg", exc)).removeprefix("Value error, ")
        except Exception:  # noqa: BLE001 - fall back to the plain text
            pass
    return str(exc)


def visual_or_404(dashboard: Dashboard, visual_id: str) -> None:
    try:
        dashboard.visual(visual_id)
    except KeyError as exc:
        raise ApiError(404, "unknown_visual", f"Dashboard {dashboard.id!r} has no visual "
                       f"{visual_id!r}; GET /bi/api/dashboards/{dashboard.id} lists them.") from exc


def to_csv(columns: tuple[str, ...], rows: tuple[tuple[Any, ...], ...]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def _guard(fn: Any) -> Any:
    """ApiError -> its JSON answer (routes stay plain functions the thread pool runs)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            return exc.response()

    return wrapper


class DashboardInfo(BaseModel):
    id: str
    title: str
    description: str
    filters: tuple[str, ...]
    visuals: list[dict[str, Any]]


def _info(d: Dashboard) -> DashboardInfo:
    return DashboardInfo(id=d.id, title=d.title, description=d.description, filters=d.filters,
                         visuals=[{"id": v.id, "title": v.title, "kind": v.kind,
                                   "hidden": v.hidden,
                                   "drill": v.drill.model_dump() if v.drill else None}
                                  for v in d.visuals])


@router.get("/dashboards", response_model=list[DashboardInfo])
@_guard
def list_dashboards(request: Request, _: Who) -> Any:
    return [_info(d) for d in engine_of(request).dashboards()]


@router.get("/dashboards/{dashboard_id}", response_model=DashboardInfo)
@_guard
def get_dashboard(request: Request, dashboard_id: str, _: Who) -> Any:
    return _info(dashboard_or_404(engine_of(request), dashboard_id))


@router.get("/dashboards/{dashboard_id}/filters", response_model=Filters)
@_guard
def get_filters(request: Request, dashboard_id: str, who: Who) -> Any:
    """The filters the URL's parameters mean (defaults filled in)."""
    engine = engine_of(request)
    return parse(engine, dashboard_or_404(engine, dashboard_id), filter_params(request), who)


@router.get("/dashboards/{dashboard_id}/visuals/{visual_id}.csv",
            response_class=Response, responses={200: {"content": {"text/csv": {}}}})
@_guard
def visual_csv(request: Request, dashboard_id: str, visual_id: str, who: Who) -> Any:
    """The visual's rows as CSV, under the same filters, rules and masks as the page."""
    engine = engine_of(request)
    dashboard = dashboard_or_404(engine, dashboard_id)
    visual_or_404(dashboard, visual_id)
    filters = parse(engine, dashboard, filter_params(request), who)
    result = engine.run_visual(dashboard, visual_id, filters, who)
    return Response(to_csv(result.columns, result.rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition":
                             f'attachment; filename="{dashboard.id}-{visual_id}.csv"'})


@router.get("/dashboards/{dashboard_id}/visuals/{visual_id}", response_model=VisualResult)
@_guard
def visual(request: Request, dashboard_id: str, visual_id: str, who: Who) -> Any:
    """One visual's data and Plotly figure under the URL's filters."""
    engine = engine_of(request)
    dashboard = dashboard_or_404(engine, dashboard_id)
    visual_or_404(dashboard, visual_id)
    return engine.run_visual(dashboard, visual_id,
                             parse(engine, dashboard, filter_params(request), who), who)


@router.get("/dashboards/{dashboard_id}/visuals/{visual_id}/detail", response_model=VisualResult)
@_guard
def detail(request: Request, dashboard_id: str, visual_id: str, who: Who,
           value: Annotated[str, Query(max_length=500, description="The clicked point's "
                                       "drill value.")]) -> Any:
    """Drill-to-detail: the rows behind one point of the visual."""
    engine = engine_of(request)
    dashboard = dashboard_or_404(engine, dashboard_id)
    visual_or_404(dashboard, visual_id)
    v = dashboard.visual(visual_id)
    if v.drill is None or v.drill.detail is None:
        raise ApiError(400, "no_detail", f"Visual {visual_id!r} has no drill-to-detail.")
    filters = parse(engine, dashboard, filter_params(request), who)
    try:
        return engine.detail(dashboard, visual_id, filters, who, value)
    except FilterError as exc:
        raise ApiError(400, "bad_filter", str(exc)) from exc


@router.get("/categories")
@_guard
def categories(request: Request, who: Who) -> Any:
    """The categories this user may filter on: ``[{"slug", "name"}]``."""
    return [{"slug": s, "name": n} for s, n in engine_of(request).categories(who)]


@router.get("/freshness", response_model=Freshness)
def freshness(request: Request, _: Who) -> Any:
    """What the badge says: the newest data's time, its age and the next refresh."""
    return engine_of(request).freshness()


class SqlIn(BaseModel):
    sql: str = Field(min_length=1, max_length=100_000)


def run_sql(engine: Engine, text: str, who: Principal) -> QueryResult:
    try:
        return engine.sql(text, who)
    except ValueError as exc:  # QueryRefused and the engine's query errors
        raise ApiError(400, "query_refused" if type(exc).__name__ == "QueryRefused"
                       else "query_error", str(exc)) from exc


@router.post("/sql", response_model=QueryResult)
@_guard
def sql(request: Request, body: SqlIn, who: Who) -> Any:
    """A read-only query over the curated tables, with this user's rules and masks."""
    return run_sql(engine_of(request), body.sql, who)


@router.get("/sql.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
@_guard
def sql_csv(request: Request, who: Who,
            q: Annotated[str, Query(min_length=1, max_length=100_000)]) -> Any:
    result = run_sql(engine_of(request), q, who)
    return Response(to_csv(result.columns, result.rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="query.csv"'})


class LoginIn(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1000)


@router.post("/session")
@_guard
def login(request: Request, body: LoginIn) -> Any:
    """Log in; the answer sets the session cookie (JSON bodies only: no cross-site form
    can send one)."""
    user = check_login(request, body.email, body.password)
    if user is None:
        raise ApiError(401, "bad_credentials", "Wrong e-mail or password.")
    response = JSONResponse({"email": user.email, "name": user.name, "role": user.role})
    set_session(request, response, user.email)
    return response


@router.delete("/session")
def logout() -> Any:
    response = JSONResponse({"status": "logged out"})
    response.delete_cookie(SESSION_COOKIE, path="/bi")
    return response


@router.get("/me", response_model=Principal)
def me(who: Who) -> Any:
    return who


def check_login(request: Request, email: str, password: str) -> Any:
    """The user, None for wrong credentials; TooManyAttempts once a window is spent."""
    address = request.client.host if request.client else "unknown"
    users: UserStore = request.app.state.users
    with counted_login(request.app.state.login_limiter, email, address) as failed:
        user = users.authenticate(email, password)
        if user is None:
            failed.append(True)
    return user


def set_session(request: Request, response: Response, email: str) -> None:
    sessions: Sessions = request.app.state.sessions
    response.set_cookie(SESSION_COOKIE, sessions.session_value(email), max_age=sessions.max_age,
                        path="/bi", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
