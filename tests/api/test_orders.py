"""Cart and checkout: totals, stock, idempotency, history."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import event, func, insert, select

from tierlake.data.schema import Cart, CartItem, DeletedRow, Order, utcnow

# The idempotency tests run with the app's cache in every mode (tests/api/conftest.py's
# cache_mode), and with a read replica (its db fixture's "replica"): the replay of an order
# must depend on neither.
CACHE_MODES = pytest.mark.parametrize(
    ("cache_mode", "db"),
    [("memory", "primary"), ("redis", "primary"), ("off", "primary"), ("memory", "replica")],
    indirect=["db"])


def test_cart_totals_and_free_shipping_threshold(api) -> None:
    shopper = api.register()
    cheap = api.product(name="Pen", price_cents=250)
    dear = api.product(name="Bag", price_cents=6000)
    cart = api.add(shopper, cheap["id"], 2)
    assert (cart["subtotal_cents"], cart["shipping_cents"], cart["total_cents"]) == (500, 499, 999)
    cart = api.add(shopper, dear["id"], 1)
    assert (cart["subtotal_cents"], cart["shipping_cents"]) == (6500, 0)
    cart = api.client.delete(f"/api/v1/cart/items/{dear['id']}", headers=shopper).json()
    assert [i["name"] for i in cart["items"]] == ["Pen"]


def test_checkout_takes_stock_empties_cart_and_shows_in_history(api) -> None:
    shopper = api.register()
    p = api.product(price_cents=1500, stock=5)
    api.add(shopper, p["id"], 2)
    r = api.checkout(shopper)
    assert r.status_code == 201
    order = r.json()
    assert (order["total_cents"], order["item_count"], order["status"]) == (3000 + 499, 2, "placed")
    assert order["lines"][0]["line_total_cents"] == 3000
    assert r.headers["location"] == f"/api/v1/orders/{order['id']}"
    assert api.client.get(f"/api/v1/products/{p['id']}").json()["stock"] == 3
    assert api.client.get("/api/v1/cart", headers=shopper).json()["items"] == []
    history = api.client.get("/api/v1/orders", headers=shopper).json()
    assert [o["id"] for o in history["items"]] == [order["id"]]
    assert api.client.get(f"/api/v1/orders/{order['id']}", headers=shopper).json() == order


@CACHE_MODES
def test_retried_checkout_with_the_same_key_places_one_order(api, db) -> None:
    shopper = api.register()
    p = api.product(stock=5)
    api.add(shopper, p["id"])
    first = api.checkout(shopper, key="retry-key-0001")
    again = api.checkout(shopper, key="retry-key-0001")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    with db.read() as s:
        assert s.scalar(select(func.count(Order.id))) == 1
    assert api.stock(p["id"], 4) == 4


def test_idempotency_key_is_required_and_validated(api) -> None:
    shopper = api.register()
    r = api.client.post("/api/v1/orders", json={"shipping": {}}, headers=shopper)
    assert r.status_code == 422
    assert "header.Idempotency-Key" in {f["field"] for f in r.json()["error"]["fields"]}


def test_checkout_takes_a_bearer_token_and_says_so_in_the_openapi_document(api) -> None:
    """Checkout reads its token itself (not through FastAPI's HTTPBearer): the same rules."""
    shopper = api.register()
    token = shopper["Authorization"].split(" ", 1)[1]
    p = api.product(stock=5)
    api.add(shopper, p["id"])
    for refused, code in (({}, "unauthorized"),
                          ({"Authorization": f"Basic {token}"}, "unauthorized"),
                          ({"Authorization": "Bearer "}, "unauthorized"),
                          ({"Authorization": token}, "unauthorized"),
                          ({"Authorization": "Bearer not-a-token"}, "invalid_token")):
        r = api.checkout(refused)
        assert (r.status_code, r.json()["error"]["code"]) == (401, code), refused
        assert r.headers["www-authenticate"] == "Bearer"
    assert api.checkout({"Authorization": f"bearer {token}"}).status_code == 201
    spec = api.client.get("/api/openapi.json").json()
    operation = spec["paths"]["/api/v1/orders"]["post"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert [p["name"] for p in operation["parameters"]] == ["Idempotency-Key"]


def test_short_stock_rolls_back_the_whole_order(api, db) -> None:
    shopper = api.register()
    plenty = api.product(name="Plenty", stock=10)
    scarce = api.product(name="Scarce", stock=2)
    api.add(shopper, plenty["id"], 3)
    api.add(shopper, scarce["id"], 2)
    # Someone else buys one Scarce first.
    other = api.register()
    api.add(other, scarce["id"], 1)
    assert api.checkout(other).status_code == 201
    r = api.checkout(shopper)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "out_of_stock"
    assert "Scarce" in r.json()["error"]["message"]
    assert api.client.get(f"/api/v1/products/{plenty['id']}").json()["stock"] == 10
    assert len(api.client.get("/api/v1/cart", headers=shopper).json()["items"]) == 2


def test_empty_cart_and_retired_product_cannot_be_checked_out(api) -> None:
    shopper = api.register()
    r = api.checkout(shopper)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "cart_empty")
    p = api.product()
    api.add(shopper, p["id"])
    api.client.delete(f"/api/v1/admin/products/{p['id']}", headers=api.admin)
    r = api.checkout(shopper)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "product_unavailable")


