"""The web tier (the store front): HTML pages over the app tier's JSON API.

Stateless: it never opens the database and keeps nothing in memory between
requests except the clickstream buffer, so any number of instances can serve
any request behind a load balancer. Run it with ``create_app()`` under uvicorn.
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from tierlake.asgi.body_limit import BodyLimitMiddleware, BodyTooLargeError
from tierlake.asgi.edge import EdgeMiddleware
from tierlake.asgi.request_id import HEADER as REQUEST_ID_HEADER
from tierlake.asgi.security_headers import security_headers
from tierlake.config import Settings, get_settings
from tierlake.errors import AppTierUnavailableError
from tierlake.web import messages
from tierlake.web.clickstream import EventLog
from tierlake.web.client import ApiClient, ApiError
from tierlake.web.common import LoginRequired, login_url, redirect, return_path
from tierlake.web.csrf import CSRFMiddleware, CsrfSigner
from tierlake.web.middleware import WEB_CSP, WebContextMiddleware
from tierlake.web.render import Renderer, error_page
from tierlake.web.routes import account, admin, catalogue, shop
from tierlake.web.session import CookieCodec, WebContext
from tierlake.web.tracking import instance_source

log = structlog.get_logger("tierlake.web")
LAST_RESORT_HEADERS = security_headers(WEB_CSP)
STATIC = Path(__file__).parent / "static"


def _ensure_web(request: Request) -> None:
    """Error pages for requests the context middleware skipped still need a context."""
    if not hasattr(request.state, "web"):
        request.state.web = WebContext(visitor_id=uuid.uuid4().hex, session_id=uuid.uuid4().hex)


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("web.app_tier_unavailable", path=request.url.path, error=str(exc)[:300])
    _ensure_web(request)
    response = error_page(
        request, 503, "The store is temporarily unavailable",
        "We can't reach our shop systems right now. Please try again in a minute - "
        "your cart is safe.", action="Try again", action_url=request.url.path,
    )
    response.headers["Retry-After"] = "30"
    return response


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    _ensure_web(request)
    if exc.status == 401:
        request.state.web.logout()
        request.state.web.flash("Your session has expired. Please log in again.", "info")
        return redirect(login_url(return_path(request)))
    if exc.status == 403:
        return error_page(request, 403, "Access denied",
                          "You don't have permission to view this page.",
                          action="Go to the home page", action_url="/")
    if exc.status == 404:
        return _not_found_page(request)
    return error_page(request, exc.status if 400 <= exc.status < 500 else 400,
                      "Something went wrong", exc.message, action="Go back", action_url="/")


def _not_found_page(request: Request) -> Response:
    _ensure_web(request)
    return error_page(request, 404, "Page not found", messages.NOT_FOUND,
                      action="Browse the store", action_url="/")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/static/"):
        return PlainTextResponse(exc.detail or "Not Found", exc.status_code)
    if exc.status_code == 404:
        return _not_found_page(request)
    _ensure_web(request)
    return error_page(request, exc.status_code, "Something went wrong", str(exc.detail))


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    _ensure_web(request)
    request.state.web.flash("Please log in to continue.", "info")
    return redirect(login_url(exc.next_path))


async def _server_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log (structured, with the request id); the page stays clean.
    reference = getattr(request.state, "request_id", None)
    log.error("web.unhandled", path=request.url.path, request_id=reference, exc_info=exc)
    try:
        _ensure_web(request)
        response = error_page(request, 500, "Something went wrong",
                              "An unexpected error happened on our side. Please try again."
                              + (f" If it keeps happening, tell us this reference: {reference}."
                                 if reference else ""))
        # This handler answers outside the middleware (Starlette's last resort): add their headers.
        response.headers.update({**LAST_RESORT_HEADERS, REQUEST_ID_HEADER: reference or ""})
        return response
    except Exception:  # noqa: BLE001 - the last line of defence must not fail
        return PlainTextResponse("Something went wrong. Please try again.", 500)


def _too_large(scope: Scope, _: BodyTooLargeError) -> Response:
    request = Request(scope)
    _ensure_web(request)
    return error_page(request, 413, "That was more than we can take",
                      "What you sent is larger than this store accepts. Go back, shorten what "
                      "you entered and try again.", action="Go to the home page", action_url="/")


async def _health(_: Request) -> Response:
    """The process answers (no dependency touched): what a load balancer checks."""
    return JSONResponse({"status": "ok"})


async def _ready(request: Request) -> Response:
    """Ready when the app tier behind this web instance answers its own /ready. The body
    names the failed dependency, never its address (that goes to the log)."""
    try:
        await request.app.state.api.get("/ready")
    except (AppTierUnavailableError, ApiError) as exc:
        log.warning("web.not_ready", dependency="app", error=str(exc)[:300])
        return JSONResponse({"status": "unavailable", "checks": {"app": {
            "ok": False, "error": "the app tier is not ready; the web tier's log says why"}}},
            503)
    return JSONResponse({"status": "ok", "checks": {"app": {"ok": True}}})


async def _favicon(_: Request) -> Response:
    return FileResponse(STATIC / "logo.svg", media_type="image/svg+xml")


async def _robots(_: Request) -> Response:
    return PlainTextResponse("User-agent: *\nDisallow: /cart\nDisallow: /checkout\n"
                             "Disallow: /account\nDisallow: /admin\n")


def create_app(
    settings: Settings | None = None,
    app_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The store front. ``app_transport`` lets tests run the app tier in-process."""
    settings = settings or get_settings()
    secret = settings.secret_key.get_secret_value()
    csrf = CsrfSigner(secret)
    renderer = Renderer(csrf)
    api = ApiClient(settings.resolved_app_url, settings.app_timeout_seconds, app_transport)
    event_log = EventLog(
        settings.resolved_events_dir,
        flush_seconds=settings.events.flush_seconds,
        flush_records=settings.events.flush_records,
        source=instance_source(),
    )

    async def csrf_failed(request: Request) -> Response:
        _ensure_web(request)
        return error_page(
            request, 403, "This form has expired",
            "For your security we couldn't accept this form. Please reload the page and "
            "try again.", action="Reload the page", action_url=return_path(request),
        )

    @asynccontextmanager
    async def lifespan(_: Starlette):
        event_log.start()
        log.info("web.started", app_url=settings.resolved_app_url,
                 events_dir=str(settings.resolved_events_dir))
        try:
            yield
        finally:
            event_log.close()
            await api.aclose()

    routes: list[Any] = [
        Route("/health", _health),
        Route("/ready", _ready),
        Route("/favicon.ico", _favicon),
        Route("/robots.txt", _robots),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        *catalogue.routes,
        *account.routes,
        *shop.routes,
        *admin.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[  # outermost first
            Middleware(EdgeMiddleware, headers=security_headers(WEB_CSP)),
            Middleware(WebContextMiddleware, codec=CookieCodec(secret), event_log=event_log),
            Middleware(BodyLimitMiddleware, max_bytes=settings.limits.web_max_body_bytes,
                       too_large=_too_large),
            Middleware(CSRFMiddleware, signer=csrf, on_failure=csrf_failed),
        ],
        exception_handlers={
            Exception: _server_error,
            HTTPException: _http_error,
            ApiError: _api_error,
            AppTierUnavailableError: _unavailable,
            LoginRequired: _login_required,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api = api
    app.state.renderer = renderer
    app.state.csrf = csrf
    app.state.event_log = event_log
    return app
