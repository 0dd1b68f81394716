"""Liveness and readiness, for load-balancer health checks."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from tierlake.app.deps import DB
from tierlake.data.db import safe_url

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process is up (does not touch the database)."""
    return {"status": "ok"}


@router.get("/ready")
def ready(db: DB) -> JSONResponse:
    """The process can serve: the database answers. 503 otherwise."""
    try:
        with db.read() as s:
            s.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready"; the reason goes in the body
        return JSONResponse({"status": "unavailable", "database": db.backend,
                             "error": f"{type(exc).__name__}: {str(exc)[:200]}"}, 503)
    return JSONResponse({"status": "ok", "database": db.backend, "url": safe_url(db.url)})
