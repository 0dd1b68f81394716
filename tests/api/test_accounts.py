"""Accounts: register, log in and out, delete the account."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tierlake.config import Settings
from tierlake.data.db import Database
from tierlake.data.schema import Customer, DeletedRow, Order
from tierlake.seed import seed_store


def test_register_login_logout(api) -> None:
    r = api.client.post("/api/v1/auth/register",
                        json={"email": "Ada@Example.com", "password": "s3cret-pass", "name": "Ada"})
    assert r.status_code == 201
    assert r.json()["customer"]["email"] == "ada@example.com"
    r = api.client.post("/api/v1/auth/login",
                        json={"email": "ADA@example.com", "password": "s3cret-pass"})
    assert r.status_code == 200
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    assert api.client.get("/api/v1/me", headers=auth).json()["name"] == "Ada"
    assert api.client.post("/api/v1/auth/logout", headers=auth).status_code == 204
    r = api.client.get("/api/v1/me", headers=auth)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_token"


def test_password_is_stored_as_argon2_hash(api, db) -> None:
    api.client.post("/api/v1/auth/register",
                    json={"email": "b@example.com", "password": "s3cret-pass", "name": "B"})
    with db.read() as s:
        stored = s.scalar(select(Customer.password_hash).where(Customer.email == "b@example.com"))
    assert stored.startswith("$argon2id$")
    assert "s3cret-pass" not in stored


def test_duplicate_email_is_409(api) -> None:
    api.register("dup@example.com")
    r = api.client.post("/api/v1/auth/register",
                        json={"email": "DUP@example.com", "password": "another-one-9",
                              "name": "X"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "email_taken"


def test_wrong_password_and_unknown_email_get_the_same_answer(api) -> None:
    api.register("c@example.com", password="right-password")
    wrong = api.client.post("/api/v1/auth/login",
                            json={"email": "c@example.com", "password": "wrong-password"})
    unknown = api.client.post("/api/v1/auth/login",
                              json={"email": "nobody@example.com", "password": "whatever"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_invalid_registration_names_each_field(api) -> None:
    r = api.client.post("/api/v1/auth/register", json={"email": "not-an-email", "password": "x"})
    assert r.status_code == 422
    fields = {f["field"] for f in r.json()["error"]["fields"]}
    assert fields == {"body.email", "body.password", "body.name"}


def test_missing_or_garbage_token_is_401(api) -> None:
    assert api.client.get("/api/v1/cart").status_code == 401
    r = api.client.get("/api/v1/cart", headers={"Authorization": "Bearer garbage"})
    assert r.status_code == 401


def test_delete_account_erases_personal_data_keeps_orders(api, db) -> None:
    shopper = api.register("gone@example.com", password="password-123")
    product = api.product(stock=5)
    api.add(shopper, product["id"])
    assert api.checkout(shopper).status_code == 201
    api.add(shopper, product["id"])  # an open cart, deleted with the account
    r = api.client.request("DELETE", "/api/v1/me", json={"password": "wrong"}, headers=shopper)
    assert r.status_code == 401
    r = api.client.request("DELETE", "/api/v1/me", json={"password": "password-123"},
                           headers=shopper)
    assert r.status_code == 204
    assert api.client.get("/api/v1/me", headers=shopper).status_code == 401
    with db.read() as s:
        gone = s.scalar(select(Customer).where(Customer.deleted_at.is_not(None)))
        tombstones = {t.table_name for t in s.scalars(select(DeletedRow))}
    assert (gone.email, gone.name, gone.password_hash) == (None, "", "")
    assert {"auth_sessions", "carts", "cart_items"} <= tombstones
    # The address can be used again, and the old order stays in the books.
    api.register("gone@example.com")
    with db.read() as s:
        assert s.scalar(select(Order.customer_id)) == gone.id


def test_deleting_an_account_erases_the_shipping_details_of_its_orders(api, db) -> None:
    shopper, other = api.register("leaving@example.com"), api.register()
    product = api.product(price_cents=1250, stock=10)
    for who in (shopper, shopper, other):
        api.add(who, product["id"], 2)
        assert api.checkout(who).status_code == 201
    with db.read() as s:
        before = {o.id: (o.customer_id, o.total_cents, o.placed_at, o.status, o.updated_at)
                  for o in s.scalars(select(Order))}
    r = api.client.request("DELETE", "/api/v1/me", json={"password": "password-123"},
                           headers=shopper)
    assert r.status_code == 204
    with db.read() as s:
        gone = s.scalar(select(Customer).where(Customer.deleted_at.is_not(None)))
        orders = list(s.scalars(select(Order).order_by(Order.id)))
    erased = [o for o in orders if o.customer_id == gone.id]
    kept = [o for o in orders if o.customer_id != gone.id]
    assert len(erased) == 2 and len(kept) == 1
    for order in erased:  # no name or address left; what the books need is intact
        assert (order.ship_name, order.ship_address, order.ship_city,
                order.ship_postcode) == ("", "", "", "")
        assert order.ship_country == "GB"
        customer_id, total, placed_at, status, updated_at = before[order.id]
        assert (order.total_cents, order.placed_at, order.status) == (total, placed_at, status)
        assert order.total_cents > 0
        assert order.updated_at > updated_at  # the next extract sees the erasure
    assert kept[0].ship_name == "Ada Lovelace"  # another customer's orders are untouched
    assert kept[0].updated_at == before[kept[0].id][4]
    assert gone.updated_at >= max(o.updated_at for o in erased)


def test_the_default_administrator_logs_in_after_seeding(db: Database) -> None:
    """The credentials the README and the start-up banner print (config defaults, .local)."""
    settings = Settings()
    seed_store(db, products=2, customers=1, orders=0, admin_email=settings.admin_email,
               admin_password=settings.admin_password.get_secret_value(), progress=False)
    from tierlake.app.main import create_app

    with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
        r = client.post("/api/v1/auth/login", json={
            "email": f"  {settings.admin_email.upper()} ",
            "password": settings.admin_password.get_secret_value()})
        assert r.status_code == 200, r.text
        assert r.json()["customer"]["is_admin"] is True
        assert r.json()["customer"]["email"] == "admin@tierlake.local"


@pytest.mark.parametrize("email", ["someone@shop.local", "qa@staging.test", "ops@corp.internal"])
def test_addresses_of_a_private_installation_can_register(api, email: str) -> None:
    api.register(email)
    r = api.client.post("/api/v1/auth/login", json={"email": email, "password": "password-123"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("email", ["no-at-sign", "a@b", "two@@example.com", "x@localhost",
                                   "x@nothing.invalid", "x@hidden.onion", "x@example..com"])
def test_garbage_addresses_are_refused_at_registration(api, email: str) -> None:
    r = api.client.post("/api/v1/auth/register",
                        json={"email": email, "password": "a-decent-phrase 42", "name": "X"})
    assert r.status_code == 422, r.text
    assert [f["field"] for f in r.json()["error"]["fields"]] == ["body.email"]


def test_a_login_with_any_address_is_only_a_lookup(api) -> None:
    for email in ("not-an-email", "x@localhost", "admin@tierlake.local"):
        r = api.client.post("/api/v1/auth/login", json={"email": email, "password": "whatever"})
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "invalid_credentials"
    r = api.client.post("/api/v1/auth/login", json={"email": "  ", "password": "whatever"})
    assert r.status_code == 422


@pytest.mark.parametrize(("password", "why"), [
    ("password", "common password"),
    ("12345678", "common password"),
    ("        ", "repeats"),
    ("carol.jones@example.com", "e-mail address"),
    ("carol.jones", "e-mail address"),
    ("Carol Jones", "e-mail address, your name"),
    ("tierlake", "store's name"),
    ("qwertyuiop", "common password"),
])
def test_weak_passwords_are_refused_with_the_reason(api, password: str, why: str) -> None:
    r = api.client.post("/api/v1/auth/register", json={
        "email": "carol.jones@example.com", "password": password, "name": "Carol Jones"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "weak_password"
    [field] = error["fields"]
    assert field["field"] == "body.password" and why in field["message"]
    assert api.client.post("/api/v1/auth/login", json={
        "email": "carol.jones@example.com", "password": password}).status_code == 401


@pytest.mark.parametrize("password", [
    "a-decent-phrase 42", "correct horse battery staple", "Tr0ub4dor&3",
    "ünïcödé-päss-wört", "x" * 3 + "🦜🦩🦚🐧🦉",  # 8 code points, more bytes
    "a long passphrase of sixty four characters or more is allowed here ok",
])
def test_decent_passwords_of_any_characters_pass(api, password: str) -> None:
    r = api.client.post("/api/v1/auth/register", json={
        "email": "dana@example.com", "password": password, "name": "Dana"})
    assert r.status_code == 201, r.text
    r = api.client.post("/api/v1/auth/login",
                        json={"email": "dana@example.com", "password": password})
    assert r.status_code == 200


def test_password_length_counts_characters(api) -> None:
    r = api.client.post("/api/v1/auth/register", json={
        "email": "eve@example.com", "password": "🦜🦩🦚🐧🦉🐦", "name": "Eve"})  # 6 chars
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "body.password"
