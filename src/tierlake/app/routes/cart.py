"""Cart endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tierlake.app.deps import DB, CurrentCustomer
from tierlake.app.routes.ids import ProductId
from tierlake.app.schemas import CartItemSet, CartPublic, ErrorResponse
from tierlake.app.services import carts

router = APIRouter(tags=["cart"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
    409: {"model": ErrorResponse, "description": "Out of stock, or `checkout_in_progress`: "
          "a checkout holds the cart (retry after `Retry-After`)."},
    413: {"model": ErrorResponse}}


@router.get("/cart", response_model=CartPublic, responses=ERRORS)
def read_cart(db: DB, customer: CurrentCustomer) -> CartPublic:
    """The logged-in customer's cart with totals."""
    return carts.read_cart(db, customer.id)


@router.put("/cart/items/{product_id}", response_model=CartPublic, responses=ERRORS)
def set_item(db: DB, customer: CurrentCustomer, product_id: ProductId,
             body: CartItemSet) -> CartPublic:
    """Set how many of a product are in the cart (0 removes it)."""
    return carts.set_item(db, customer.id, product_id, body.quantity)


@router.delete("/cart/items/{product_id}", response_model=CartPublic, responses=ERRORS)
def remove_item(db: DB, customer: CurrentCustomer, product_id: ProductId) -> CartPublic:
    """Remove a product from the cart."""
    return carts.set_item(db, customer.id, product_id, 0)
