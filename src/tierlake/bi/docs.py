"""The BI API's interactive docs at ``/bi/docs``: Swagger UI from the swagger-ui-py package.

As on the app tier: only this server's files, no inline script (the start-up script is
``/bi/docs/init.js``), its own Content-Security-Policy allowing Swagger UI's inline styles.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(swagger_ui.__file__).parent / "static"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
       "form-action 'self'; frame-ancestors 'none'")


def install_docs(app: FastAPI, prefix: str) -> None:
    app.mount(f"{prefix}/docs/static", StaticFiles(directory=STATIC), name="bi-swagger")
    page = (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{app.title}</title>"
        f"<link rel=\"stylesheet\" href=\"{prefix}/docs/static/swagger-ui.css\"></head>"
        "<body><div id=\"swagger-ui\"></div>"
        f"<script src=\"{prefix}/docs/static/swagger-ui-bundle.js\"></script>"
        f"<script src=\"{prefix}/docs/init.js\"></script></body></html>"
    )
    init = (  # validatorUrl null: the badge would fetch from validator.swagger.io
        f"window.ui = SwaggerUIBundle({{url: \"{prefix}/openapi.json\", dom_id: \"#swagger-ui\","
        " deepLinking: true, validatorUrl: null,"
        " presets: [SwaggerUIBundle.presets.apis]});\n"
    )

    @app.get(f"{prefix}/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})

    @app.get(f"{prefix}/docs/init.js", include_in_schema=False)
    def docs_init() -> Response:
        return Response(init, media_type="text/javascript")
