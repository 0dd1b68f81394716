"""Checkout and order history endpoints.

Checkout is an ``async`` endpoint that makes one thread-pool hop for the whole request
(authentication and both transactions on one pooled connection) and returns the JSON it
serialised itself: a sync endpoint made FastAPI hop to the pool for each sync dependency,
for the endpoint and again to validate the response model (four hops, measured in
docs/benchmarks.md). ``response_model`` stays for the OpenAPI schema.

Checkout reads its bearer token itself (the security requirement is declared in
``openapi_extra``; the service checks the token): as a dependency on ``HTTPBearer`` it cost
FastAPI two more solving passes per request, 160 Python calls, an eighth of the event loop's
calls per checkout (docs/benchmarks.md). FastAPI still validates the body and the
``Idempotency-Key`` header together, so a 422 lists every field at fault.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from tierlake.app.deps import BEARER, DB, CurrentCustomer, request_token
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
    409: {"model": ErrorResponse, "description": "Empty cart, out of stock, a checkout with "
          "this key (`request_in_progress`) or another (`checkout_in_progress`) still running, "
          "or a line added while this one ran (`cart_changed`)."},
    413: {"model": ErrorResponse, "description": "The body is too large."},
    422: {"model": ErrorResponse, "description": "Invalid body or `Idempotency-Key`, or "
          "`idempotency_key_reused`: the key was used with a different request."}},
    openapi_extra={"security": [BEARER]})
async def place_order(request: Request, body: OrderCreate,
                      idempotency_key: IdempotencyKey) -> Response:
    """Check out the cart: takes stock atomically and empties the cart."""
    state = request.app.state  # not three dependencies: FastAPI solves each per request
    order, created = await run_in_threadpool(
        orders.checkout, state.db, state.cache, request_token(request), idempotency_key, body,
        state.settings.limits.idempotency_lease_seconds)
    return Response(order.model_dump_json(), status_code=201 if created else 200,
                    media_type="application/json",
                    headers={"Location": f"/api/v1/orders/{order.id}"})


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
