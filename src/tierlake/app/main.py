"""The app tier (the Elastic Beanstalk backend of the seed design): the store's JSON API.

It is the only tier that opens the database. Versioned under ``/api/v1``;
OpenAPI at ``/api/openapi.json`` and interactive docs at ``/api/docs`` (Swagger
UI served from the package, no CDN).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.middleware import Middleware
from starlette.types import Scope

from tierlake import __version__
from tierlake.app.cache import Cache, cache_for
from tierlake.app.docs import install_docs
from tierlake.app.errors import error_body, install_error_handlers
from tierlake.app.ratelimit.login import login_limiter_for
from tierlake.app.routes import accounts, admin, cart, catalogue, health, orders
from tierlake.asgi.access_log import AccessLog
from tierlake.asgi.body_limit import BodyLimit, BodyTooLargeError
from tierlake.asgi.edge import EdgeMiddleware
from tierlake.asgi.security_headers import security_headers
from tierlake.config import Settings, get_settings
from tierlake.data.db import Database

API_PREFIX = "/api/v1"
# JSON needs no sources at all; the docs page sets its own policy (app/docs.py).
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _too_large(_: Scope, exc: BodyTooLargeError) -> JSONResponse:
    return JSONResponse(error_body("content_too_large", str(exc.detail)), 413)


def create_app(settings: Settings | None = None, db: Database | None = None,
               cache: Cache | None = None) -> FastAPI:
    """The app tier. ``db`` and ``cache`` default to what ``settings`` describe (and are then
    closed with the app)."""
    settings = settings or get_settings()
    owns_db, owns_cache = db is None, cache is None
    database = db or Database.from_settings(settings)
    app_cache = cache or cache_for(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        # As many worker threads as pooled connections: with more (anyio's default is 40),
        # the threads beyond the pool opened and closed a connection per request (SQLite
        # ran its PRAGMAs, PyMySQL a handshake and an SSL context): half the CPU of a
        # catalogue page on MariaDB (docs/benchmarks.md).
        to_thread.current_default_thread_limiter().total_tokens = settings.database_pool_size
        yield
        if owns_cache:
            app_cache.close()
        if owns_db:
            database.dispose()

    app = FastAPI(
        title="tierlake store API",
        version=__version__,
        description="The app tier of tierlake's online store: catalogue, accounts, cart, "
        "checkout, orders and back office. Authenticate with `Authorization: Bearer <token>` "
        "from `/auth/login`. Errors share one body: `{\"error\": {\"code\", \"message\", "
        "\"fields\"}}`.",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        middleware=[
            Middleware(EdgeMiddleware, headers=security_headers(API_CSP), access_log=AccessLog(),
                       body_limit=BodyLimit(settings.limits.app_max_body_bytes, _too_large)),
        ],
    )
    app.state.db = database
    app.state.cache = app_cache
    app.state.settings = settings
    app.state.login_limiter = login_limiter_for(settings, database)
    install_error_handlers(app, security_headers(API_CSP))
    # FastAPI tries the routers in turn, each costing a match per request: the hot paths first
    # (checkout went from five routers tried to two; about 0.1 ms of CPU per request).
    for module in (catalogue, orders, cart, accounts, admin, health):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(health.root_router)  # /health and /ready, as on every tier
    install_docs(app)
    return app
