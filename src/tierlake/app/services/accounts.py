"""Customer accounts: register, log in and out, delete an account, and the bearer token's
lookup (through the ``sessions`` namespace of the cache; log-out and account deletion
invalidate it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tierlake.app.cache import SESSIONS, Cache
from tierlake.app.errors import ConflictError, InvalidInputError, UnauthorizedError
from tierlake.app.password_policy import password_problem, user_inputs
from tierlake.app.schemas import CustomerCreate, CustomerPublic, SessionPublic
from tierlake.app.security import hash_password, new_token, token_hash, verify_password
from tierlake.data.db import Database
from tierlake.data.prepared import Prepared
from tierlake.data.schema import AuthSession, Cart, Customer, Order, utcnow

# Verified when the e-mail is unknown, so a login takes as long either way.
_DUMMY_HASH = hash_password("not-a-real-password")


# Built once: the token lookup runs on every authenticated request (on a cache miss).
_SESSION_CUSTOMER = Prepared(
    select(Customer.id, Customer.email, Customer.name, Customer.country, Customer.is_admin,
           Customer.created_at, AuthSession.expires_at)
    .select_from(AuthSession)
    .join(Customer, Customer.id == AuthSession.customer_id)
    .where(AuthSession.token_hash == bindparam("token_hash"),
           AuthSession.expires_at > bindparam("now", type_=AuthSession.expires_at.type),
           Customer.deleted_at.is_(None))
)
_SESSION_FIELDS = ("id", "email", "name", "country", "is_admin", "created_at", "expires_at")


def _invalid_token() -> UnauthorizedError:
    return UnauthorizedError("Your session has expired or is not valid; log in again.",
                             code="invalid_token")


# Runs a read of a cache miss on a connection: ``Database.run``, or the request's own.
ReadOn = Callable[[Callable[[Connection], Any]], Any]


def session_customer(cache: Cache, token: str | None, run: ReadOn, *,
                     cached: bool = True) -> Customer:
    """The customer whose live session this bearer token is, 401 otherwise.

    Cached in ``sessions`` as JSON (never used past the session's ``expires_at``, checked on
    every hit). ``run`` runs the database read of a miss on a connection (``Database.run``,
    or the request's own connection); ``cached=False`` asks the database without the cache.
    The customer is a detached :class:`Customer` holding the profile's columns, not a row
    to change.
    """
    doc = _session(cache, token, run, cached)
    return Customer(id=doc["id"], email=doc["email"], name=doc["name"], country=doc["country"],
                    is_admin=doc["is_admin"], created_at=datetime.fromisoformat(doc["created_at"]))


def session_customer_id(cache: Cache, token: str | None, run: ReadOn, *,
                        cached: bool = True) -> int:
    """:func:`session_customer`'s id alone, for checkout: building the ORM object costs
    five times the rest of a cached lookup (19 of 24 µs)."""
    return int(_session(cache, token, run, cached)["id"])


def _session(cache: Cache, token: str | None, run: ReadOn, cached: bool) -> dict[str, Any]:
    if not token:
        raise UnauthorizedError("Log in first: send `Authorization: Bearer <token>`.")
    digest = token_hash(token)

    def load() -> bytes:
        row = run(lambda conn: _SESSION_CUSTOMER.first(
            conn, {"token_hash": digest, "now": utcnow()}))
        if row is None:
            raise _invalid_token()
        return json.dumps(dict(zip(_SESSION_FIELDS, (
            row.id, row.email, row.name, row.country, row.is_admin, row.created_at.isoformat(),
            row.expires_at.isoformat()), strict=True))).encode()

    doc: dict[str, Any] = json.loads(cache.load("session", SESSIONS, digest, load,
                                                cache.session_ttl) if cached else load())
    if datetime.fromisoformat(doc["expires_at"]) <= utcnow():
        raise _invalid_token()
    return doc


def customer_public(c: Customer) -> CustomerPublic:
    return CustomerPublic(id=c.id, email=c.email or "", name=c.name, country=c.country,
                          is_admin=c.is_admin, created_at=c.created_at)


def _open_session(s: Session, customer: Customer, ttl_hours: int) -> SessionPublic:
    token = new_token()
    expires = utcnow() + timedelta(hours=ttl_hours)
    s.add(AuthSession(token_hash=token_hash(token), customer_id=customer.id, expires_at=expires))
    return SessionPublic(token=token, expires_at=expires, customer=customer_public(customer))


def _email_taken(email: str) -> ConflictError:
    return ConflictError(
        f"An account with {email} already exists; log in instead, or use another address.",
        code="email_taken", fields=[{"field": "body.email", "message": "already registered"}])


def check_new_password(password: str, email: str, name: str) -> None:
    """Refuse a password that is easy to guess (registration and any password change)."""
    problem = password_problem(password, user_inputs(email, name))
    if problem is not None:
        raise InvalidInputError(f"The password was refused. {problem}", code="weak_password",
                                fields=[{"field": "body.password", "message": problem}])


def register(db: Database, body: CustomerCreate, ttl_hours: int) -> SessionPublic:
    email = body.email.lower()
    check_new_password(body.password, email, body.name)
    password_hash = hash_password(body.password)  # slow on purpose: outside the transaction

    def _create(s: Session) -> SessionPublic:
        if s.scalar(select(Customer.id).where(Customer.email == email)) is not None:
            raise _email_taken(email)
        customer = Customer(email=email, name=body.name, password_hash=password_hash,
                            country=body.country or "")
        s.add(customer)
        s.flush()
        return _open_session(s, customer, ttl_hours)

    try:
        return db.write(_create)
    except IntegrityError as exc:  # a concurrent registration of the same address won
        raise _email_taken(email) from exc


def login(db: Database, email: str, password: str, ttl_hours: int) -> SessionPublic:
    email = email.strip().lower()
    customer = db.reading(lambda s: s.scalar(select(Customer).where(
        func.lower(Customer.email) == email, Customer.deleted_at.is_(None))))
    if customer is None:
        verify_password(_DUMMY_HASH, password)
        raise UnauthorizedError("Wrong e-mail or password.", code="invalid_credentials")
    if not verify_password(customer.password_hash, password):
        raise UnauthorizedError("Wrong e-mail or password.", code="invalid_credentials")
    return db.write(lambda s: _open_session(s, customer, ttl_hours))


def logout(db: Database, token: str) -> None:
    def _delete(s: Session) -> None:
        session = s.scalar(select(AuthSession).where(AuthSession.token_hash == token_hash(token)))
        if session is not None:
            s.delete(session)

    db.write(_delete)


# What an erasure blanks in the customer's orders; amounts, dates, status and the country
# stay for the books (and the sales reports).
ERASED_ORDER_FIELDS = {"ship_name": "", "ship_address": "", "ship_city": "", "ship_postcode": ""}


def delete_account(db: Database, customer_id: int, password: str) -> None:
    """Erase the customer's personal data, in their orders too; the orders stay for the books.

    One transaction: the customer's e-mail becomes NULL (it may register again), name and
    password hash empty, ``deleted_at`` set; every order of theirs loses its shipping name,
    address, city and postcode. Every row changed gets a new ``updated_at``, so the next
    extract carries the erasure into the lake.
    """

    def _delete(s: Session) -> None:
        customer = s.get(Customer, customer_id)
        if customer is None or customer.deleted_at is not None:
            raise UnauthorizedError("This account no longer exists.")
        if not verify_password(customer.password_hash, password):
            raise UnauthorizedError("Wrong password; the account was not deleted.",
                                    code="invalid_credentials",
                                    fields=[{"field": "body.password",
                                             "message": "wrong password"}])
        for session in s.scalars(select(AuthSession).where(AuthSession.customer_id == customer_id)):
            s.delete(session)
        cart = s.scalar(select(Cart).where(Cart.customer_id == customer_id))
        if cart is not None:
            s.delete(cart)
        now = utcnow()
        s.execute(update(Order).where(Order.customer_id == customer_id)
                  .values(**ERASED_ORDER_FIELDS, updated_at=now)
                  .execution_options(synchronize_session=False))
        customer.email = None
        customer.name = ""
        customer.password_hash = ""
        customer.deleted_at = now
        customer.updated_at = now

    db.write(_delete)
