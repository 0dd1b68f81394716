"""Checkout and order history endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from tierlake.app.deps import DB, AppSettings, CurrentCustomer
from tierlake.app.routes.ids import OrderId
from tierlake.app.schemas import ErrorResponse, OrderCreate, OrderPublic, Page
from tierlake.app.services import orders

router = APIRouter(tags=["orders"])

IdempotencyKey = Annotated[str, Header(
    alias="Idempotency-Key", min_length=8, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$",
    description="A unique value per order attempt (a UUID). Retrying the same request with "
                "the same key returns the first order instead of placing a second one; the same "
                "key with another request (body or cart) is a 422, and while its twin is still "
                "being processed a 409 with Retry-After.")]


@router.post("/orders", response_model=OrderPublic, status_code=201, responses={
    200: {"model": OrderPublic, "description": "Replay: the order placed earlier with this key."},
    401: {"model": ErrorResponse},
    409: {"model": ErrorResponse, "description": "Empty cart, out of stock, or a checkout with "
          "this key (`request_in_progress`) or another (`checkout_in_progress`) still running."},
    413: {"model": ErrorResponse, "description": "The body is too large."},
    422: {"model": ErrorResponse, "description": "Invalid body, or `idempotency_key_reused`: "
          "the key was used with a different request."}})
def place_order(db: DB, settings: AppSettings, customer: CurrentCustomer, body: OrderCreate,
                idempotency_key: IdempotencyKey, response: Response) -> OrderPublic:
    """Check out the cart: takes stock atomically and empties the cart."""
    order, created = orders.place_order(db, customer.id, idempotency_key, body,
                                        settings.limits.idempotency_lease_seconds)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/api/v1/orders/{order.id}"
    return order


@router.get("/orders", response_model=Page[OrderPublic], responses={401: {"model": ErrorResponse}})
def list_orders(
    db: DB, customer: CurrentCustomer,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[OrderPublic]:
    """The customer's orders, newest first."""
    return orders.list_orders(db, customer.id, page, page_size)


@router.get("/orders/{order_id}", response_model=OrderPublic,
            responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
def read_order(db: DB, customer: CurrentCustomer, order_id: OrderId) -> OrderPublic:
    """One of the customer's orders."""
    return orders.read_order(db, customer.id, order_id)
