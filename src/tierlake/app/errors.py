"""Domain errors of the app tier and the one place that maps them to HTTP.

Every error response has the same body, ``{"error": {"code", "message",
"fields"}}``, and no error ever reaches a client as a traceback: an unexpected
exception is logged with its request id and answered with a 500 body that
carries that id.
"""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tierlake.errors import DatabaseUnavailableError, TierlakeError

log = structlog.get_logger(__name__)


class DomainError(TierlakeError):
    """A request the business rules refuse. ``code`` is stable for clients."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None,
                 fields: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or []
        self.headers = headers or {}


class NotFoundError(DomainError):
    status, code = 404, "not_found"


class ConflictError(DomainError):
    status, code = 409, "conflict"


class OutOfStockError(ConflictError):
    code = "out_of_stock"


class UnauthorizedError(DomainError):
    status, code = 401, "unauthorized"


class ForbiddenError(DomainError):
    status, code = 403, "forbidden"


class InvalidInputError(DomainError):
    status, code = 422, "invalid_input"


class TooManyRequestsError(DomainError):
    """A rate limit refused the request; answered with ``Retry-After`` (seconds)."""

    status, code = 429, "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.headers = {"Retry-After": str(max(1, retry_after))}


class ServiceUnavailableError(DomainError):
    """A dependency other than the database is down (e.g. the cache); try again shortly."""

    status, code = 503, "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


def error_body(code: str, message: str, fields: list[dict[str, str]] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or []}}


def _field_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _field_error(error: dict) -> dict[str, str]:
    """One pydantic error as ``{"field", "message", "code"}``; ``code`` is pydantic's error
    type (``missing``, ``string_too_short``, ``int_type``, ``value_error`` ...), so a client
    can word its own message."""
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")  # our validators' messages, as written
    return {"field": _field_path(error.get("loc", ())), "message": message,
            "code": str(error.get("type", "invalid"))}


def install_error_handlers(app: FastAPI, last_resort_headers: dict[str, str]) -> None:
    """``last_resort_headers``: what the middleware would add, for the 500 answer that
    Starlette sends from outside it."""
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return JSONResponse(error_body(exc.code, exc.message, exc.fields), exc.status,
                            {**headers, **exc.headers})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [_field_error(e) for e in exc.errors()]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        return JSONResponse(
            error_body("invalid_input", f"The request is invalid ({summary}). "
                       "Fix the fields listed and send it again.", fields),
            422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request",
                 413: "content_too_large"}
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = "No such endpoint; see /api/docs for the API."
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), message),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DatabaseUnavailableError)
    async def _db_down(_: Request, exc: DatabaseUnavailableError) -> JSONResponse:
        log.error("db.unavailable", error=str(exc))
        return JSONResponse(
            error_body("service_unavailable",
                       "The store's database is unavailable; try again in a moment."),
            503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request.headers.get("x-request-id", "")
        log.exception("request.failed", path=request.url.path, request_id=request_id)
        return JSONResponse(
            error_body("internal_error",
                       f"Something went wrong on our side (request id {request_id or 'n/a'}); "
                       "it has been logged. Try again, and report the id if it persists."),
            500,
            headers={**last_resort_headers, "X-Request-ID": request_id},
        )
