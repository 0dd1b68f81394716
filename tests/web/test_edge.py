"""The edge layer every tier wraps itself in (tierlake.asgi.edge): request id, security
headers, access log and body cap in one ASGI middleware, on a bare Starlette app."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope
from structlog.testing import capture_logs

from tierlake.asgi.access_log import AccessLog
from tierlake.asgi.body_limit import BodyLimit, BodyTooLargeError
from tierlake.asgi.edge import EdgeMiddleware
from tierlake.asgi.request_id import current_request_id
from tierlake.asgi.security_headers import security_headers

pytestmark = pytest.mark.anyio


async def _echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"seen_id": request.headers.get("x-request-id"),
                         "ids": request.headers.getlist("x-request-id"),
                         "current": current_request_id(), "bytes": len(body)})


async def _own_policy(_: Request) -> Response:
    # a handler that sets its own CSP and (wrongly) its own request id
    return Response("ok", headers={"Content-Security-Policy": "default-src 'self'",
                                   "X-Request-ID": "not-the-one-0000"})


async def _boom(_: Request) -> Response:
    raise RuntimeError("boom")


def _too_large(_: Scope, exc: BodyTooLargeError) -> Response:
    return JSONResponse({"error": str(exc.detail)}, 413)


def _client() -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/echo", _echo, methods=["GET", "POST"]),
                            Route("/own", _own_policy), Route("/boom", _boom),
                            Route("/health", _own_policy)],
                    # the tier's own handler renders a 413 raised while the body is read
                    exception_handlers={BodyTooLargeError: lambda request, exc: _too_large(
                        request.scope, exc)},
                    middleware=[Middleware(EdgeMiddleware,
                                           headers=security_headers("default-src 'none'"),
                                           access_log=AccessLog(logger="edge.test"),
                                           body_limit=BodyLimit(1024, _too_large))])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://edge.test")


async def test_the_request_id_reaches_the_handler_its_context_the_response_and_the_log() -> None:
    with capture_logs() as logs:
        async with _client() as client:
            r = await client.get("/echo", headers={"X-Request-ID": "lb-abcd-0001"})
            made = await client.get("/echo", headers={"X-Request-ID": "bad id"})
    assert r.json() == {"seen_id": "lb-abcd-0001", "ids": ["lb-abcd-0001"],
                        "current": "lb-abcd-0001", "bytes": 0}
    assert r.headers["x-request-id"] == "lb-abcd-0001"
    new_id = made.headers["x-request-id"]
    assert new_id != "bad id" and len(new_id) == 32 and made.json()["ids"] == [new_id]
    assert current_request_id() is None  # reset once the request is over
    lines = [e for e in logs if e["event"] == "request"]
    assert [(e["path"], e["status"], e["request_id"]) for e in lines] == [
        ("/echo", 200, "lb-abcd-0001"), ("/echo", 200, new_id)]


async def test_security_headers_are_added_but_a_handlers_own_win() -> None:
    async with _client() as client:
        plain = await client.get("/echo")
        own = await client.get("/own", headers={"X-Request-ID": "lb-abcd-0002"})
    assert plain.headers["content-security-policy"] == "default-src 'none'"
    assert plain.headers["x-frame-options"] == "DENY"
    assert own.headers["content-security-policy"] == "default-src 'self'"
    assert own.headers["x-content-type-options"] == "nosniff"
    # one X-Request-ID, the request's: the handler's copy is replaced
    assert own.headers.get_list("x-request-id") == ["lb-abcd-0002"]


async def test_bodies_over_the_cap_are_413_declared_or_counted_and_logged() -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(3):
            yield b"x" * 600

    with capture_logs() as logs:
        async with _client() as client:
            small = await client.post("/echo", content=b"x" * 1000)
            declared = await client.post("/echo", content=b"x" * 2000)
            counted = await client.post("/echo", content=chunks())
    assert small.json()["bytes"] == 1000
    assert "content-length" not in counted.request.headers
    for r in (declared, counted):
        assert r.status_code == 413 and "1 KiB" in r.json()["error"]
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-request-id"]
    assert [e["status"] for e in logs if e["event"] == "request"] == [200, 413, 413]


async def test_a_crash_is_logged_as_a_500_and_quiet_paths_are_not_logged() -> None:
    with capture_logs() as logs:
        async with _client() as client:
            crashed = await client.get("/boom")
            await client.get("/health")
    assert crashed.status_code == 500
    assert [(e["path"], e["status"]) for e in logs if e["event"] == "request"] == [
        ("/boom", 500)]
