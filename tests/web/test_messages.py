"""Pages speak to people: no validator's wording on any page, ids that cannot exist are 404s.

Every web route that takes an id or a form, driven through the web tier in-process.
"""

from __future__ import annotations

import html

import pytest
from storefront import ADMIN_EMAIL, ADMIN_PASSWORD, csrf_of, idempotency_key_of, login, register
from test_shopping import SHIPPING, add_to_cart

pytestmark = pytest.mark.anyio
# Phrases pydantic writes; a shopper must never read them.
TECHNICAL = ("Input should", "String should", "Field required", "pydantic", "less than or equal",
             "body.", "path.", "pattern", "Value error")
HUGE = "99999999999999999999999"


def assert_for_people(page: str) -> None:
    text = html.unescape(page)
    for phrase in TECHNICAL:
        assert phrase not in text, phrase


async def admin_browser(store):  # type: ignore[no-untyped-def]
    client = store.browser()
    r = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD, next_path="/admin")
    assert r.status_code == 303
    return client


@pytest.mark.parametrize("order_id", ["0", HUGE, "9007199254740993"])
async def test_an_order_id_that_cannot_exist_is_a_404_page(store, order_id: str) -> None:
    client = store.browser()
    await register(client)
    r = await client.get(f"/orders/{order_id}")
    assert r.status_code == 404
    assert 'data-testid="error-page"' in r.text and "Page not found" in r.text
    assert_for_people(r.text)


@pytest.mark.parametrize("ref", ["0", HUGE, "x" * 300])
async def test_a_product_ref_that_cannot_exist_is_a_404_page(store, catalogue, ref: str) -> None:
    r = await store.browser().get(f"/p/{ref}")
    assert r.status_code == 404
    assert_for_people(r.text)


async def test_empty_checkout_fields_say_what_to_enter(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    await add_to_cart(client, catalogue["mug"])
    checkout = await client.get("/checkout")
    r = await client.post("/checkout", data={
        "csrf_token": csrf_of(checkout.text), "idempotency_key": idempotency_key_of(checkout.text),
        "name": "", "address": "", "city": "", "postcode": "", "country": ""})
    assert r.status_code == 422
    text = html.unescape(r.text)
    for sentence in ("Enter the name to ship to", "Enter the street address",
                     "Enter the town or city", "Enter the postcode",
                     "Choose the country to ship to"):
        assert sentence in text
    assert_for_people(r.text)
    r = await client.post("/checkout", data={
        "csrf_token": csrf_of(checkout.text), "idempotency_key": idempotency_key_of(checkout.text),
        **SHIPPING, "name": "N" * 121})
    assert r.status_code == 422 and "up to 120 characters" in r.text
    assert_for_people(r.text)


async def test_cart_routes_with_ids_that_cannot_exist(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    for action in (f"/cart/items/{HUGE}", f"/cart/items/{HUGE}/remove", "/cart/add"):
        cart = await client.get("/cart")
        r = await client.post(action, data={"csrf_token": csrf_of(cart.text), "quantity": "1",
                                            "product_id": HUGE})
        assert r.status_code in (303, 404), (action, r.status_code)
        page = r if r.status_code == 404 else await client.get(r.headers["location"])
        assert_for_people(page.text)


async def test_admin_routes_with_ids_and_forms_speak_to_people(store, catalogue) -> None:
    client = await admin_browser(store)
    r = await client.get(f"/admin/products/{HUGE}")
    assert r.status_code == 404
    assert_for_people(r.text)
    admin = await client.get("/admin")
    r = await client.post(f"/admin/products/{HUGE}/stock",
                          data={"csrf_token": csrf_of(admin.text), "quantity": "5"})
    page = r if r.status_code >= 400 else await client.get(r.headers["location"])
    assert_for_people(page.text)
    r = await client.post(f"/admin/products/{HUGE}", data={
        "csrf_token": csrf_of(admin.text), "name": "X", "price": "1.00", "category": "kitchen"})
    assert r.status_code == 404
    assert_for_people(r.text)
    # A create form with every kind of mistake: the page names them without pydantic's words.
    r = await client.post("/admin/products", data={
        "csrf_token": csrf_of(admin.text), "sku": "bad sku!", "name": "", "price": "1.00",
        "category": "kitchen", "stock": "3"})
    assert r.status_code == 422
    assert "not in the expected format" in html.unescape(r.text)
    assert_for_people(r.text)
    r = await client.post("/admin/categories", data={
        "csrf_token": csrf_of(admin.text), "slug": "Not A Slug", "name": ""})
    assert r.status_code == 422
    assert_for_people(r.text)


def test_each_kind_of_mistake_has_its_own_sentence() -> None:
    from tierlake.web.messages import field_text

    assert field_text("password", "string_too_short",
                      "String should have at least 8 characters") == "Use at least 8 characters."
    assert field_text("sku", "string_too_long",
                      "String should have at most 40 characters") == "Use at most 40 characters."
    assert field_text("name", "string_too_short",
                      "String should have at least 1 character") == "Fill in this field."
    assert field_text("name", "missing", "Field required") == "Fill in this field."
    assert field_text("email", "value_error", "value is not a valid email address: An email "
                      "address must have an @-sign.") == "An email address must have an @-sign."
    assert field_text("stock", "int_type", "Input should be a valid integer") == (
        "Enter a whole number.")
