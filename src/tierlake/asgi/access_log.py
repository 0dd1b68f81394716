"""One access-log line per request, for every tier that logs its own (written by
:class:`tierlake.asgi.edge.EdgeMiddleware`).

Each line carries the request's ``X-Request-ID`` (the caller's, when a tier made the
call). Load balancers' health checks and static files would drown the log, so a tier names
the paths it keeps quiet.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from starlette.types import Scope


def _checks(path: str) -> bool:
    return path.endswith(("/health", "/ready"))


class AccessLog:
    def __init__(self, *, logger: str = "tierlake.access", event: str = "request",
                 quiet: Callable[[str], bool] = _checks) -> None:
        self.log = structlog.get_logger(logger)
        self.event = event
        self.quiet = quiet

    def write(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        path = scope.get("path", "")
        if not self.quiet(path):
            self.log.info(self.event, method=scope.get("method"), path=path, status=status,
                          ms=round(seconds * 1000, 1), request_id=request_id)
