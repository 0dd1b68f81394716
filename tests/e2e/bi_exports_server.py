"""The BI app with the report routes included, served by uvicorn on the port given: what
`tierlake serve bi` runs once the lead has included ``report_routes.router`` in the app.
Settings come from the environment (``TIERLAKE_*``), as for every tier."""

from __future__ import annotations

import sys

import uvicorn

from tierlake.bi import report_routes
from tierlake.bi.app import create_app
from tierlake.config import get_settings

if __name__ == "__main__":
    app = create_app(get_settings())
    if not any(getattr(r, "path", "") == "/bi/alerts" for r in app.routes):
        app.include_router(report_routes.router, prefix="/bi")
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
