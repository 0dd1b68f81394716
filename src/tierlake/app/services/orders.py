"""Checkout and order history.

Checkout is one transaction: it inserts the order (whose unique
``(customer_id, idempotency_key)`` makes a twin that got this far find the first
order instead of creating a second), takes stock with a conditional
``UPDATE inventory SET quantity = quantity - n WHERE quantity >= n`` per line,
in product-id order so concurrent checkouts lock rows in the same order, and
empties the cart. If any line is short, the whole transaction rolls back:
nothing changes, and the customer is told which product is short.

The ``Idempotency-Key`` follows the IETF draft (draft-ietf-httpapi-idempotency-key-header)
and Stripe. The request is the shipping body and the cart's content (product and
quantity per line); its fingerprint is a SHA-256 of both.

* Before the checkout transaction, a short transaction *holds* the cart for the key:
  ``carts.checkout_key``, ``checkout_fingerprint`` and ``checkout_expires_at``
  (``limits.idempotency_lease_seconds`` ahead), committed, so a twin sees it. The
  checkout clears the hold in its own transaction; a checkout refused (empty cart,
  out of stock) releases it. A hold left by a process that died lapses at its expiry.
* A twin of a request in flight (same key, same fingerprint) gets 409
  ``request_in_progress`` with ``Retry-After``; the same key with another request
  gets 422 ``idempotency_key_reused``; another key while the cart is held gets 409
  ``checkout_in_progress``.
* Once the order exists, the same key is answered with it (200) if the request is
  the same: the same shipping body, and a cart that is either empty (the checkout
  emptied it: a true retry) or holds what the order holds. Anything else is 422.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import CursorResult, Result, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tierlake.app.errors import ConflictError, InvalidInputError, NotFoundError, OutOfStockError
from tierlake.app.schemas import OrderCreate, OrderPublic, Page
from tierlake.data.db import Database
from tierlake.data.schema import Cart, Inventory, Order, OrderLine, utcnow
from tierlake.pricing import line_total, totals

log = structlog.get_logger(__name__)
RETRY_AFTER = {"Retry-After": "1"}


def _fingerprint(shipping: dict[str, str], lines: Iterable[tuple[int, int]]) -> str:
    doc = {"shipping": shipping, "cart": sorted(lines)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _shipping_of(order: Order) -> dict[str, str]:
    return {"name": order.ship_name, "address": order.ship_address, "city": order.ship_city,
            "postcode": order.ship_postcode, "country": order.ship_country}


def _cart_lines(cart: Cart | None) -> list[tuple[int, int]]:
    return [(i.product_id, i.quantity) for i in cart.items] if cart is not None else []


def _reused() -> InvalidInputError:
    return InvalidInputError(
        "This Idempotency-Key was used with a different request; use a new key for a new "
        "order.", code="idempotency_key_reused",
        fields=[{"field": "header.Idempotency-Key", "message": "already used for another request",
                 "code": "idempotency_key_reused"}])


def _rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE matched (an UPDATE's result is a cursor result)."""
    return cast(CursorResult[Any], result).rowcount


def _empty() -> ConflictError:
    return ConflictError("Your cart is empty; add something before checking out.",
                         code="cart_empty")


def _placed(s: Session, customer_id: int, key: str, body: OrderCreate) -> OrderPublic | None:
    """The order placed with this key, if the request is the same one; None if none was."""
    order = s.scalar(select(Order).where(Order.customer_id == customer_id,
                                         Order.idempotency_key == key))
    if order is None:
        return None
    ordered = [(line.product_id, line.quantity) for line in order.lines]
    cart = _cart_lines(s.scalar(select(Cart).where(Cart.customer_id == customer_id)))
    if (_fingerprint(body.shipping.model_dump(), cart or ordered)
            != _fingerprint(_shipping_of(order), ordered)):
        raise _reused()
    return OrderPublic.model_validate(order)


