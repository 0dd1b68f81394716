"""Shopping through the store front: CSRF, login redirects, cart, checkout, orders."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from storefront import (
    csrf_of,
    idempotency_key_of,
    login,
    register,
    submit,
)

from tierlake.data.schema import Cart, utcnow

pytestmark = pytest.mark.anyio
SHIPPING = {"name": "Grace Hopper", "address": "12 Analytical Row", "city": "London",
            "postcode": "N1 7AA", "country": "GB"}


async def add_to_cart(client, product: dict, quantity: int = 1):  # type: ignore[no-untyped-def]
    return await submit(client, f"/p/{product['slug']}", "/cart/add", {
        "product_id": product["id"], "quantity": quantity,
        "return_to": f"/p/{product['slug']}"})


async def test_post_without_csrf_token_is_refused_with_403(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    mug = catalogue["mug"]
    r = await client.post("/cart/add", data={"product_id": mug["id"], "quantity": 1})
    assert r.status_code == 403
    assert "reload the page" in r.text.lower()
    r = await client.post("/cart/add", data={"product_id": mug["id"], "csrf_token": "forged"})
    assert r.status_code == 403
    cart = await client.get("/cart")
    assert 'data-testid="cart-empty"' in cart.text  # nothing was added


async def test_csrf_token_is_bound_to_the_visitor(store, catalogue) -> None:
    alice, mallory = store.browser(), store.browser()
    await register(alice)
    stolen = csrf_of((await mallory.get("/login")).text)  # a token issued to someone else
    r = await alice.post("/cart/add", data={"csrf_token": stolen,
                                            "product_id": catalogue["mug"]["id"]})
    assert r.status_code == 403
    r = await add_to_cart(alice, catalogue["mug"])  # her own token works
    assert r.status_code == 303 and r.headers["location"] == "/cart"


async def test_logged_out_add_to_cart_redirects_to_login_then_back(store, catalogue) -> None:
    client = store.browser()
    email = await register(store.browser())
    r = await add_to_cart(client, catalogue["mug"])
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/p/ceramic-mug"
    page = await client.get(r.headers["location"])
    assert 'name="next" value="/p/ceramic-mug"' in page.text
    r = await login(client, email, next_path="/p/ceramic-mug")
    assert r.status_code == 303 and r.headers["location"] == "/p/ceramic-mug"


@pytest.mark.parametrize("evil", [
    "https://evil.example", "//evil.example/x", "/\\evil.example", "https:/evil.example",
    "javascript:alert(1)", "evil.example",
])
async def test_login_refuses_open_redirects(store, evil: str) -> None:
    email = await register(store.browser())
    client = store.browser()
    page = await client.get("/login", params={"next": evil})
    assert "evil.example" not in page.text
    r = await login(client, email, next_path=evil)
    assert r.status_code == 303
    assert r.headers["location"] == "/"


async def test_pages_that_need_login_redirect_with_next(store) -> None:
    client = store.browser()
    for path in ("/cart", "/checkout", "/orders", "/orders/1", "/account", "/admin"):
        r = await client.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"] == f"/login?next={path}"


async def test_register_add_to_cart_checkout_and_see_the_order(store, catalogue) -> None:
    client = store.browser()
    await register(client, name="Grace Hopper")
    home = await client.get("/")
    assert "Grace" in home.text and 'data-testid="nav-logout"' in home.text
    r = await add_to_cart(client, catalogue["knife"], quantity=2)
    assert r.status_code == 303 and r.headers["location"] == "/cart"
    await add_to_cart(client, catalogue["mug"])
    cart = await client.get("/cart")
    assert cart.status_code == 200
    assert "Added Ceramic Mug to your cart." in cart.text
    assert "Chef Knife" in cart.text and "$178.00" in cart.text and "$190.34" in cart.text
    assert 'data-testid="cart-count"' in cart.text
    checkout = await client.get("/checkout")
    assert checkout.status_code == 200 and "$190.34" in checkout.text
    key = idempotency_key_of(checkout.text)
    r = await client.post("/checkout", data={"csrf_token": csrf_of(checkout.text),
                                             "idempotency_key": key, **SHIPPING})
    assert r.status_code == 303
    match = re.fullmatch(r"/orders/(\d+)\?placed=1", r.headers["location"])
    assert match, r.headers["location"]
    order = await client.get(r.headers["location"])
    assert order.status_code == 200
    assert "Thank you" in order.text and f"#{match.group(1)}" in order.text
    assert "Chef Knife" in order.text and "Ceramic Mug" in order.text and "$190.34" in order.text
    assert "12 Analytical Row" in order.text
    history = await client.get("/orders")
    assert f'href="/orders/{match.group(1)}"' in history.text
    cart = await client.get("/cart")
    assert 'data-testid="cart-empty"' in cart.text
    plain = await client.get(f"/orders/{match.group(1)}")
    assert "Thank you" not in plain.text


async def test_double_submitted_checkout_creates_one_order(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    await add_to_cart(client, catalogue["mug"], quantity=2)
    checkout = await client.get("/checkout")
    form = {"csrf_token": csrf_of(checkout.text),
            "idempotency_key": idempotency_key_of(checkout.text), **SHIPPING}
    first = await client.post("/checkout", data=form)
    second = await client.post("/checkout", data=form)  # the impatient double click
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    history = await client.get("/orders")
    assert history.text.count('data-testid="order-row"') == 1
    stock = (await store.api.get(f"/api/v1/products/{catalogue['mug']['id']}")).json()
    assert stock["stock"] == 8  # taken once


async def test_each_checkout_page_gets_a_new_idempotency_key(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    await add_to_cart(client, catalogue["mug"])
    one = idempotency_key_of((await client.get("/checkout")).text)
    two = idempotency_key_of((await client.get("/checkout")).text)
    assert one != two


async def test_checkout_out_of_stock_goes_back_to_cart_with_message(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    await add_to_cart(client, catalogue["knife"], quantity=3)
    checkout = await client.get("/checkout")
    await store.set_stock(catalogue["knife"]["id"], 1)  # someone else bought them
    r = await client.post("/checkout", data={
        "csrf_token": csrf_of(checkout.text),
        "idempotency_key": idempotency_key_of(checkout.text), **SHIPPING})
    assert r.status_code == 303 and r.headers["location"] == "/cart"
    cart = await client.get("/cart")
    assert "Chef Knife" in cart.text
    assert 'data-testid="flash"' in cart.text and "flash-error" in cart.text
    assert (await client.get("/orders")).text.count('data-testid="order-row"') == 0


async def test_checkout_form_errors_are_shown_next_to_fields(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    await add_to_cart(client, catalogue["mug"])
    checkout = await client.get("/checkout")
    r = await client.post("/checkout", data={
        "csrf_token": csrf_of(checkout.text),
        "idempotency_key": idempotency_key_of(checkout.text),
        **SHIPPING, "city": "", "address": "1 Kept Street"})
    assert r.status_code == 422
    assert 'data-testid="error-city"' in r.text
    assert 'value="1 Kept Street"' in r.text  # the user's input is kept
    assert (await client.get("/orders")).text.count('data-testid="order-row"') == 0


async def test_empty_cart_checkout_redirects_to_cart(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    r = await client.get("/checkout")
    assert r.status_code == 303 and r.headers["location"] == "/cart"


async def test_update_quantity_and_remove_from_cart(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    mug, knife = catalogue["mug"], catalogue["knife"]
    await add_to_cart(client, mug)
    await add_to_cart(client, knife)
    r = await submit(client, "/cart", f"/cart/items/{mug['id']}", {"quantity": 4})
    assert r.status_code == 303
    cart = await client.get("/cart")
    assert 'value="4"' in cart.text and "$49.36" in cart.text
    r = await submit(client, "/cart", f"/cart/items/{knife['id']}/remove", {})
    assert r.status_code == 303
    cart = await client.get("/cart")
    assert "Removed Chef Knife" in cart.text
    assert 'data-testid="cart-item"' in cart.text and "$89.00" not in cart.text
    r = await submit(client, "/cart", f"/cart/items/{mug['id']}", {"quantity": 0})
    assert 'data-testid="cart-empty"' in (await client.get("/cart")).text


async def test_a_cart_held_by_a_checkout_is_not_changed_and_the_page_says_so(  # type: ignore[no-untyped-def]
        store, catalogue, db) -> None:
    """While a checkout holds the cart (MariaDB, PostgreSQL commit the hold first; here it is
    set by hand), the API refuses changes with 409: the page says so, never "Removed"."""
    client = store.browser()
    await register(client)
    mug = catalogue["mug"]
    await add_to_cart(client, mug)
    with db.session() as s:
        s.execute(update(Cart).values(checkout_key="held-elsewhere-1",
                                      checkout_fingerprint="x" * 64,
                                      checkout_expires_at=utcnow() + timedelta(seconds=60)))
    for path, form in ((f"/cart/items/{mug['id']}/remove", {}),
                       (f"/cart/items/{mug['id']}", {"quantity": 3})):
        r = await submit(client, "/cart", path, form)
        assert r.status_code == 303
        page = (await client.get("/cart")).text
        assert "flash-error" in page and "being checked out" in page, path
        assert "Removed" not in page and 'data-testid="cart-item"' in page
    with db.session() as s:
        s.execute(update(Cart).values(checkout_key=None, checkout_fingerprint=None,
                                      checkout_expires_at=None))
    await submit(client, "/cart", f"/cart/items/{mug['id']}/remove", {})
    assert "Removed Ceramic Mug" in (await client.get("/cart")).text


async def test_adding_more_than_in_stock_shows_a_message(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    r = await add_to_cart(client, catalogue["knife"], quantity=5)
    assert r.status_code == 303 and r.headers["location"] == "/p/chef-knife"
    page = await client.get("/p/chef-knife")
    assert "flash-error" in page.text


async def test_other_customers_orders_are_not_found(store, catalogue) -> None:
    alice, bob = store.browser(), store.browser()
    await register(alice)
    await register(bob)
    await add_to_cart(alice, catalogue["mug"])
    checkout = await alice.get("/checkout")
    r = await alice.post("/checkout", data={
        "csrf_token": csrf_of(checkout.text),
        "idempotency_key": idempotency_key_of(checkout.text), **SHIPPING})
    path = r.headers["location"].split("?")[0]
    assert (await bob.get(path)).status_code == 404


async def test_any_web_instance_can_serve_any_request(store, catalogue) -> None:
    """The web tier is stateless: cookies and CSRF tokens from one instance work on another."""
    one = store.browser()
    await register(one, name="Katherine Johnson")
    page = await one.get("/p/ceramic-mug")
    other = store.another_instance()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(other), base_url="http://shop.test",
                                 cookies=one.cookies) as two:
        home = await two.get("/")
        assert "Katherine" in home.text
        r = await two.post("/cart/add", data={
            "csrf_token": csrf_of(page.text), "product_id": catalogue["mug"]["id"],
            "quantity": 1})
        assert r.status_code == 303 and r.headers["location"] == "/cart"
        cart = await two.get("/cart")
        assert "Ceramic Mug" in cart.text


async def test_a_stale_checkout_form_for_a_changed_cart_places_nothing(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    await add_to_cart(client, catalogue["mug"])
    checkout = await client.get("/checkout")
    form = {"csrf_token": csrf_of(checkout.text),
            "idempotency_key": idempotency_key_of(checkout.text), **SHIPPING}
    assert (await client.post("/checkout", data=form)).status_code == 303
    await add_to_cart(client, catalogue["knife"])
    r = await client.post("/checkout", data=form)  # the old page, sent again (Back, resubmit)
    assert r.status_code == 303 and r.headers["location"] == "/checkout"
    page = await client.get("/checkout")
    assert "Your cart changed since this checkout page was opened" in page.text
    assert (await client.get("/orders")).text.count('data-testid="order-row"') == 1


async def test_two_submits_at_once_show_one_order(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    await add_to_cart(client, catalogue["mug"])
    checkout = await client.get("/checkout")
    form = {"csrf_token": csrf_of(checkout.text),
            "idempotency_key": idempotency_key_of(checkout.text), **SHIPPING}
    first, second = await asyncio.gather(client.post("/checkout", data=form),
                                         client.post("/checkout", data=form))
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert first.headers["location"].startswith("/orders/")
    assert (await client.get("/orders")).text.count('data-testid="order-row"') == 1
