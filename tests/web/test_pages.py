"""Store-front pages a shopper browses: they render real data from the app tier."""

from __future__ import annotations

import httpx
import pytest
from storefront import settings_for

from tierlake.web.main import create_app as create_web_app

pytestmark = pytest.mark.anyio


async def test_home_shows_categories_and_products_with_prices(store, catalogue) -> None:
    r = await store.browser().get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    for text in ("Kitchen", "Books", "Ceramic Mug", "$12.34", "Chef Knife", "$89.00"):
        assert text in page
    assert 'href="/c/kitchen"' in page and 'href="/p/ceramic-mug"' in page
    assert 'data-testid="product-card"' in page


async def test_category_page_lists_its_products_sorted(store, catalogue) -> None:
    r = await store.browser().get("/c/kitchen?sort=price_desc")
    assert r.status_code == 200
    assert "Chef Knife" in r.text and "Ceramic Mug" in r.text
    assert "Deep Work" not in r.text  # another category
    assert r.text.index("Chef Knife") < r.text.index("Ceramic Mug")
    r = await store.browser().get("/c/kitchen?sort=price_asc")
    assert r.text.index("Ceramic Mug") < r.text.index("Chef Knife")


async def test_category_page_pages_through_many_products(store) -> None:
    await store.category("bulk", "Bulk")
    for n in range(26):
        await store.product(f"Widget {n:02d}", 100 + n, category="bulk")
    client = store.browser()
    first = await client.get("/c/bulk?sort=name")
    assert "Widget 00" in first.text and "Widget 23" in first.text
    assert "Widget 24" not in first.text
    assert 'data-testid="page-next"' in first.text
    second = await client.get("/c/bulk?sort=name&page=2")
    assert "Widget 24" in second.text and "Widget 25" in second.text
    assert "Widget 00" not in second.text
    assert "26 products" in second.text


async def test_search_finds_products_and_says_when_nothing_matches(store, catalogue) -> None:
    client = store.browser()
    r = await client.get("/search", params={"q": "mug"})
    assert r.status_code == 200
    assert "Ceramic Mug" in r.text and "$12.34" in r.text
    assert "Chef Knife" not in r.text
    r = await client.get("/search", params={"q": "zeppelin"})
    assert r.status_code == 200
    assert 'data-testid="no-results"' in r.text and "zeppelin" in r.text
    r = await client.get("/search")
    assert r.status_code == 200 and "Type what you" in r.text


async def test_product_page_shows_price_stock_and_add_to_cart_form(store, catalogue) -> None:
    r = await store.browser().get("/p/ceramic-mug")
    assert r.status_code == 200
    page = r.text
    assert "Ceramic Mug" in page and "$12.34" in page and "A sturdy stoneware mug." in page
    assert "In stock" in page
    assert 'id="add-to-cart-form"' in page and 'name="csrf_token"' in page
    assert 'data-testid="add-to-cart"' in page
    r = await store.browser().get("/p/chef-knife")
    assert "Only 3 left" in r.text
    r = await store.browser().get("/p/deep-work")
    assert "Out of stock" in r.text and 'id="add-to-cart-form"' not in r.text


async def test_retired_product_page_says_it_is_no_longer_sold(store, catalogue) -> None:
    pid = catalogue["mug"]["id"]
    r = await store.api.delete(f"/api/v1/admin/products/{pid}", headers=store.admin)
    assert r.status_code == 204
    r = await store.browser().get("/p/ceramic-mug")
    assert r.status_code == 200
    assert "no longer sold" in r.text and 'id="add-to-cart-form"' not in r.text


async def test_unknown_pages_and_products_get_a_404_page(store, catalogue) -> None:
    client = store.browser()
    for path in ("/no/such/page", "/p/no-such-product", "/c/no-such-category"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert "Page not found" in r.text
        assert "Traceback" not in r.text
    r = await client.get("/static/nope.css")
    assert r.status_code == 404


async def test_health_static_assets_and_favicon(store) -> None:
    client = store.browser()
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert "set-cookie" not in r.headers
    css = await client.get("/static/style.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert "set-cookie" not in css.headers
    assert (await client.get("/static/app.js")).status_code == 200
    assert (await client.get("/favicon.ico")).status_code == 200


async def test_pages_load_no_external_assets(store, catalogue) -> None:
    r = await store.browser().get("/")
    assert "https://" not in r.text and "http://" not in r.text
    css = (await store.browser().get("/static/style.css")).text
    assert "http" not in css and "@import" not in css


async def test_app_tier_down_gives_a_friendly_503_page(tmp_path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    web = create_web_app(settings_for(tmp_path), app_transport=httpx.MockTransport(refuse))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(web),
                                 base_url="http://shop.test") as client:
        for path in ("/", "/p/ceramic-mug", "/search?q=mug", "/c/kitchen"):
            r = await client.get(path)
            assert r.status_code == 503, path
            assert "temporarily unavailable" in r.text
            assert "Traceback" not in r.text and "ConnectError" not in r.text
        assert (await client.get("/health")).status_code == 200
    await web.state.api.aclose()


async def test_unreachable_app_url_gives_503_not_a_traceback(tmp_path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = create_web_app(settings_for(tmp_path, app_url=f"http://127.0.0.1:{port}",
                                      app_timeout_seconds=2))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(web),
                                 base_url="http://shop.test") as client:
        r = await client.get("/")
        assert r.status_code == 503 and "temporarily unavailable" in r.text
    await web.state.api.aclose()


async def test_app_tier_500_and_503_become_the_unavailable_page(tmp_path) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"code": "database_unavailable",
                                                   "message": "db down", "fields": []}})

    web = create_web_app(settings_for(tmp_path), app_transport=httpx.MockTransport(broken))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(web),
                                 base_url="http://shop.test") as client:
        r = await client.get("/")
        assert r.status_code == 503 and "temporarily unavailable" in r.text
    await web.state.api.aclose()


async def test_user_input_is_escaped_and_pages_carry_security_headers(store, catalogue) -> None:
    r = await store.browser().get("/search", params={"q": "<script>alert(1)</script>"})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"


async def test_ready_reflects_the_app_tier(store, tmp_path) -> None:
    r = await store.browser().get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "ok"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    web = create_web_app(settings_for(tmp_path), app_transport=httpx.MockTransport(refuse))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(web),
                                 base_url="http://shop.test") as client:
        r = await client.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
    await web.state.api.aclose()
