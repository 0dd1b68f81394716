"""FastAPI dependencies: the database and the caller's identity.

``get_db`` and ``get_settings_dep`` are ``async``: FastAPI runs a sync dependency in its
thread pool, a hop (and a GIL hand-off) per request for a one-line attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from tierlake.app.errors import ForbiddenError, UnauthorizedError
from tierlake.app.security import token_hash
from tierlake.config import Settings
from tierlake.data.db import Database
from tierlake.data.schema import AuthSession, Customer, utcnow

_bearer = HTTPBearer(auto_error=False, description="The token from /auth/login or /auth/register.")


async def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def bearer_token(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """The bearer token as sent (checked by the service, on the request's own connection)."""
    return creds.credentials if creds is not None and creds.credentials else None


DB = Annotated[Database, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
BearerToken = Annotated[str | None, Depends(bearer_token)]


def current_customer(
    db: DB,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Customer:
    if creds is None or not creds.credentials:
        raise UnauthorizedError("Log in first: send `Authorization: Bearer <token>`.")
    # The first database use of an authenticated request: through Database.reading, so a
    # connection that died in the pool is replaced here, not seen by the client.
    customer = db.reading(lambda s: s.scalar(
        select(Customer)
        .join(AuthSession, AuthSession.customer_id == Customer.id)
        .where(
            AuthSession.token_hash == token_hash(creds.credentials),
            AuthSession.expires_at > utcnow(),
            Customer.deleted_at.is_(None),
        )
    ))
    if customer is None:
        raise UnauthorizedError("Your session has expired or is not valid; log in again.",
                                code="invalid_token")
    return customer


def current_admin(customer: Annotated[Customer, Depends(current_customer)]) -> Customer:
    if not customer.is_admin:
        raise ForbiddenError("This needs an administrator account.")
    return customer


CurrentCustomer = Annotated[Customer, Depends(current_customer)]
CurrentAdmin = Annotated[Customer, Depends(current_admin)]
