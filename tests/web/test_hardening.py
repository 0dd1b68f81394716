"""The web tier's hardening: security headers everywhere, a body cap, one request id across
the tiers, and 500s logged with their traceback behind a clean page."""

from __future__ import annotations

import httpx
import pytest
import structlog
from storefront import BASE, csrf_of, register, settings_for
from structlog.testing import capture_logs

from tierlake.web.main import create_app as create_web_app

pytestmark = pytest.mark.anyio
HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options",
           "referrer-policy")


@pytest.mark.parametrize("path", ["/", "/static/style.css", "/static/app.js", "/health",
                                  "/favicon.ico", "/robots.txt", "/no-such-page", "/login"])
async def test_every_response_carries_the_security_headers(store, path: str) -> None:
    r = await store.browser().get(path)
    assert r.status_code in (200, 404), path
    for name in HEADERS:
        assert r.headers.get(name), (path, name)
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


async def test_a_form_over_the_cap_gets_a_413_page_without_being_read(store) -> None:
    client = store.browser()
    await register(client)
    cart = await client.get("/cart")
    r = await client.post("/cart/add", data={"csrf_token": csrf_of(cart.text),
                                             "product_id": "1", "pad": "x" * (2 << 20)})
    assert r.status_code == 413
    assert 'data-testid="error-page"' in r.text and "larger than this store accepts" in r.text
    for name in HEADERS:
        assert r.headers.get(name), name

    async def chunks():  # type: ignore[no-untyped-def]
        yield f"csrf_token={csrf_of(cart.text)}&pad=".encode()
        for _ in range(1100):
            yield b"x" * 1024

    r = await client.post("/cart/add", content=chunks(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and 'data-testid="error-page"' in r.text


async def test_one_request_id_in_both_tiers_logs_and_the_response(store, catalogue) -> None:
    client = store.browser()
    with capture_logs() as logs:
        r = await client.get("/", headers={"X-Request-ID": "trace-0001-abcd"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-0001-abcd"
    web_lines = [e for e in logs if e["event"] == "web.request"]
    app_lines = [e for e in logs if e["event"] == "request"]  # the app tier's access log
    assert [e["request_id"] for e in web_lines] == ["trace-0001-abcd"]
    assert len(app_lines) >= 2  # the home page asks for categories and products
    assert {e["request_id"] for e in app_lines} == {"trace-0001-abcd"}
    # Without an id (or with a bad one), the web tier makes one and passes it on.
    with capture_logs() as logs:
        r = await client.get("/c/kitchen", headers={"X-Request-ID": "bad id\twith tab"})
    made = r.headers["x-request-id"]
    assert made != "bad id\twith tab" and len(made) == 32
    assert {e["request_id"] for e in logs if e["event"] in ("web.request", "request")} == {made}


class _BrokenTransport(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom: a bug in the web tier")


async def test_a_500_is_logged_with_its_traceback_and_the_page_stays_clean(tmp_path) -> None:
    app = create_web_app(settings_for(tmp_path), app_transport=_BrokenTransport())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                                 base_url=BASE) as client:
        # As configured for real: every line carries the context's request id.
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            r = await client.get("/", headers={"X-Request-ID": "trace-0500-abcd"})
    await app.state.api.aclose()
    assert r.status_code == 500
    assert 'data-testid="error-page"' in r.text and "trace-0500-abcd" in r.text
    assert "boom" not in r.text and "Traceback" not in r.text
    assert r.headers["x-request-id"] == "trace-0500-abcd"
    for name in HEADERS:
        assert r.headers.get(name), name
    (failed,) = [e for e in logs if e["event"] == "web.unhandled"]
    assert (failed["request_id"], failed["path"]) == ("trace-0500-abcd", "/")
    # What the JSON log pipeline writes for this line: the whole traceback.
    rendered = structlog.processors.format_exc_info(None, "error", dict(failed))
    assert "Traceback" in rendered["exception"] and "RuntimeError: boom" in rendered["exception"]
