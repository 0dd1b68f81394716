"""Account endpoints: register, log in, log out, profile, delete account."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from tierlake.app.cache import SESSIONS
from tierlake.app.deps import DB, AppCache, AppSettings, CurrentCustomer, _bearer
from tierlake.app.ratelimit.address import client_address
from tierlake.app.ratelimit.login import LoginLimiter, get_login_limiter
from tierlake.app.schemas import (
    AccountDelete,
    CustomerCreate,
    CustomerPublic,
    ErrorResponse,
    LoginRequest,
    SessionPublic,
)
from tierlake.app.services import accounts

router = APIRouter(tags=["accounts"])
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"model": ErrorResponse}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorResponse}}
LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorResponse, "description": "Too many failed log-ins for this e-mail "
          "address or from this client address; wait `Retry-After` seconds.",
          "headers": {"Retry-After": {"description": "Seconds until the limit ends.",
                                      "schema": {"type": "integer"}}}},
    503: {"model": ErrorResponse, "description": "The attempt counter cannot be reached."},
}
Limiter = Annotated[LoginLimiter, Depends(get_login_limiter)]


@router.post("/auth/register", response_model=SessionPublic, status_code=201,
             responses=CONFLICT)
def register(db: DB, settings: AppSettings, body: CustomerCreate) -> SessionPublic:
    """Create an account and log it in."""
    return accounts.register(db, body, settings.auth.session_ttl_hours)


@router.post("/auth/login", response_model=SessionPublic,
             responses={**UNAUTHORIZED, **LIMITED})
def login(db: DB, settings: AppSettings, limiter: Limiter, request: Request,
          body: LoginRequest) -> SessionPublic:
    """Exchange e-mail and password for a bearer token.

    Failed log-ins are limited per e-mail address and per client address (the client's
    address from `X-Forwarded-For` when the peer is a trusted proxy): past the limit every
    attempt gets a 429 with `Retry-After` until the window ends.
    """
    with limiter.attempt(body.email, client_address(request, settings.auth.trusted_proxies)):
        return accounts.login(db, body.email, body.password, settings.auth.session_ttl_hours)


@router.post("/auth/logout", status_code=204, response_class=Response, responses=UNAUTHORIZED)
def logout(
    db: DB, cache: AppCache, customer: CurrentCustomer,
    creds: Annotated[HTTPAuthorizationCredentials, Depends(_bearer)],
) -> Response:
    """End this session (the token stops working)."""
    accounts.logout(db, creds.credentials)
    cache.invalidate([SESSIONS])  # after the commit: the token is dead on every instance
    return Response(status_code=204)


@router.get("/me", response_model=CustomerPublic, responses=UNAUTHORIZED)
def me(customer: CurrentCustomer) -> CustomerPublic:
    """The logged-in customer."""
    return accounts.customer_public(customer)


@router.delete("/me", status_code=204, response_class=Response, responses=UNAUTHORIZED)
def delete_me(db: DB, cache: AppCache, customer: CurrentCustomer, body: AccountDelete
              ) -> Response:
    """Delete the account: personal data is erased at once, in one transaction.

    The e-mail address (it may register again), name and password go; past orders stay for
    the books with their amounts, dates, status and country, but lose the shipping name,
    address, city and postcode. Every session of the account ends.
    """
    accounts.delete_account(db, customer.id, body.password)
    cache.invalidate([SESSIONS])
    return Response(status_code=204)
