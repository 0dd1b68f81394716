"""Checkout and order history.

Checkout is one transaction: it inserts the order (whose unique
``(customer_id, idempotency_key)`` makes a retried request find the first
order instead of creating a second), takes stock with a conditional
``UPDATE inventory SET quantity = quantity - n WHERE quantity >= n`` per line,
in product-id order so concurrent checkouts lock rows in the same order, and
empties the cart. If any line is short, the whole transaction rolls back:
nothing changes, and the customer is told which product is short.
"""

from __future__ import annotations

import math
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tierlake.app.errors import ConflictError, NotFoundError, OutOfStockError
from tierlake.app.schemas import OrderCreate, OrderPublic, Page
from tierlake.app.services.carts import shipping_for
from tierlake.data.db import Database
from tierlake.data.schema import Cart, Inventory, Order, OrderLine, utcnow


def _by_key(s: Session, customer_id: int, key: str) -> Order | None:
    return s.scalar(select(Order).where(Order.customer_id == customer_id,
                                        Order.idempotency_key == key))


def place_order(db: Database, customer_id: int, key: str, body: OrderCreate
                ) -> tuple[OrderPublic, bool]:
    """Check the cart out. Returns the order and whether it was created by this call."""
    with db.read() as s:
        existing = _by_key(s, customer_id, key)
        if existing is not None:
            return OrderPublic.model_validate(existing), False
    try:
        return db.write(lambda s: _place(s, customer_id, key, body)), True
    except IntegrityError:
        with db.read() as s:  # the same key was placed concurrently: answer with that order
            existing = _by_key(s, customer_id, key)
            if existing is None:
                raise
            return OrderPublic.model_validate(existing), False


def _place(s: Session, customer_id: int, key: str, body: OrderCreate) -> OrderPublic:
    cart = s.scalar(select(Cart).where(Cart.customer_id == customer_id))
    items = sorted(cart.items if cart else [], key=lambda i: i.product_id)
    if not items:
        raise ConflictError("Your cart is empty; add something before checking out.",
                            code="cart_empty")
    for item in items:
        if not item.product.active:
            raise ConflictError(
                f"{item.product.name!r} is no longer sold; remove it from your cart.",
                code="product_unavailable")
    now = utcnow()
    subtotal = sum(i.product.price_cents * i.quantity for i in items)
    shipping = shipping_for(subtotal)
    ship = body.shipping
    order = Order(
        customer_id=customer_id, idempotency_key=key, status="placed",
        item_count=sum(i.quantity for i in items), subtotal_cents=subtotal,
        shipping_cents=shipping, total_cents=subtotal + shipping, ship_name=ship.name,
        ship_address=ship.address, ship_city=ship.city, ship_postcode=ship.postcode,
        ship_country=ship.country, placed_at=now, created_at=now, updated_at=now,
    )
    s.add(order)
    s.flush()  # the idempotency key's unique constraint is checked here
    for item in items:
        taken = cast(CursorResult[Any], s.execute(
            update(Inventory)
            .where(Inventory.product_id == item.product_id, Inventory.quantity >= item.quantity)
            .values(quantity=Inventory.quantity - item.quantity, updated_at=now)
            .execution_options(synchronize_session=False)
        )).rowcount
        if taken != 1:
            left = s.scalar(select(Inventory.quantity)
                            .where(Inventory.product_id == item.product_id)) or 0
            raise OutOfStockError(
                f"Only {left} of {item.product.name!r} left and your cart has {item.quantity}; "
                "change the quantity and check out again." if left
                else f"{item.product.name!r} has just sold out; remove it from your cart.",
                fields=[{"field": f"cart.{item.product_id}", "message": f"{left} left"}])
        s.add(OrderLine(order_id=order.id, product_id=item.product_id,
                        product_name=item.product.name, quantity=item.quantity,
                        unit_price_cents=item.product.price_cents,
                        line_total_cents=item.product.price_cents * item.quantity,
                        created_at=now, updated_at=now))
    cart.items.clear()  # type: ignore[union-attr]
    s.flush()
    s.refresh(order)
    return OrderPublic.model_validate(order)


def list_orders(db: Database, customer_id: int, page: int, page_size: int) -> Page[OrderPublic]:
    with db.read() as s:
        total = s.scalar(select(func.count(Order.id)).where(Order.customer_id == customer_id)) or 0
        orders = s.scalars(
            select(Order).where(Order.customer_id == customer_id)
            .order_by(Order.placed_at.desc(), Order.id.desc())
            .limit(page_size).offset((page - 1) * page_size)
        )
        items = [OrderPublic.model_validate(o) for o in orders]
    return Page[OrderPublic](items=items, total=total, page=page, page_size=page_size,
                             pages=max(1, math.ceil(total / page_size)))


def read_order(db: Database, customer_id: int, order_id: int) -> OrderPublic:
    with db.read() as s:
        order = s.scalar(select(Order).where(Order.id == order_id,
                                             Order.customer_id == customer_id))
        if order is None:
            raise NotFoundError(f"No order {order_id} in your account.")
        return OrderPublic.model_validate(order)
