"""Cart and checkout: totals, stock, idempotency, history."""

from __future__ import annotations

from sqlalchemy import func, select

from tierlake.data.schema import Order


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
    assert api.client.get(f"/api/v1/products/{p['id']}").json()["stock"] == 4


def test_idempotency_key_is_required_and_validated(api) -> None:
    shopper = api.register()
    r = api.client.post("/api/v1/orders", json={"shipping": {}}, headers=shopper)
    assert r.status_code == 422
    assert "header.Idempotency-Key" in {f["field"] for f in r.json()["error"]["fields"]}


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
