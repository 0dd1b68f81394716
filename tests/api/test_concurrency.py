"""Checkout under contention, through a real HTTP server: no oversell, nothing else touched."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import select

from tierlake.data.schema import STORE_TABLES, Base, Cart

BUYERS, UNITS = 50, 10
# The app's cache (tests/api/conftest.py's cache_mode) and a read replica (its db fixture's
# "replica"): checkout must care about neither.
VARIANTS = [("memory", "primary"), ("redis", "primary"), ("off", "primary"),
            ("memory", "replica")]


def _snapshot(db) -> dict[str, set[tuple]]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return {name: {tuple(r) for r in s.execute(select(Base.metadata.tables[name]))}
                for name in STORE_TABLES}


@pytest.mark.parametrize(("cache_mode", "db"), VARIANTS, indirect=["db"])
def test_fifty_checkouts_for_the_last_ten_units(api, db, server_url) -> None:
    scarce = api.product(name="Last Few", stock=UNITS)
    other = api.product(name="Bystander", stock=100)
    buyers = [api.register() for _ in range(BUYERS)]
    for headers in buyers:
        api.add(headers, scarce["id"], 1)
    # The pages every buyer saw say "in stock" (cached, where the cache is on): checkout
    # must still sell only what the database holds.
    assert api.client.get(f"/api/v1/products/{scarce['id']}").json()["in_stock"] is True
    before = _snapshot(db)

    async def checkout_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server_url, timeout=60) as client:
            start = asyncio.Event()

            async def one(headers: dict[str, str]) -> httpx.Response:
                await start.wait()
                return await client.post(
                    "/api/v1/orders", headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                    json={"shipping": {"name": "A", "address": "1 Way", "city": "C",
                                       "postcode": "1", "country": "GB"}})

            tasks = [asyncio.create_task(one(h)) for h in buyers]
            await asyncio.sleep(0.1)
            start.set()
            return await asyncio.gather(*tasks)

    responses = asyncio.run(checkout_all())
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * UNITS + [409] * (BUYERS - UNITS), [r.text for r in responses
                                                              if r.status_code not in (201, 409)]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "out_of_stock"}
    winners = [r.json() for r in responses if r.status_code == 201]

    after = _snapshot(db)
    assert api.stock(scarce["id"], 0) == 0
    assert api.stock(other["id"], 100) == 100
    # Exactly the expected rows changed, and nothing else.
    for name in ("categories", "products", "customers", "auth_sessions"):
        assert after[name] == before[name], name
    # Carts: the same carts, and every checkout's hold on its cart given back.
    with db.read() as s:
        carts = s.execute(select(Cart.id, Cart.customer_id, Cart.checkout_key,
                                 Cart.checkout_fingerprint, Cart.checkout_expires_at)).all()
    assert {(c[0], c[1]) for c in carts} == {(c[0], c[1]) for c in before["carts"]}
    assert {c[2:] for c in carts} == {(None, None, None)}
    (old_stock,) = before["inventory"] - after["inventory"]
    (new_stock,) = after["inventory"] - before["inventory"]
    assert (old_stock[0], old_stock[1], new_stock[0], new_stock[1]) == (
        scarce["id"], UNITS, scarce["id"], 0)
    assert len(after["orders"] - before["orders"]) == UNITS
    assert not before["orders"] - after["orders"]
    new_lines = after["order_lines"] - before["order_lines"]
    assert len(new_lines) == UNITS
    assert {o["id"] for o in winners} == {line[1] for line in new_lines}
    removed_items = before["cart_items"] - after["cart_items"]
    assert len(removed_items) == UNITS and not after["cart_items"] - before["cart_items"]
    tombstones = after["deleted_rows"] - before["deleted_rows"]
    assert sorted(t[2] for t in tombstones) == sorted(str(i[0]) for i in removed_items)


def test_first_adds_to_a_new_cart_racing_make_one_cart(api, db, server_url) -> None:
    """Two tabs adding to an empty cart at once: both succeed, one cart, no 500."""
    shopper = api.register()
    products = [api.product(name=f"P{i}", stock=5) for i in range(6)]

    async def add_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server_url, timeout=60) as client:
            return await asyncio.gather(*[
                client.put(f"/api/v1/cart/items/{p['id']}", json={"quantity": 1},
                           headers=shopper) for p in products])

    responses = asyncio.run(add_all())
    assert [r.status_code for r in responses] == [200] * len(products), [r.text for r in responses]
    cart = api.client.get("/api/v1/cart", headers=shopper).json()
    assert sorted(i["product_id"] for i in cart["items"]) == sorted(p["id"] for p in products)
    with db.read() as s:
        assert len(s.scalars(select(Cart)).all()) == 1
