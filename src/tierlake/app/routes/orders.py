"""Checkout and order history endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from tierlake.app.deps import DB, CurrentCustomer
from tierlake.app.routes.ids import OrderId
from tierlake.app.schemas import ErrorResponse, OrderCreate, OrderPublic, Page
from tierlake.app.services import orders

router = APIRouter(tags=["orders"])

IdempotencyKey = Annotated[str, Header(
    alias="Idempotency-Key", min_length=8, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$",
    description="A unique value per order attempt (a UUID). Retrying with the same key "
                "returns the first order instead of placing a second one.")]


@router.post("/orders", response_model=OrderPublic, status_code=201, responses={
    200: {"model": OrderPublic, "description": "Replay: the order placed earlier with this key."},
    401: {"model": ErrorResponse}, 409: {"model": ErrorResponse}})
def place_order(db: DB, customer: CurrentCustomer, body: OrderCreate,
                idempotency_key: IdempotencyKey, response: Response) -> OrderPublic:
    """Check out the cart: takes stock atomically and empties the cart."""
    order, created = orders.place_order(db, customer.id, idempotency_key, body)
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
