"""The app tier (the Elastic Beanstalk backend of the seed design): the store's JSON API.

It is the only tier that opens the database. Versioned under ``/api/v1``;
OpenAPI at ``/api/openapi.json`` and interactive docs at ``/api/docs`` (Swagger
UI served from the package, no CDN).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

import swagger_ui
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from tierlake import __version__
from tierlake.app.errors import install_error_handlers
from tierlake.app.middleware import RequestLogMiddleware
from tierlake.app.ratelimit.login import login_limiter_for
from tierlake.app.routes import accounts, admin, cart, catalogue, health, orders
from tierlake.config import Settings, get_settings
from tierlake.data.db import Database

API_PREFIX = "/api/v1"
_SWAGGER_STATIC = Path(swagger_ui.__file__).parent / "static"


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    owns_db = db is None
    database = db or Database(settings.resolved_database_url, settings.database_pool_size)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
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
    )
    app.state.db = database
    app.state.settings = settings
    app.state.login_limiter = login_limiter_for(settings, database)
    install_error_handlers(app)
    for module in (health, catalogue, accounts, cart, orders, admin):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(health.root_router)  # /health and /ready, as on every tier
    app.mount("/api/docs/static", StaticFiles(directory=_SWAGGER_STATIC), name="swagger")

    @app.get("/api/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json", title="tierlake store API",
            swagger_js_url="/api/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/api/docs/static/swagger-ui.css",
            swagger_favicon_url="/api/docs/static/favicon-32x32.png",
        )

    app.add_middleware(RequestLogMiddleware)
    return app
