"""Accounts and the back office through the store front."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from storefront import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    BASE,
    PASSWORD,
    csrf_of,
    login,
    register,
    settings_for,
    submit,
)

from tierlake.app.main import create_app as create_api_app
from tierlake.config import Settings
from tierlake.data.schema import Customer
from tierlake.seed import seed_store
from tierlake.web.main import create_app as create_web_app

pytestmark = pytest.mark.anyio


async def test_register_errors_are_shown_next_to_fields_with_input_kept(store) -> None:
    client = store.browser()
    r = await submit(client, "/register", "/register",
                     {"email": "ada@example.com", "password": "short", "name": "Ada"})
    assert r.status_code == 422
    assert 'data-testid="error-password"' in r.text
    assert 'value="ada@example.com"' in r.text and 'value="Ada"' in r.text
    assert "short" not in r.text.split('id="password"')[1].split(">")[0]  # password not echoed


async def test_register_with_a_taken_email_says_so(store) -> None:
    email = await register(store.browser())
    r = await submit(store.browser(), "/register", "/register",
                     {"email": email, "password": PASSWORD, "name": "Again"})
    assert r.status_code == 409
    assert 'data-testid="error-email"' in r.text and "already exists" in r.text


async def test_login_with_wrong_password_keeps_the_email(store) -> None:
    email = await register(store.browser())
    client = store.browser()
    r = await login(client, email, "wrong-password")
    assert r.status_code == 401
    assert "Wrong email or password" in r.text and f'value="{email}"' in r.text
    assert 'data-testid="nav-login"' in r.text


async def test_logout_forgets_the_customer(store) -> None:
    client = store.browser()
    await register(client, name="Linus Pauling")
    page = await client.get("/")
    assert "Linus" in page.text
    r = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    home = await client.get("/")
    assert "Linus" not in home.text and 'data-testid="nav-login"' in home.text
    assert (await client.get("/cart")).status_code == 303


async def test_tampered_auth_cookie_is_ignored(store) -> None:
    client = store.browser()
    await register(client, name="Rosalind Franklin")
    value = client.cookies.get("tl_auth")
    assert value
    client.cookies.set("tl_auth", value[:-3] + "xyz", domain="shop.test")
    home = await client.get("/")
    assert 'data-testid="nav-login"' in home.text and 'data-testid="nav-logout"' not in home.text


async def test_account_page_and_deleting_the_account(store) -> None:
    client = store.browser()
    email = await register(client, name="Barbara Liskov")
    page = await client.get("/account")
    assert page.status_code == 200 and email in page.text and "Barbara Liskov" in page.text
    r = await submit(client, "/account", "/account/delete", {"password": "not-my-password"})
    assert r.status_code == 401
    assert 'data-testid="error-password"' in r.text and "not deleted" in r.text
    r = await submit(client, "/account", "/account/delete", {"password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/"
    home = await client.get("/")
    assert "has been deleted" in home.text and 'data-testid="nav-login"' in home.text
    r = await login(store.browser(), email)
    assert r.status_code == 401


async def test_expired_api_session_sends_the_customer_to_login(store) -> None:
    client = store.browser()
    await register(client)
    r = await client.get("/")
    token_page = await client.get("/account")
    assert token_page.status_code == 200
    # end the API session behind the web tier's back (e.g. it expired)
    await client.post("/logout", data={"csrf_token": csrf_of(r.text)})
    client.cookies.set("tl_auth", token_page.request.headers["cookie"].split("tl_auth=")[1]
                       .split(";")[0], domain="shop.test")
    r = await client.get("/account")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/account"
    page = await client.get(r.headers["location"])
    assert "session has expired" in page.text


async def test_admin_pages_are_forbidden_to_customers(store, catalogue) -> None:
    client = store.browser()
    await register(client)
    r = await client.get("/admin")
    assert r.status_code == 403 and "Access denied" in r.text
    r = await client.get(f"/admin/products/{catalogue['mug']['id']}")
    assert r.status_code == 403
    page = await client.get("/")
    r = await client.post(f"/admin/products/{catalogue['mug']['id']}/stock",
                          data={"csrf_token": csrf_of(page.text), "quantity": "999"})
    assert r.status_code == 403
    assert (await store.api.get(f"/api/v1/products/{catalogue['mug']['id']}")).json()[
        "stock"] == 10


async def admin_browser(store):  # type: ignore[no-untyped-def]
    client = store.browser()
    r = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD, next_path="/admin")
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    return client


async def test_admin_lists_searches_and_edits_products(store, catalogue) -> None:
    client = await admin_browser(store)
    page = await client.get("/admin")
    assert page.status_code == 200
    assert "Ceramic Mug" in page.text and "Deep Work" in page.text and "$12.34" in page.text
    found = await client.get("/admin", params={"q": "knife"})
    assert "Chef Knife" in found.text and "Ceramic Mug" not in found.text
    mug = catalogue["mug"]
    edit = await client.get(f"/admin/products/{mug['id']}")
    assert edit.status_code == 200 and 'value="12.34"' in edit.text
    r = await client.post(f"/admin/products/{mug['id']}", data={
        "csrf_token": csrf_of(edit.text), "name": "Big Ceramic Mug", "price": "14.50",
        "category": "kitchen", "description": "Bigger.", "active": "on"})
    assert r.status_code == 303
    product = (await store.api.get(f"/api/v1/products/{mug['id']}")).json()
    assert product["name"] == "Big Ceramic Mug" and product["price_cents"] == 1450
    r = await client.post(f"/admin/products/{mug['id']}", data={
        "csrf_token": csrf_of(edit.text), "name": "Big Ceramic Mug", "price": "abc",
        "category": "kitchen"})
    assert r.status_code == 422 and 'data-testid="error-price"' in r.text
    # untick "active" retires the product
    r = await client.post(f"/admin/products/{mug['id']}", data={
        "csrf_token": csrf_of(edit.text), "name": "Big Ceramic Mug", "price": "14.50",
        "category": "kitchen"})
    assert r.status_code == 303
    assert (await store.api.get(f"/api/v1/products/{mug['id']}")).json()["active"] is False


async def test_admin_sets_stock_and_creates_products_and_categories(store, catalogue) -> None:
    client = await admin_browser(store)
    page = await client.get("/admin")
    token = csrf_of(page.text)
    knife = catalogue["knife"]
    r = await client.post(f"/admin/products/{knife['id']}/stock",
                          data={"csrf_token": token, "quantity": "42", "return_to": "list"})
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    r = await client.post(f"/admin/products/{knife['id']}/stock",
                          data={"csrf_token": token, "quantity": "-2"})
    assert (await store.api.get(f"/api/v1/products/{knife['id']}")).json()["stock"] == 40
    r = await client.post(f"/admin/products/{knife['id']}/stock",  # passes str.isdigit()
                          data={"csrf_token": token, "quantity": "\u00b2"})
    assert r.status_code == 303
    assert "whole number" in (await client.get(r.headers["location"])).text
    assert (await store.api.get(f"/api/v1/products/{knife['id']}")).json()["stock"] == 40
    r = await client.post("/admin/categories", data={
        "csrf_token": token, "name": "Garden", "slug": "garden", "description": ""})
    assert r.status_code == 303
    r = await client.post("/admin/products", data={
        "csrf_token": token, "sku": "CAN-001", "name": "Watering Can", "price": "29",
        "category": "garden", "stock": "5", "description": "Holds 5 litres."})
    assert r.status_code == 303
    shop = await store.browser().get("/c/garden")
    assert "Watering Can" in shop.text and "$29.00" in shop.text
    r = await client.post("/admin/products", data={
        "csrf_token": token, "sku": "bad sku", "name": "X", "price": "1",
        "category": "garden"})
    assert r.status_code == 422 and 'data-testid="error-sku"' in r.text
    assert 'value="bad sku"' in r.text  # the admin's input is kept


async def test_the_default_administrator_logs_in_through_the_store_front(store) -> None:
    """The credentials printed by the README and the banner: admin@tierlake.local."""
    defaults = Settings()
    db = store.api_app.state.db
    seed_store(db, products=2, customers=1, orders=0, admin_email=defaults.admin_email,
               admin_password=defaults.admin_password.get_secret_value(), progress=False)
    client = store.browser()
    r = await login(client, defaults.admin_email, defaults.admin_password.get_secret_value(),
                    next_path="/admin")
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/admin"
    admin_page = await client.get("/admin")
    assert admin_page.status_code == 200
    with db.read() as s:
        assert s.scalar(select(Customer.is_admin).where(
            Customer.email == defaults.admin_email)) is True


@pytest.mark.parametrize(("password", "shown"), [
    ("password", "common password"),
    ("12345678", "common password"),
    ("        ", "repeats"),
    ("maria.curie@example.com", "your e-mail address"),
])
async def test_register_page_says_why_a_password_is_refused(store, password: str,
                                                            shown: str) -> None:
    r = await submit(store.browser(), "/register", "/register",
                     {"email": "maria.curie@example.com", "password": password,
                      "name": "Maria Curie"})
    assert r.status_code == 422
    error = r.text.split('data-testid="error-password">')[1].split("</p>")[0]
    assert "Choose a harder password" in error and shown in error
    assert 'value="maria.curie@example.com"' in r.text  # the rest of the form is kept
    assert 'data-testid="nav-login"' in r.text  # not logged in


async def test_register_page_says_how_long_a_password_must_be(store) -> None:
    r = await submit(store.browser(), "/register", "/register",
                     {"email": "short@example.com", "password": "short", "name": "Ada"})
    assert r.status_code == 422
    assert "Use at least 8 characters" in r.text and "String should" not in r.text


async def test_login_page_says_when_too_many_attempts_failed(store) -> None:
    email = await register(store.browser())
    client = store.browser()
    for _ in range(10):
        assert (await login(client, email, "wrong-guess-1")).status_code == 401
    r = await login(client, email, PASSWORD)  # even the right password, while limited
    assert r.status_code == 429
    message = r.text.split('data-testid="form-error">')[1].split("</p>")[0]
    assert "Too many failed log-ins" in message and "minutes and try again" in message
    assert f'value="{email}"' in r.text and 'data-testid="nav-login"' in r.text


async def test_the_store_front_passes_each_shoppers_address_to_the_app_tier(
        tmp_path, db) -> None:  # type: ignore[no-untyped-def]
    """Behind one web tier, one shopper's guessing does not lock out another shopper."""
    settings = settings_for(tmp_path, auth={"login_failures_per_address": 3})
    api_app = create_api_app(settings, db)
    web_app = create_web_app(settings, app_transport=httpx.ASGITransport(api_app))

    def shopper(address: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(web_app, client=(address, 5000)),
                                 base_url=BASE)

    async with shopper("203.0.113.50") as guesser, shopper("203.0.113.51") as other:
        email = await register(other)
        for n in range(3):
            assert (await login(guesser, f"spray-{n}@example.com", PASSWORD)).status_code == 401
        r = await login(guesser, email, PASSWORD)
        assert r.status_code == 429 and "from your network address" in r.text
        await other.post("/logout", data={"csrf_token": csrf_of((await other.get("/")).text)})
        r = await login(other, email, PASSWORD)
        assert r.status_code == 303, r.text
    await web_app.state.api.aclose()