def test_customers_see_only_their_own_orders(api) -> None:
    alice, bob = api.register(), api.register()
    p = api.product()
    api.add(alice, p["id"])
    order = api.checkout(alice).json()
    assert api.client.get(f"/api/v1/orders/{order['id']}", headers=bob).status_code == 404
    assert api.client.get("/api/v1/orders", headers=bob).json()["total"] == 0


def test_cannot_put_more_in_the_cart_than_in_stock(api) -> None:
    shopper = api.register()
    p = api.product(stock=3)
    r = api.client.put(f"/api/v1/cart/items/{p['id']}", json={"quantity": 4}, headers=shopper)
    assert r.status_code == 409
    assert "Only 3" in r.json()["error"]["message"]


# -- Idempotency-Key: the IETF draft and Stripe's rules ----------------------------------------

def _hold(db, headers_customer: int, key: str, *, expires_in: float, fingerprint: str) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        cart = s.scalar(select(Cart).where(Cart.customer_id == headers_customer))
        cart.checkout_key, cart.checkout_fingerprint = key, fingerprint
        cart.checkout_expires_at = utcnow() + timedelta(seconds=expires_in)


def _customer_id(api, headers: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    return api.client.get("/api/v1/me", headers=headers).json()["id"]


def _orders(db) -> int:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return s.scalar(select(func.count(Order.id))) or 0


@CACHE_MODES
def test_same_key_with_a_different_body_is_a_422(api, db) -> None:
    shopper = api.register()
    p = api.product(stock=5)
    api.add(shopper, p["id"])
    assert api.checkout(shopper, key="body-key-0001").status_code == 201
    r = api.checkout(shopper, key="body-key-0001",
                     shipping={**api.shipping, "address": "1 Other Street"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "different request" in error["message"] and "new key" in error["message"]
    assert _orders(db) == 1


@CACHE_MODES
def test_same_key_with_a_different_cart_is_a_422_and_an_empty_cart_is_a_retry(api, db) -> None:
    shopper = api.register()
    mug, pen = api.product(name="Mug", stock=5), api.product(name="Pen", stock=5)
    api.add(shopper, mug["id"])
    first = api.checkout(shopper, key="cart-key-0001")
    assert first.status_code == 201
    # The checkout emptied the cart: the same body again is a true retry.
    again = api.checkout(shopper, key="cart-key-0001")
    assert (again.status_code, again.json()) == (200, first.json())
    # A new cart under the old key is another order: refused, nothing placed.
    api.add(shopper, pen["id"])
    r = api.checkout(shopper, key="cart-key-0001")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "idempotency_key_reused")
    assert _orders(db) == 1
    assert len(api.client.get("/api/v1/cart", headers=shopper).json()["items"]) == 1
    # The same content as the order is still the same request.
    api.client.delete(f"/api/v1/cart/items/{pen['id']}", headers=shopper)
    api.add(shopper, mug["id"])
    assert api.checkout(shopper, key="cart-key-0001").json() == first.json()


@CACHE_MODES
def test_a_twin_in_flight_gets_409_and_a_dead_hold_expires(api, db) -> None:
    shopper = api.register()
    p = api.product(stock=5)
    api.add(shopper, p["id"])
    customer = _customer_id(api, shopper)
    # Let a first request hold the cart for the key, as if it were still running.
    r = api.checkout(shopper, key="twin-key-0001")  # learn the request's fingerprint
    assert r.status_code == 201
    with db.read() as s:
        order = s.scalar(select(Order).where(Order.id == r.json()["id"]))
        assert order is not None
    # A new cart and a hold by another key that is still running:
    api.add(shopper, p["id"])
    with db.session() as s:
        cart = s.scalar(select(Cart).where(Cart.customer_id == customer))
        assert cart is not None and cart.checkout_key is None  # the checkout gave it back
    _hold(db, customer, "twin-key-0002", expires_in=60, fingerprint="f" * 64)
    r = api.checkout(shopper, key="twin-key-0002")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "idempotency_key_reused")
    r = api.checkout(shopper, key="twin-key-0003")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "checkout_in_progress")
    assert r.headers["retry-after"] == "1"
    # The same request in flight: 409, retry later.
    from tierlake.app.services.orders import _fingerprint

    fingerprint = _fingerprint(api.shipping, [(p["id"], 1)])
    _hold(db, customer, "twin-key-0002", expires_in=60, fingerprint=fingerprint)
    r = api.checkout(shopper, key="twin-key-0002")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "request_in_progress")
    assert r.headers["retry-after"] == "1"
    assert _orders(db) == 1
    # The process holding it died: once the hold has expired, the key works.
    _hold(db, customer, "twin-key-0002", expires_in=-1, fingerprint=fingerprint)
    r = api.checkout(shopper, key="twin-key-0002")
    assert r.status_code == 201, r.text
    assert _orders(db) == 2


