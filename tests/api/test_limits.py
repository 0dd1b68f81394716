"""Request limits and response hardening of the app tier: body cap, security headers."""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlsplit

import pytest

HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options",
           "referrer-policy")


def test_a_10_mb_body_is_a_413_with_the_error_body(api) -> None:
    shopper = api.register()
    r = api.client.post("/api/v1/orders", content=b"{" + b" " * (10 * 1024 * 1024) + b"}",
                        headers={**shopper, "Idempotency-Key": "big-body-0001",
                                 "Content-Type": "application/json"})
    assert r.status_code == 413
    error = r.json()["error"]
    assert error["code"] == "content_too_large" and "64 KiB" in error["message"]
    assert r.headers["x-request-id"]


def test_a_body_without_a_length_is_counted(api) -> None:
    shopper = api.register()

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"quantity": 1, "pad": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    r = api.client.put("/api/v1/cart/items/1", content=chunks(),
                       headers={**shopper, "Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert (r.status_code, r.json()["error"]["code"]) == (413, "content_too_large")


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read(
        api, server_url) -> None:
    """Send only the headers and 1 KiB of a declared 10 MB: the 413 arrives anyway."""
    shopper = api.register()
    url = urlsplit(server_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Idempotency-Key: declared-0001\r\nAuthorization: " + shopper["Authorization"].encode()
            + b"\r\nContent-Length: 10485760\r\n\r\n" + b" " * 1024)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed without answering: {reply!r}"
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_a_body_under_the_cap_still_works(api) -> None:
    shopper = api.register()
    p = api.product(stock=5)
    r = api.client.put(f"/api/v1/cart/items/{p['id']}", json={"quantity": 1}, headers=shopper)
    assert r.status_code == 200


@pytest.mark.parametrize("path", [
    "/api/v1/products", "/api/v1/no-such-thing", "/api/openapi.json", "/api/docs",
    "/api/docs/init.js", "/api/docs/static/swagger-ui.css", "/api/docs/static/swagger-ui-bundle.js",
])
def test_every_response_carries_the_security_headers(api, path: str) -> None:
    r = api.client.get(path)
    assert r.status_code in (200, 404), r.text[:200]
    for name in HEADERS:
        assert r.headers.get(name), (path, name)
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_the_request_id_is_kept_when_sane_and_replaced_when_not(api) -> None:
    r = api.client.get("/api/v1/categories", headers={"X-Request-ID": "lb-1234-abcd"})
    assert r.headers["x-request-id"] == "lb-1234-abcd"
    for bad in ("short", "a" * 200, "has spaces in it", "semi;colon;value"):
        r = api.client.get("/api/v1/categories", headers={"X-Request-ID": bad})
        assert r.headers["x-request-id"] != bad
        assert len(r.headers["x-request-id"]) == 32


@pytest.mark.browser
def test_the_docs_render_in_a_browser_under_their_policy(api, server_url) -> None:
    """Swagger UI draws the operations with every asset from this server and no CSP report."""
    executable = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else (
        shutil.which("chromium"))
    if not executable:
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{server_url}/api/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=20_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
        finally:
            browser.close()
    assert "/api/v1/orders" in " ".join(paths)
    assert problems == []
