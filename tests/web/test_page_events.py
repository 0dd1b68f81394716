"""Cookies and the clickstream the store front records for every page view and action."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from storefront import (
    csrf_of,
    idempotency_key_of,
    register,
    submit,
)

from tierlake.web.session import SESSION_COOKIE, CookieCodec

pytestmark = pytest.mark.anyio
SECRET = "web-test-secret"
SHIPPING = {"name": "Grace Hopper", "address": "12 Analytical Row", "city": "London",
            "postcode": "N1 7AA", "country": "GB"}


def session_of(client) -> str:  # type: ignore[no-untyped-def]
    return CookieCodec(SECRET).loads(SESSION_COOKIE, client.cookies.get(SESSION_COOKIE), 1800)


async def test_cookies_are_signed_httponly_and_samesite_lax(store, catalogue) -> None:
    client = store.browser()
    r = await client.get("/")
    cookies = r.headers.get_list("set-cookie")
    names = {c.split("=", 1)[0] for c in cookies}
    assert {"tl_visitor", "tl_session"} <= names
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    session = next(c for c in cookies if c.startswith("tl_session="))
    assert "Max-Age=1800" in session
    visitor = next(c for c in cookies if c.startswith("tl_visitor="))
    assert "Max-Age=63072000" in visitor
    page = await client.get("/register")
    r = await client.post("/register", data={
        "csrf_token": csrf_of(page.text), "email": "c@example.com", "password": "password-123",
        "name": "Cookie Monster"})
    auth = next(c for c in r.headers.get_list("set-cookie") if c.startswith("tl_auth="))
    assert "HttpOnly" in auth and "SameSite=Lax" in auth
    assert "password" not in auth


async def test_session_id_rolls_and_expires_after_30_idle_minutes(store) -> None:
    client = store.browser()
    await client.get("/login")
    first = session_of(client)
    await client.get("/login")
    assert session_of(client) == first  # same session while active
    visitor = client.cookies.get("tl_visitor")

    class HalfHourAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 31 * 60

    stale = URLSafeTimedSerializer(SECRET, salt=f"tierlake.web.cookie.{SESSION_COOKIE}",
                                   signer=HalfHourAgo).dumps(first)
    client.cookies.set(SESSION_COOKIE, stale, domain="shop.test")
    await client.get("/login")
    assert session_of(client) != first  # a new session after 30 idle minutes...
    assert CookieCodec(SECRET).loads("tl_visitor", client.cookies.get("tl_visitor"),
                                     10**8) == CookieCodec(SECRET).loads(
        "tl_visitor", visitor, 10**8)  # ...for the same visitor


async def test_page_views_and_actions_land_in_the_clickstream(store, catalogue) -> None:
    client = store.browser()
    mug = catalogue["mug"]
    await client.get("/")
    await client.get("/c/kitchen")
    await client.get("/p/ceramic-mug", headers={"referer": "http://shop.test/c/kitchen"})
    await client.get("/search", params={"q": "mug"})
    await client.get("/static/style.css")
    await client.get("/health")
    anonymous_session = session_of(client)
    await register(client)
    await submit(client, "/p/ceramic-mug", "/cart/add",
                 {"product_id": mug["id"], "quantity": 2, "return_to": "/p/ceramic-mug"})
    await submit(client, "/cart", f"/cart/items/{mug['id']}", {"quantity": 1})
    checkout = await client.get("/checkout")
    form = {"csrf_token": csrf_of(checkout.text),
            "idempotency_key": idempotency_key_of(checkout.text), **SHIPPING}
    placed = await client.post("/checkout", data=form)
    await client.post("/checkout", data=form)  # double submit: still one purchase
    order_id = int(placed.headers["location"].split("/")[2].split("?")[0])
    await client.get(placed.headers["location"])

    events = store.events()
    assert events, "nothing was delivered"
    paths = [e["path"] for e in events]
    assert not [p for p in paths if p.startswith("/static") or p == "/health"]
    assert {e["session_id"] for e in events} == {anonymous_session}
    assert len({e["visitor_id"] for e in events}) == 1
    assert {e["source"] for e in events} == {store.web_app.state.event_log.source}

    views: dict[str, dict] = {}
    for e in events:  # the first view of each page
        if e["event_type"] == "page_view":
            views.setdefault(e["path"], e)
    assert views["/"]["customer_id"] is None and views["/"]["status"] == 200
    assert views["/c/kitchen"]["category"] == "kitchen"
    product_view = views["/p/ceramic-mug"]
    assert product_view["product_id"] == mug["id"] and product_view["category"] == "kitchen"
    assert product_view["referrer"] == "http://shop.test/c/kitchen"
    assert views["/search"]["query"] == "mug"
    assert views[f"/orders/{order_id}"]["customer_id"] is not None

    kinds = [e["event_type"] for e in events]
    search = next(e for e in events if e["event_type"] == "search")
    assert search["query"] == "mug"
    add = next(e for e in events if e["event_type"] == "add_to_cart")
    assert add["product_id"] == mug["id"] and add["category"] == "kitchen"
    assert add["method"] == "POST" and add["customer_id"] is not None
    remove = next(e for e in events if e["event_type"] == "remove_from_cart")
    assert remove["product_id"] == mug["id"]
    assert kinds.count("checkout") == 1
    purchases = [e for e in events if e["event_type"] == "purchase"]
    assert len(purchases) == 1 and purchases[0]["order_id"] == order_id


async def test_redirects_and_failed_posts_are_not_page_views(store, catalogue) -> None:
    client = store.browser()
    await client.get("/cart")  # redirect to login
    await client.post("/cart/add", data={"product_id": 1})  # CSRF failure
    events = store.events()
    assert [e for e in events if e["path"] == "/cart"] == []
    assert [e["event_type"] for e in events if e["path"] == "/cart/add"] == []


def test_the_web_tier_never_imports_the_database() -> None:
    code = ("import sys, tierlake.web.main; "
            "bad = [m for m in sys.modules if m.startswith(('sqlalchemy', 'tierlake.data', "
            "'tierlake.app'))]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
