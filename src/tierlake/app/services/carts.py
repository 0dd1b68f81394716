"""A customer's cart: one open cart per customer, lines keyed by product.

A change to the cart while a checkout holds it (MariaDB, PostgreSQL: the hold is committed
before the checkout's transaction, :mod:`tierlake.app.services.orders`) is refused with 409
``checkout_in_progress``: the checkout has read the cart and is about to empty it, so a
changed quantity would be emptied with the rest and the order would keep the old one. The
change reads the cart row ``FOR UPDATE`` first, so it either commits before the hold is
taken (and the checkout orders it) or sees the hold.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tierlake.app.errors import ConflictError, NotFoundError, OutOfStockError
from tierlake.app.schemas import CartItemPublic, CartPublic
from tierlake.data.db import Database
from tierlake.data.schema import Cart, CartItem, Product, utcnow
from tierlake.pricing import line_total, totals


def cart_public(cart: Cart | None) -> CartPublic:
    items = []
    for item in cart.items if cart is not None else []:
        p = item.product
        stock = p.inventory.quantity if p.inventory is not None else 0
        items.append(CartItemPublic(
            product_id=p.id, sku=p.sku, slug=p.slug, name=p.name,
            unit_price_cents=p.price_cents, quantity=item.quantity,
            line_total_cents=line_total(p.price_cents, item.quantity),
            available=p.active and stock >= item.quantity,
        ))
    figures = totals([(i.unit_price_cents, i.quantity) for i in items])
    return CartPublic(items=items, item_count=figures.item_count,
                      subtotal_cents=figures.subtotal_cents,
                      shipping_cents=figures.shipping_cents, total_cents=figures.total_cents)


def _cart(s: Session, customer_id: int) -> Cart | None:
    return s.scalar(select(Cart).where(Cart.customer_id == customer_id))


def read_cart(db: Database, customer_id: int) -> CartPublic:
    with db.read() as s:
        return cart_public(_cart(s, customer_id))


def set_item(db: Database, customer_id: int, product_id: int, quantity: int) -> CartPublic:
    """Set a product's quantity in the cart; 0 removes it."""

    def _set(s: Session) -> CartPublic:
        cart = s.scalar(select(Cart).where(Cart.customer_id == customer_id).with_for_update())
        held_until = cart.checkout_expires_at if cart is not None else None
        if held_until is not None and held_until >= utcnow():
            raise ConflictError("This cart is being checked out; change it once the order is "
                                "placed (it empties the cart) or refused.",
                                code="checkout_in_progress", headers={"Retry-After": "1"})
        item = None
        if cart is not None:
            item = next((i for i in cart.items if i.product_id == product_id), None)
        if quantity == 0:
            if item is not None:
                cart.items.remove(item)  # type: ignore[union-attr]
            return cart_public(cart)
        product = s.get(Product, product_id)
        if product is None or not product.active:
            raise NotFoundError(f"No product {product_id} on sale.")
        stock = product.inventory.quantity if product.inventory is not None else 0
        if quantity > stock:
            raise OutOfStockError(
                f"Only {stock} of {product.name!r} left; choose {stock} or fewer."
                if stock else f"{product.name!r} is out of stock.",
                fields=[{"field": "body.quantity", "message": f"at most {stock}"}])
        if cart is None:
            cart = Cart(customer_id=customer_id)
            s.add(cart)
        if item is None:
            cart.items.append(CartItem(product_id=product_id, quantity=quantity, product=product))
        else:
            item.quantity = quantity
        s.flush()
        return cart_public(cart)

    try:
        return db.write(_set)
    except IntegrityError:
        # Two first adds of the same customer raced to create the cart (its customer_id is
        # unique); the loser tries again and now finds the winner's cart.
        return db.write(_set)
