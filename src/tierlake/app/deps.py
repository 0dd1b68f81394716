"""FastAPI dependencies: the database, the cache and the caller's identity.

``get_db`` and ``get_settings_dep`` are ``async``: FastAPI runs a sync dependency in its
thread pool, a hop (and a GIL hand-off) per request for a one-line attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tierlake.app.cache import Cache
from tierlake.app.errors import ForbiddenError
from tierlake.app.services.accounts import session_customer
from tierlake.config import Settings
from tierlake.data.db import Database
from tierlake.data.schema import Customer

_TOKEN_HELP = "The token from /auth/login or /auth/register."
_bearer = HTTPBearer(auto_error=False, description=_TOKEN_HELP)


async def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_cache(request: Request) -> Cache:
    return request.app.state.cache


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


class _BearerToken(HTTPBearer):
    """The bearer token as sent, or None (checked by the service, on the request's own
    connection). The security scheme itself returns it, so FastAPI solves one dependency
    per request, not a function depending on ``HTTPBearer`` (two, with a sub-solve each);
    same scheme in the OpenAPI document."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        creds = await super().__call__(request)
        return creds.credentials if creds is not None and creds.credentials else None


bearer_token = _BearerToken(auto_error=False, description=_TOKEN_HELP, scheme_name="HTTPBearer")


DB = Annotated[Database, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
AppCache = Annotated[Cache, Depends(get_cache)]
BearerToken = Annotated[str | None, Depends(bearer_token)]


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
