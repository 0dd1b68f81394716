"""The BI tier's ASGI app (QuickSight's console and dashboards): pages and a JSON API.

Every route lives under ``/bi`` (the internet-facing load balancer forwards ``/bi/...``
unchanged, as an ALB path rule does not strip the path), on the BI tier's own port too;
``/`` redirects to ``/bi/``, and ``/health`` / ``/ready`` answer at the root for target
group health checks. The JSON API's docs are FastAPI's, at ``/bi/docs``, served from the
installed swagger-ui package (no CDN), like Plotly at ``/bi/static/plotly.min.js``.

The app holds no state of its own between requests beyond caches: users and rules are in
the BI database, sessions in signed cookies, data in the lake, so any number of instances
can serve any request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import plotly
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.types import Scope

from tierlake import __version__
from tierlake.asgi.access_log import AccessLog
from tierlake.asgi.body_limit import BodyLimit, BodyTooLargeError
from tierlake.asgi.edge import EdgeMiddleware
from tierlake.asgi.security_headers import security_headers
from tierlake.bi import api, docs, pages, report_routes
from tierlake.bi.auth import (
    Forbidden,
    LoginRequired,
    Sessions,
    TooManyAttempts,
    csrf_cookie_value,
    login_limiter_for,
)
from tierlake.bi.middleware import CsrfCookieMiddleware, quiet
from tierlake.bi.model import Engine
from tierlake.bi.users import UserStore
from tierlake.config import Settings, get_settings

log = structlog.get_logger("tierlake.bi")
PREFIX = "/bi"
HERE = Path(__file__).parent
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
# Every asset comes from this tier. Plotly adds <style> elements and inline styles.
BI_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
          "script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
          "base-uri 'self'; object-src 'none'")
MAX_BODY = 256 * 1024  # a SQL text or a login form; nothing larger is sent here


def _error_json(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(f"{PREFIX}/api/")


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    if _is_api(request):
        return _error_json("not_authenticated", "Log in first: POST /bi/api/session with "
                           "your BI e-mail and password, or open /bi/login.", 401)
    from urllib.parse import quote

    return RedirectResponse(f"{PREFIX}/login?next={quote(exc.next_path, safe='')}", 303)


async def _forbidden(request: Request, exc: Exception) -> Response:
    if _is_api(request):
        return _error_json("forbidden", str(exc), 403)
    return pages.message_page(request, 403, "Not for your role", str(exc))


async def _too_many(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TooManyAttempts)
    headers = {"Retry-After": str(exc.retry_after)}
    if _is_api(request):
        response: Response = _error_json("too_many_attempts", str(exc), 429)
    else:
        response = pages.login_page(request, error=str(exc), status=429)
    response.headers.update(headers)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = str(exc.detail)
    if _is_api(request) or not request.url.path.startswith(PREFIX):
        return _error_json("not_found" if exc.status_code == 404 else "http_error", detail,
                           exc.status_code)
    title = "Page not found" if exc.status_code == 404 else "That did not work"
    return pages.message_page(request, exc.status_code, title, detail)


async def _server_error(request: Request, exc: Exception) -> Response:
    reference = getattr(request.state, "request_id", None)
    log.error("bi.unhandled", path=request.url.path, request_id=reference, exc_info=exc)
    text = ("Something went wrong on our side. Try again; if it keeps happening, give the "
            f"administrator this reference: {reference}.")
    response = _error_json("internal_error", text, 500)
    response.headers.update(security_headers(BI_CSP))
    return response


def _too_large(_: Scope, exc: BodyTooLargeError) -> Response:
    return _error_json("content_too_large", str(exc.detail), 413)


def _curated_readable(lake_url: str) -> tuple[bool, str]:
    """Ready when the curated zone lists at least one Delta table that opens."""
    from tierlake.lake.store import Lake

    try:
        lake = Lake(lake_url)
        fs = lake.filesystem()
        base = f"{lake.root.removeprefix('s3://')}/curated"
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base)]
        tables = [n for n in names if not n.startswith(("_", ".")) and fs.exists(
            f"{base}/{n}/_delta_log")]
        if not tables:
            return False, "the curated zone has no table yet; run `tierlake pipeline run`"
        if lake.table("curated", tables[0]) is None:
            return False, f"curated table {tables[0]} cannot be opened"
        return True, f"{len(tables)} curated tables"
    except FileNotFoundError:
        return False, "the lake has no curated zone yet; run `tierlake pipeline run`"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the log says why
        log.warning("bi.not_ready", error=str(exc)[:300])
        return False, "the lake cannot be read; the BI tier's log says why"


def _default_engine(settings: Settings) -> Engine:
    from tierlake.bi.engine import BiEngine

    engine: Engine = BiEngine.from_settings(settings)
    return engine


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The BI tier. ``engine`` defaults to :class:`tierlake.bi.engine.BiEngine` over the
    settings' lake; the tier registry passes only the settings."""
    settings = settings or get_settings()
    users = UserStore(settings.resolved_bi_database_url)
    sessions = Sessions(settings.secret_key.get_secret_value(), settings.bi.session_hours)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(users.create_tables)
        made = await asyncio.to_thread(users.ensure_admin, settings.admin_email,
                                       settings.admin_password.get_secret_value())
        if made:
            log.info("bi.first_admin_created", email=settings.admin_email)
        log.info("bi.started", lake=settings.resolved_lake_url)
        try:
            yield
        finally:
            users.dispose()  # the engine stays open: a test client may start the app again

    app = FastAPI(
        title="tierlake BI API",
        version=__version__,
        description="The BI tier's JSON API: dashboards, each visual's data (JSON and CSV) "
        "under the page's filters, drill-to-detail, SQL over the curated tables and the lake's "
        "freshness. Log in with `POST /bi/api/session`; the session is a cookie. Errors share "
        "one body: `{\"error\": {\"code\", \"message\"}}`.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        middleware=[  # outermost first
            Middleware(EdgeMiddleware, headers=security_headers(BI_CSP),
                       access_log=AccessLog(logger="tierlake.bi", event="bi.request",
                                            quiet=quiet),
                       body_limit=BodyLimit(MAX_BODY, _too_large)),
            Middleware(CsrfCookieMiddleware, cookie_path=PREFIX),
        ],
        exception_handlers={
            LoginRequired: _login_required,
            Forbidden: _forbidden,
            TooManyAttempts: _too_many,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    # Every template (bi-reports' pages too) knows who is looking, for the navigation.
    templates = Jinja2Templates(directory=str(HERE / "templates"),
                                context_processors=[_principal_context])
    templates.env.globals["csrf_token"] = _csrf_token_for(sessions)
    templates.env.globals["prefix"] = PREFIX
    app.state.settings = settings
    app.state.engine = engine if engine is not None else _default_engine(settings)
    app.state.templates = templates
    app.state.users = users
    app.state.sessions = sessions
    app.state.login_limiter = login_limiter_for(settings)

    @app.get("/health", include_in_schema=False)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        ok, detail = await asyncio.to_thread(_curated_readable, settings.resolved_lake_url)
        body = {"status": "ok" if ok else "unavailable",
                "checks": {"lake": {"ok": ok, "detail": detail}}}
        return JSONResponse(body, 200 if ok else 503)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", 307)

    @app.get(PREFIX, include_in_schema=False)
    async def bare() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", 307)

    @app.get(f"{PREFIX}/static/plotly.min.js", include_in_schema=False)
    async def plotly_js() -> Response:
        from fastapi.responses import FileResponse

        return FileResponse(PLOTLY_JS, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="bi-static")
    docs.install_docs(app, PREFIX)
    app.include_router(api.router, prefix=f"{PREFIX}/api")
    app.include_router(pages.router, prefix=PREFIX)
    app.include_router(report_routes.router, prefix=PREFIX)
    return app


def _principal_context(request: Request) -> dict[str, Any]:
    return {"principal": getattr(request.state, "principal", None)}


def _csrf_token_for(sessions: Sessions) -> Any:
    def csrf_token(request: Request) -> str:
        return sessions.csrf_token(csrf_cookie_value(request))

    return csrf_token