@CACHE_MODES
def test_a_refused_checkout_gives_the_key_back(api, db) -> None:
    shopper = api.register()
    p = api.product(stock=2)
    api.add(shopper, p["id"], 2)
    api.client.put(f"/api/v1/admin/products/{p['id']}/stock", json={"quantity": 1},
                   headers=api.admin)
    r = api.checkout(shopper, key="short-key-0001")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "out_of_stock")
    api.add(shopper, p["id"], 1)  # fix the cart, and retry with the same key
    r = api.checkout(shopper, key="short-key-0001")
    assert r.status_code == 201, r.text


@CACHE_MODES
def test_concurrent_twins_place_one_order(api, db, server_url) -> None:
    shopper = api.register()
    p = api.product(stock=50)
    api.add(shopper, p["id"], 3)

    async def twins() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server_url, timeout=60) as client:
            return await asyncio.gather(*[
                client.post("/api/v1/orders", json={"shipping": api.shipping},
                            headers={**shopper, "Idempotency-Key": "concurrent-key-01"})
                for _ in range(8)])

    responses = asyncio.run(twins())
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 1, [r.text for r in responses]
    placed = next(r.json() for r in responses if r.status_code == 201)
    for r in responses:
        assert r.status_code in (200, 201, 409), r.text
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "request_in_progress"
        else:
            assert r.json() == placed
    assert _orders(db) == 1
    assert api.stock(p["id"], 47) == 47
    # A retry once it is done is answered with the order.
    again = api.checkout(shopper, key="concurrent-key-01")
    assert (again.status_code, again.json()) == (200, placed)


# -- strict types in request bodies --------------------------------------------------------------


def test_numbers_and_booleans_must_be_json_numbers_and_booleans(api) -> None:
    shopper = api.register()
    p = api.product(stock=5)
    for wrong in ("2", True, 2.5, "two"):
        r = api.client.put(f"/api/v1/cart/items/{p['id']}", json={"quantity": wrong},
                           headers=shopper)
        assert r.status_code == 422, (wrong, r.text)
        assert [f["field"] for f in r.json()["error"]["fields"]] == ["body.quantity"]
    assert api.add(shopper, p["id"], 2)["item_count"] == 2
    for body in ({"price_cents": "100"}, {"active": "true"}, {"active": 1}):
        r = api.client.patch(f"/api/v1/admin/products/{p['id']}", json=body, headers=api.admin)
        assert r.status_code == 422, (body, r.text)
        assert [f["field"] for f in r.json()["error"]["fields"]] == [f"body.{next(iter(body))}"]
    r = api.client.patch(f"/api/v1/admin/products/{p['id']}", json={"active": False},
                         headers=api.admin)
    assert r.status_code == 200 and r.json()["active"] is False
    # Query parameters are text by nature and stay lax.
    assert api.client.get("/api/v1/products", params={"page": "1", "page_size": "5"}
                          ).status_code == 200


