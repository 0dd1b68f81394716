"""FastAPI dependencies: the database, the cache and the caller's identity.

``get_db`` and ``get_settings_dep`` are ``async``: FastAPI runs a sync dependency in its
thread pool, a hop (and a GIL hand-off) per request for a one-line attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from tierlake.app.cache import Cache
from tierlake.app.errors import ForbiddenError
from tierlake.app.services.accounts import session_customer
from tierlake.config import Settings
from tierlake.data.db import Database
from tierlake.data.schema import Customer

_bearer = HTTPBearer(auto_error=False, description="The token from /auth/login or /auth/register.")
# An operation's OpenAPI security requirement, for one that reads the token itself.
BEARER: dict[str, list[str]] = {_bearer.scheme_name: []}


async def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_cache(request: Request) -> Cache:
    return request.app.state.cache


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def request_token(request: Request) -> str | None:
    """The bearer token of ``Authorization: Bearer <token>`` as sent, or None (checked by the
    service, on the request's own connection): what ``HTTPBearer(auto_error=False)`` reads,
    for an endpoint that declares its security in ``openapi_extra`` (checkout)."""
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    return credentials if scheme.lower() == "bearer" and credentials else None


DB = Annotated[Database, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
AppCache = Annotated[Cache, Depends(get_cache)]


def current_customer(
    db: DB,
    cache: AppCache,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Customer:
    """The caller, from the session cache or the database (a detached Customer). A miss
    reads through Database.run, so a connection that died in the pool is replaced here, not
    seen by the client."""
    return session_customer(cache, creds.credentials if creds is not None else None, db.run)


def current_admin(customer: Annotated[Customer, Depends(current_customer)]) -> Customer:
    if not customer.is_admin:
        raise ForbiddenError("This needs an administrator account.")
    return customer


CurrentCustomer = Annotated[Customer, Depends(current_customer)]
CurrentAdmin = Annotated[Customer, Depends(current_admin)]