def _hold(s: Session, customer_id: int, key: str, body: OrderCreate,
          lease_seconds: float) -> OrderPublic | datetime:
    """Hold the cart for this key (committed before the checkout); returns the hold's expiry,
    or the order already placed with this key."""
    # Lock the cart first: a twin's checkout that is committing holds this row, so what we
    # read next (its order, the emptied cart) is after its commit, never half before.
    cart = s.scalar(select(Cart).where(Cart.customer_id == customer_id).with_for_update())
    if (existing := _placed(s, customer_id, key, body)) is not None:
        return existing
    if cart is None or not cart.items:
        raise _empty()
    fingerprint = _fingerprint(body.shipping.model_dump(), _cart_lines(cart))
    now = utcnow()
    until = now + timedelta(seconds=lease_seconds)
    held = _rowcount(s.execute(
        update(Cart)
        .where(Cart.customer_id == customer_id,
               or_(Cart.checkout_key.is_(None), Cart.checkout_expires_at < now))
        .values(checkout_key=key, checkout_fingerprint=fingerprint, checkout_expires_at=until,
                updated_at=now)
        .execution_options(synchronize_session=False)
    ))
    if held == 1:
        return until
    s.refresh(cart)  # the hold as it is now, not as first read
    if cart.checkout_key != key:
        raise ConflictError("Another checkout of your cart is in progress; wait a moment and "
                            "look at your orders.", code="checkout_in_progress",
                            headers=RETRY_AFTER)
    if cart.checkout_fingerprint != fingerprint:
        raise _reused()
    raise ConflictError("A request with this Idempotency-Key is still being processed; retry "
                        "in a moment to get its result.", code="request_in_progress",
                        headers=RETRY_AFTER)


def _release(db: Database, customer_id: int, key: str, until: datetime) -> None:
    """Give the hold back after a refused checkout (only if it is still ours)."""
    def _free(s: Session) -> None:
        s.execute(update(Cart)
                  .where(Cart.customer_id == customer_id, Cart.checkout_key == key,
                         Cart.checkout_expires_at == until)
                  .values(checkout_key=None, checkout_fingerprint=None,
                          checkout_expires_at=None, updated_at=utcnow())
                  .execution_options(synchronize_session=False))

    try:
        db.write(_free)
    except Exception:  # the checkout's own error is what the client must see
        log.warning("checkout.hold_not_released", customer_id=customer_id, lapses_at=str(until),
                    exc_info=True)


def place_order(db: Database, customer_id: int, key: str, body: OrderCreate,
                lease_seconds: float = 60) -> tuple[OrderPublic, bool]:
    """Check the cart out. Returns the order and whether it was created by this call."""
    until = db.write(lambda s: _hold(s, customer_id, key, body, lease_seconds))
    if isinstance(until, OrderPublic):
        return until, False
    created = False  # a placed order cleared the hold in its own transaction
    try:
        order, created = db.write(lambda s: _place(s, customer_id, key, body))
        return order, created
    except IntegrityError:
        # A twin that took over a lapsed hold placed this key's order first: answer with it.
        with db.read() as s:
            existing = _placed(s, customer_id, key, body)
        if existing is None:
            raise
        return existing, False
    finally:
        if not created:
            _release(db, customer_id, key, until)


def _place(s: Session, customer_id: int, key: str, body: OrderCreate) -> tuple[OrderPublic, bool]:
    if (existing := _placed(s, customer_id, key, body)) is not None:
        return existing, False
    cart = s.scalar(select(Cart).where(Cart.customer_id == customer_id))
    items = sorted(cart.items if cart else [], key=lambda i: i.product_id)
    if cart is None or not items:
        raise _empty()
    for item in items:
        if not item.product.active:
            raise ConflictError(
                f"{item.product.name!r} is no longer sold; remove it from your cart.",
                code="product_unavailable")
    now = utcnow()
    figures = totals([(i.product.price_cents, i.quantity) for i in items])
    ship = body.shipping
    order = Order(
        customer_id=customer_id, idempotency_key=key, status="placed",
        item_count=figures.item_count, subtotal_cents=figures.subtotal_cents,
        shipping_cents=figures.shipping_cents, total_cents=figures.total_cents,
        ship_name=ship.name, ship_address=ship.address, ship_city=ship.city,
        ship_postcode=ship.postcode, ship_country=ship.country, placed_at=now, created_at=now,
        updated_at=now,
    )
    s.add(order)
    s.flush()  # the idempotency key's unique constraint is checked here
    for item in items:
        taken = _rowcount(s.execute(
            update(Inventory)
            .where(Inventory.product_id == item.product_id, Inventory.quantity >= item.quantity)
            .values(quantity=Inventory.quantity - item.quantity, updated_at=now)
            .execution_options(synchronize_session=False)
        ))
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
                        line_total_cents=line_total(item.product.price_cents, item.quantity),
                        created_at=now, updated_at=now))
    cart.items.clear()
    cart.checkout_key = cart.checkout_fingerprint = None
    cart.checkout_expires_at = None
    s.flush()
    s.refresh(order)
    return OrderPublic.model_validate(order), True


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
