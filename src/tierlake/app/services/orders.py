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

On SQLite, which runs one write transaction at a time, the hold is neither written nor
needed: the checkout is one transaction (:func:`checkout` says why), n + 6 statements: the
token lookup, the cart with its hold and its lines' products in one read, then as below
without the hold's clearing.

Cost, in statements (SQLAlchemy Core statements prepared once per dialect and run on the
cursor, :mod:`tierlake.data.prepared`; one pooled connection for the whole request;
``tests/api/test_statements.py`` counts them): the hold transaction 3 (the token lookup,
unless the session cache knows the token; the cart locked and read with its lines in one
statement; the hold written); the checkout n + 6 for n lines (read the cart with its
products, insert the order, n stock updates, the lines in one multi-row insert, delete the
cart's lines, their tombstones in one multi-row insert, clear the hold). The response is
built from what was written, not read back. This key's order is looked for only when the
cart is empty (a retry after the checkout emptied it) or the checkout hits the order's
unique ``(customer_id, idempotency_key)`` (a retry after the cart was filled again).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tierlake.app.cache import Cache
from tierlake.app.errors import ConflictError, InvalidInputError, NotFoundError, OutOfStockError
from tierlake.app.schemas import OrderCreate, OrderLinePublic, OrderPublic, Page
from tierlake.app.services.accounts import session_customer_id
from tierlake.data.db import Database
from tierlake.data.prepared import Prepared
from tierlake.data.schema import (
    Cart,
    CartItem,
    DeletedRow,
    Inventory,
    Order,
    OrderLine,
    Product,
    utcnow,
)
from tierlake.pricing import line_total, totals

log = structlog.get_logger(__name__)
RETRY_AFTER = {"Retry-After": "1"}


def _fingerprint(shipping: dict[str, str], lines: Iterable[tuple[int, int]]) -> str:
    doc = {"shipping": shipping, "cart": sorted(lines)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _reused() -> InvalidInputError:
    return InvalidInputError(
        "This Idempotency-Key was used with a different request; use a new key for a new "
        "order.", code="idempotency_key_reused",
        fields=[{"field": "header.Idempotency-Key", "message": "already used for another request",
                 "code": "idempotency_key_reused"}])


def _cart_changed() -> ConflictError:
    return ConflictError("Your cart changed while it was being checked out; nothing was "
                         "ordered. Look at your cart and check out again.",
                         code="cart_changed", headers=RETRY_AFTER)


def _empty() -> ConflictError:
    return ConflictError("Your cart is empty; add something before checking out.",
                         code="cart_empty")


# The checkout's statements: compiled once per dialect, run on the request's connection's
# cursor (tierlake.data.prepared says why and how).
_ORDER_COLUMNS = (Order.id, Order.status, Order.item_count, Order.subtotal_cents,
                  Order.shipping_cents, Order.total_cents, Order.ship_name, Order.ship_address,
                  Order.ship_city, Order.ship_postcode, Order.ship_country, Order.placed_at)
_ORDER_BY_KEY = Prepared(
    select(*_ORDER_COLUMNS).where(Order.customer_id == bindparam("customer_id"),
                                  Order.idempotency_key == bindparam("key")))
_ORDER_LINES = Prepared(
    select(OrderLine.product_id, OrderLine.product_name, OrderLine.quantity,
           OrderLine.unit_price_cents, OrderLine.line_total_cents)
    .where(OrderLine.order_id == bindparam("order_id")).order_by(OrderLine.id))
_CART_OF = Prepared(select(Cart.id).where(Cart.customer_id == bindparam("customer_id")))
# The cart's row and its lines, locked (no row: no cart, or an empty one). Every table is
# locked, not the cart alone: PostgreSQL re-reads only the rows it locked once a lock wait
# ends, so a twin that waited on a checkout's commit must not see its old lines.
_LOCK_CART = Prepared(
    select(Cart.id, Cart.checkout_key, Cart.checkout_fingerprint, CartItem.product_id,
           CartItem.quantity)
    .join(CartItem, CartItem.cart_id == Cart.id)
    .where(Cart.customer_id == bindparam("customer_id"))
    .with_for_update())
_CART_LINES = Prepared(select(CartItem.product_id, CartItem.quantity).where(
    CartItem.cart_id == bindparam("cart_id")))
_TAKE_HOLD = Prepared(
    update(Cart)
    .where(Cart.id == bindparam("cart_id"),
           or_(Cart.checkout_key.is_(None),
               Cart.checkout_expires_at < bindparam("now", type_=Cart.updated_at.type)))
    .values(checkout_key=bindparam("key"), checkout_fingerprint=bindparam("fingerprint"),
            checkout_expires_at=bindparam("until", type_=Cart.updated_at.type),
            updated_at=bindparam("now", type_=Cart.updated_at.type)))
_FREE_HOLD = Prepared(
    update(Cart)
    .where(Cart.customer_id == bindparam("cust"),
           Cart.checkout_key == bindparam("key"),
           Cart.checkout_expires_at == bindparam("until", type_=Cart.updated_at.type))
    .values(checkout_key=None, checkout_fingerprint=None, checkout_expires_at=None,
            updated_at=bindparam("now", type_=Cart.updated_at.type)))
_CART_TO_ORDER = Prepared(
    select(CartItem.id, CartItem.product_id, CartItem.quantity, Product.name,
           Product.price_cents, Product.active, Cart.id.label("cart_id"))
    .join(CartItem, CartItem.cart_id == Cart.id)
    .join(Product, Product.id == CartItem.product_id)
    .where(Cart.customer_id == bindparam("customer_id"))
    .order_by(CartItem.product_id))
# (An UPDATE's bind names must not be its table's column names.)
_TAKE_STOCK = Prepared(
    update(Inventory)
    .where(Inventory.product_id == bindparam("pid"), Inventory.quantity >= bindparam("qty"))
    .values(quantity=Inventory.quantity - bindparam("qty"),
            updated_at=bindparam("now", type_=Inventory.updated_at.type)))
# SQLite's one-transaction checkout (see checkout()): the cart, its hold, its lines with
# their products, in one read (an empty cart: one row, its lines' columns NULL).
_CART_FOR_CHECKOUT = Prepared(
    select(Cart.id.label("cart_id"), Cart.checkout_key, Cart.checkout_fingerprint,
           Cart.checkout_expires_at, CartItem.id, CartItem.product_id, CartItem.quantity,
           Product.name, Product.price_cents, Product.active)
    .select_from(Cart)
    .outerjoin(CartItem, CartItem.cart_id == Cart.id)
    .outerjoin(Product, Product.id == CartItem.product_id)
    .where(Cart.customer_id == bindparam("customer_id"))
    .order_by(CartItem.product_id))
_STOCK_LEFT = Prepared(
    select(Inventory.quantity).where(Inventory.product_id == bindparam("product_id")))
_INSERT_ORDER = Prepared(insert(Order), keys=(
    "customer_id", "idempotency_key", "status", "item_count", "subtotal_cents", "shipping_cents",
    "total_cents", "ship_name", "ship_address", "ship_city", "ship_postcode", "ship_country",
    "placed_at", "created_at", "updated_at"))
_INSERT_LINES = Prepared(insert(OrderLine), many=True, keys=(
    "order_id", "product_id", "product_name", "quantity", "unit_price_cents", "line_total_cents",
    "created_at", "updated_at"))
_INSERT_TOMBSTONES = Prepared(insert(DeletedRow), many=True,
                              keys=("table_name", "row_key", "deleted_at"))
_EMPTY_CART = Prepared(delete(CartItem).where(CartItem.cart_id == bindparam("cart_id")))
_CLEAR_HOLD = Prepared(
    update(Cart).where(Cart.id == bindparam("cart_id"))
    .values(checkout_key=None, checkout_fingerprint=None, checkout_expires_at=None,
            updated_at=bindparam("now", type_=Cart.updated_at.type)))


def _order_public(row: Any, lines: list[OrderLinePublic]) -> OrderPublic:
    return OrderPublic(id=row.id, status=row.status, item_count=row.item_count,
                       subtotal_cents=row.subtotal_cents, shipping_cents=row.shipping_cents,
                       total_cents=row.total_cents, ship_name=row.ship_name,
                       ship_address=row.ship_address, ship_city=row.ship_city,
                       ship_postcode=row.ship_postcode, ship_country=row.ship_country,
                       placed_at=row.placed_at, lines=lines)


def _placed(conn: Connection, customer_id: int, key: str, body: OrderCreate,
            cart: list[tuple[int, int]] | None = None) -> OrderPublic | None:
    """The order placed with this key, if the request is the same one; None if none was.
    ``cart``: the cart's lines, when the caller has just read them."""
    order = _ORDER_BY_KEY.first(conn, {"customer_id": customer_id, "key": key})
    if order is None:
        return None
    lines = [OrderLinePublic(product_id=r.product_id, product_name=r.product_name,
                             quantity=r.quantity, unit_price_cents=r.unit_price_cents,
                             line_total_cents=r.line_total_cents)
             for r in _ORDER_LINES.all(conn, {"order_id": order.id})]
    ordered = [(line.product_id, line.quantity) for line in lines]
    if cart is None:
        cart_id = _CART_OF.scalar(conn, {"customer_id": customer_id})
        cart = ([(r.product_id, r.quantity)
                 for r in _CART_LINES.all(conn, {"cart_id": cart_id})]
                if cart_id is not None else [])
    shipping = {"name": order.ship_name, "address": order.ship_address,
                "city": order.ship_city, "postcode": order.ship_postcode,
                "country": order.ship_country}
    if (_fingerprint(body.shipping.model_dump(), cart or ordered)
            != _fingerprint(shipping, ordered)):
        raise _reused()
    return _order_public(order, lines)


def _hold(conn: Connection, customer_id: int, key: str, body: OrderCreate,
          lease_seconds: float) -> OrderPublic | datetime:
    """Hold the cart for this key (committed before the checkout); returns the hold's expiry,
    or the order already placed with this key."""
    # Lock the cart first: a twin's checkout that is committing holds this row, so what we
    # read (its order, the emptied cart) is after its commit, never half before.
    rows = _LOCK_CART.all(conn, {"customer_id": customer_id})
    lines = [(r.product_id, r.quantity) for r in rows]
    if not lines:
        # A retry of a checkout that emptied the cart is answered with its order. (A cart
        # filled again meets the order's unique key in _place_order instead.)
        if (existing := _placed(conn, customer_id, key, body, cart=[])) is not None:
            return existing
        raise _empty()
    cart = rows[0]
    fingerprint = _fingerprint(body.shipping.model_dump(), lines)
    now = utcnow()
    until = now + timedelta(seconds=lease_seconds)
    held = _TAKE_HOLD.rowcount(conn, {"cart_id": cart.id, "now": now, "key": key,
                                        "fingerprint": fingerprint, "until": until})
    if held == 1:
        return until
    # The row is locked (FOR UPDATE, or SQLite's write lock): the hold read above is current.
    raise _in_flight(cart, key, fingerprint)


def _in_flight(cart: Any, key: str, fingerprint: str) -> Exception:
    """What a request meets when the cart is held by a checkout in flight."""
    if cart.checkout_key != key:
        return ConflictError("Another checkout of your cart is in progress; wait a moment and "
                             "look at your orders.", code="checkout_in_progress",
                             headers=RETRY_AFTER)
    if cart.checkout_fingerprint != fingerprint:
        return _reused()
    return ConflictError("A request with this Idempotency-Key is still being processed; retry "
                         "in a moment to get its result.", code="request_in_progress",
                         headers=RETRY_AFTER)


def _at_once(conn: Connection, customer_id: int, key: str, body: OrderCreate
             ) -> tuple[OrderPublic, bool]:
    """The whole checkout in the caller's one write transaction (SQLite: see checkout())."""
    rows = _CART_FOR_CHECKOUT.all(conn, {"customer_id": customer_id})
    items = [r for r in rows if r.product_id is not None]
    if not items:
        if (existing := _placed(conn, customer_id, key, body, cart=[])) is not None:
            return existing, False
        raise _empty()
    cart = rows[0]
    if cart.checkout_key is not None and cart.checkout_expires_at >= utcnow():
        # Held by a checkout that commits its hold first (not this process's way on SQLite).
        raise _in_flight(cart, key, _fingerprint(body.shipping.model_dump(),
                                                 [(i.product_id, i.quantity) for i in items]))
    return _place_items(conn, customer_id, key, body, items,
                        clear_hold=cart.checkout_key is not None), True


def _release(db: Database, conn: Connection, customer_id: int, key: str,
             until: datetime) -> None:
    """Give the hold back after a refused checkout (only if it is still ours)."""
    try:
        db.transaction(conn, lambda c: _FREE_HOLD.rowcount(c, {
            "cust": customer_id, "key": key, "until": until, "now": utcnow()}))
    except Exception:  # the checkout's own error is what the client must see
        log.warning("checkout.hold_not_released", customer_id=customer_id, lapses_at=str(until),
                    exc_info=True)


def checkout(db: Database, cache: Cache, token: str | None, key: str, body: OrderCreate,
             lease_seconds: float = 60) -> tuple[OrderPublic, bool]:
    """Check the cart out: the whole request on one pooled connection. Returns the order and
    whether this call created it.

    The bearer token is looked up inside the first write transaction, which saves a
    transaction of its own: the in-process session cache first, the database only with a
    shared cache (a Redis lookup costs a round trip, as the statement does). Once an order
    is placed (committed), the cache entries showing its products' stock are invalidated;
    the stock itself is only ever taken in the database, never on the cache's word.

    Where the database runs one write transaction at a time (SQLite, across every process
    on the file), the checkout is one transaction and writes no hold: no other request could
    look at a committed hold before the checkout's own commit anyway, since it would need
    the write lock to look. A twin waits for the lock (the checkout's few milliseconds) and
    then finds the order. On servers with row locks (MariaDB, PostgreSQL) a twin would
    instead wait on the cart's row for as long as the checkout takes, holding a connection:
    there the hold is committed first, and a twin is told 409 at once."""
    # A shared cache (Redis) answers over the network: as dear as the token's statement in
    # the transaction this request opens anyway, and a miss costs two round trips more.
    cached = cache.mode != "redis"

    def _request(conn: Connection) -> tuple[OrderPublic, bool]:
        customer_id = 0
        if db.one_writer:
            def _authenticated_checkout(c: Connection) -> tuple[OrderPublic, bool]:
                nonlocal customer_id
                customer_id = session_customer_id(cache, token, lambda read: read(c), cached=cached)
                return _at_once(c, customer_id, key, body)

            try:
                return db.transaction(conn, _authenticated_checkout)
            except IntegrityError:  # this key's order exists (see _place_order)
                if (existing := _placed(conn, customer_id, key, body)) is None:
                    raise
                return existing, False

        def _authenticated_hold(c: Connection) -> OrderPublic | datetime:
            nonlocal customer_id
            customer_id = session_customer_id(cache, token, lambda read: read(c), cached=cached)
            return _hold(c, customer_id, key, body, lease_seconds)

        until = db.transaction(conn, _authenticated_hold)
        if isinstance(until, OrderPublic):
            return until, False
        return _place_order(db, conn, customer_id, key, body, until)

    order, created = db.run(_request)
    if created:
        cache.invalidate_products(line.product_id for line in order.lines)
    return order, created


def _place_order(db: Database, conn: Connection, customer_id: int, key: str, body: OrderCreate,
                 until: datetime) -> tuple[OrderPublic, bool]:
    """The checkout transaction, once the cart is held for ``key`` until ``until``."""
    created = False  # a placed order cleared the hold in its own transaction
    try:
        order = db.transaction(conn, lambda c: _place(c, customer_id, key, body))
        created = True
        return order, created
    except IntegrityError:
        # This key's order exists: a retry whose cart was filled again (the same lines: the
        # order; others: 422), or a twin that took over a lapsed hold and placed it first.
        existing = _placed(conn, customer_id, key, body)
        if existing is None:
            raise
        return existing, False
    finally:
        if not created:
            _release(db, conn, customer_id, key, until)


def _place(conn: Connection, customer_id: int, key: str, body: OrderCreate) -> OrderPublic:
    items = _CART_TO_ORDER.all(conn, {"customer_id": customer_id})
    if not items:
        raise _empty()
    return _place_items(conn, customer_id, key, body, items, clear_hold=True)


def _place_items(conn: Connection, customer_id: int, key: str, body: OrderCreate,
                 items: Sequence[Any], *, clear_hold: bool) -> OrderPublic:
    """Place the order of the cart's ``items`` (read in this transaction, in product-id
    order), take their stock and empty the cart; ``clear_hold``: the cart's hold too."""
    for item in items:
        if not item.active:
            raise ConflictError(f"{item.name!r} is no longer sold; remove it from your cart.",
                                code="product_unavailable")
    now = utcnow()
    figures = totals([(i.price_cents, i.quantity) for i in items])
    ship = body.shipping
    # The idempotency key's unique constraint is checked here (IntegrityError on a replay).
    order_id = _INSERT_ORDER.insert(conn, {
        "customer_id": customer_id, "idempotency_key": key, "status": "placed",
        "item_count": figures.item_count, "subtotal_cents": figures.subtotal_cents,
        "shipping_cents": figures.shipping_cents, "total_cents": figures.total_cents,
        "ship_name": ship.name, "ship_address": ship.address, "ship_city": ship.city,
        "ship_postcode": ship.postcode, "ship_country": ship.country, "placed_at": now,
        "created_at": now, "updated_at": now,
    })
    # Stock in product-id order (the cart query's order), so concurrent checkouts lock
    # inventory rows in the same order and cannot deadlock on each other.
    for item in items:
        taken = _TAKE_STOCK.rowcount(conn, {
            "pid": item.product_id, "qty": item.quantity, "now": now})
        if taken != 1:
            left = _STOCK_LEFT.scalar(conn, {"product_id": item.product_id}) or 0
            raise OutOfStockError(
                f"Only {left} of {item.name!r} left and your cart has {item.quantity}; "
                "change the quantity and check out again." if left
                else f"{item.name!r} has just sold out; remove it from your cart.",
                fields=[{"field": f"cart.{item.product_id}", "message": f"{left} left"}])
    lines = [OrderLinePublic(product_id=i.product_id, product_name=i.name, quantity=i.quantity,
                             unit_price_cents=i.price_cents,
                             line_total_cents=line_total(i.price_cents, i.quantity))
             for i in items]
    _INSERT_LINES.rowcount(conn, [
        {"order_id": order_id, **line.model_dump(), "created_at": now, "updated_at": now}
        for line in lines])
    cart_id = items[0].cart_id
    if _EMPTY_CART.rowcount(conn, {"cart_id": cart_id}) != len(items):
        # A line was added after the cart was read (MariaDB and PostgreSQL read committed
        # rows; a new line takes no lock we hold): it would go neither into the order nor
        # into a tombstone. Nothing is kept; the customer looks at the cart again.
        raise _cart_changed()
    # The tombstones the extract reads (schema.DeletedRow), one multi-row insert.
    _INSERT_TOMBSTONES.rowcount(conn, [
        {"table_name": CartItem.__tablename__, "row_key": str(i.id), "deleted_at": now}
        for i in items])
    if clear_hold:
        _CLEAR_HOLD.rowcount(conn, {"cart_id": cart_id, "now": now})
    return OrderPublic(id=order_id, status="placed", item_count=figures.item_count,
                       subtotal_cents=figures.subtotal_cents,
                       shipping_cents=figures.shipping_cents, total_cents=figures.total_cents,
                       ship_name=ship.name, ship_address=ship.address, ship_city=ship.city,
                       ship_postcode=ship.postcode, ship_country=ship.country, placed_at=now,
                       lines=lines)


def list_orders(db: Database, customer_id: int, page: int, page_size: int) -> Page[OrderPublic]:
    """The history page: on a replica, once it has the customer's own latest orders."""
    def _read(s: Session) -> tuple[int, list[OrderPublic]]:
        total = s.scalar(select(func.count(Order.id)).where(Order.customer_id == customer_id)) or 0
        orders = s.scalars(
            select(Order).where(Order.customer_id == customer_id)
            .order_by(Order.placed_at.desc(), Order.id.desc())
            .limit(page_size).offset((page - 1) * page_size)
        )
        return total, [OrderPublic.model_validate(o) for o in orders]

    total, items = db.reading(_read, stale_ok=True, read_your_writes=True)
    return Page[OrderPublic](items=items, total=total, page=page, page_size=page_size,
                             pages=max(1, math.ceil(total / page_size)))


def read_order(db: Database, customer_id: int, order_id: int) -> OrderPublic:
    def _read(s: Session) -> OrderPublic:
        order = s.scalar(select(Order).where(Order.id == order_id,
                                             Order.customer_id == customer_id))
        if order is None:
            raise NotFoundError(f"No order {order_id} in your account.")
        return OrderPublic.model_validate(order)

    return db.reading(_read, stale_ok=True, read_your_writes=True)
