"""FastAPI dependencies: the database and the caller's identity."""

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


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


DB = Annotated[Database, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


def current_customer(
    db: DB,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Customer:
    if creds is None or not creds.credentials:
        raise UnauthorizedError("Log in first: send `Authorization: Bearer <token>`.")
    with db.read() as s:
        customer = s.scalar(
            select(Customer)
            .join(AuthSession, AuthSession.customer_id == Customer.id)
            .where(
                AuthSession.token_hash == token_hash(creds.credentials),
                AuthSession.expires_at > utcnow(),
                Customer.deleted_at.is_(None),
            )
        )
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
