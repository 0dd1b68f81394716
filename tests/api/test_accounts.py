"""Accounts: register, log in and out, delete the account."""

from __future__ import annotations

from sqlalchemy import select

from tierlake.data.schema import Customer, DeletedRow


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
                        json={"email": "DUP@example.com", "password": "another-1", "name": "X"})
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
        from tierlake.data.schema import Order

        assert s.scalar(select(Order.customer_id)) == gone.id
