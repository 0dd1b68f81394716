"""Liveness and readiness of the app tier.

``/health``: the process answers (no dependency touched), for load balancers.
``/ready``: the dependencies answer (the database), 503 when one does not, for operators.
The cache is reported too but never makes the tier unready: without Redis the app serves
from the database (``"cache": {"ok": false, "status": "degraded (redis down)"}``).
Neither reveals configuration: no URL, no path, no backend name; a failure's detail goes to
the log, the body says which dependency failed.
``/metrics``: the app tier's own metrics in Prometheus' text format (the cache's, see
:mod:`tierlake.app.cache`).
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest
from sqlalchemy import text

from tierlake.app.deps import DB, AppCache
from tierlake.ops.prometheus import CONTENT_TYPE

log = structlog.get_logger(__name__)
router = APIRouter(tags=["health"])
# The same two checks at the root, where every tier answers them (not in the API schema).
root_router = APIRouter(include_in_schema=False)


@router.get("/health")
@root_router.get("/health")
def health() -> dict[str, str]:
    """The process is up (does not touch the database)."""
    return {"status": "ok"}


@router.get("/ready")
@root_router.get("/ready")
def ready(db: DB, cache: AppCache) -> JSONResponse:
    """The process can serve: the database answers. 503 otherwise. The cache's state is
    shown, and a cache that is down leaves the tier ready (degraded)."""
    cache_state = cache.check()
    try:
        db.run(lambda conn: conn.execute(text("SELECT 1")))
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; detail to the log
        log.warning("app.not_ready", dependency="database", error=str(exc)[:500])
        return JSONResponse({"status": "unavailable", "checks": {"database": {
            "ok": False, "error": f"the database did not answer ({type(exc).__name__}); "
                                  "the app tier's log says why"}, "cache": cache_state}}, 503)
    return JSONResponse({"status": "ok", "checks": {"database": {"ok": True},
                                                    "cache": cache_state}})


@root_router.get("/metrics")
def metrics(cache: AppCache) -> Response:
    """The app tier's metrics for Prometheus (the cache's hits, misses, latency ...)."""
    return Response(generate_latest(cache.registry), media_type=CONTENT_TYPE)