def _checkout_interleaved(api, db, shopper, action):  # type: ignore[no-untyped-def]
    """Check out, running ``action()`` once just before the checkout empties the cart (its
    ``DELETE FROM cart_items``, after it read the lines). Returns (checkout's response,
    action's results)."""
    results: list = []

    def hook(_c, _cur, statement: str, *_rest) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("DELETE FROM cart_items") and not results:
            results.append(action())

    event.listen(db.engine, "before_cursor_execute", hook)
    try:
        r = api.checkout(shopper)
    finally:
        event.remove(db.engine, "before_cursor_execute", hook)
    assert results, "the checkout never emptied the cart"
    return r, results


def test_a_cart_change_while_the_checkout_runs_is_refused_and_the_order_is_whole(  # type: ignore[no-untyped-def]
        api, db) -> None:
    """The customer changes a quantity (another tab) after the checkout read the cart and
    before it empties it: accepted, the change would be emptied with the rest and the order
    would keep the old quantity. It is refused instead (409 ``checkout_in_progress``), and
    accepted again once the order is placed."""
    if db.one_writer:
        pytest.skip("SQLite runs one writer at a time: no change can land mid-checkout")
    shopper = api.register()
    mug = api.product(name="Mug", stock=5)
    api.add(shopper, mug["id"], 2)
    r, (refused,) = _checkout_interleaved(api, db, shopper, lambda: api.client.put(
        f"/api/v1/cart/items/{mug['id']}", json={"quantity": 3}, headers=shopper))
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        409, "checkout_in_progress"), refused.text
    assert refused.headers["retry-after"] == "1"
    assert r.status_code == 201, r.text
    assert [(line["product_id"], line["quantity"]) for line in r.json()["lines"]] == [
        (mug["id"], 2)]
    assert api.stock(mug["id"], 3) == 3
    assert api.client.get("/api/v1/cart", headers=shopper).json()["items"] == []
    again = api.client.put(f"/api/v1/cart/items/{mug['id']}", json={"quantity": 3},
                           headers=shopper)
    assert again.status_code == 200 and again.json()["items"][0]["quantity"] == 3


def test_a_line_added_while_the_checkout_runs_changes_nothing(api, db) -> None:  # type: ignore[no-untyped-def]
    """The line lands between the checkout's read of the cart and its emptying: emptied
    with the rest, it would be neither ordered nor tombstoned (the lake would keep it)."""
    if db.one_writer:
        pytest.skip("SQLite runs one writer at a time: no line can land mid-checkout")
    shopper = api.register()
    mug, pen = api.product(name="Mug", stock=5), api.product(name="Pen", stock=5)
    api.add(shopper, mug["id"], 2)
    customer = _customer_id(api, shopper)
    with db.read() as s:
        cart_id = s.scalar(select(Cart.id).where(Cart.customer_id == customer))
        tombstones = s.scalar(select(func.count()).select_from(DeletedRow))

    def add_a_line() -> None:
        with db.engine.connect() as other, other.begin():  # another request's commit
            other.execute(insert(CartItem).values(
                cart_id=cart_id, product_id=pen["id"], quantity=1, created_at=utcnow(),
                updated_at=utcnow()))

    r, _ = _checkout_interleaved(api, db, shopper, add_a_line)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "cart_changed"), r.text
    assert r.headers["retry-after"] == "1"
    assert _orders(db) == 0
    assert api.stock(mug["id"], 5) == 5
    cart = api.client.get("/api/v1/cart", headers=shopper).json()
    assert sorted((i["product_id"], i["quantity"]) for i in cart["items"]) == sorted(
        [(mug["id"], 2), (pen["id"], 1)])
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(DeletedRow)) == tombstones
    # Looked at again, the cart checks out whole, under a new key or the same one.
    r = api.checkout(shopper)
    assert r.status_code == 201, r.text
    assert sorted((line["product_id"], line["quantity"]) for line in r.json()["lines"]) == \
        sorted([(mug["id"], 2), (pen["id"], 1)])
