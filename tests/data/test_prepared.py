"""Prepared statements (tierlake.data.prepared) answer as SQLAlchemy does, on every backend.

The checkout runs on them; here each way of running one is compared with
``Connection.execute`` of the same Core statement, on the raw cursor and on the path taken
when someone listens to the engine's statement events.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, event, insert, select
from sqlalchemy.exc import IntegrityError

from tierlake.data.db import Database
from tierlake.data.prepared import Prepared
from tierlake.data.schema import Category, Customer, Product

_PRODUCTS = (select(Product.id, Product.name, Product.price_cents, Product.active,
                    Product.created_at)
             .where(Product.category_id == bindparam("category_id")).order_by(Product.id))
_PRODUCT_KEYS = ("sku", "slug", "name", "category_id", "price_cents", "description", "active",
                 "created_at", "updated_at")
_CUSTOMER_KEYS = ("email", "name", "password_hash", "is_admin", "country", "created_at",
                  "updated_at")


@contextmanager
def watched(db: Database) -> Iterator[list[str]]:
    """Statements seen by an engine listener while the block runs (OpenTelemetry's way)."""
    seen: list[str] = []

    def on_statement(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", on_statement)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", on_statement)


def _category(conn: Connection, slug: str) -> int:
    return int(Prepared(insert(Category), keys=("slug", "name", "description", "created_at",
                                                 "updated_at"))
               .insert(conn, {"slug": slug, "name": slug.title(), "description": "",
                              "created_at": _now(),
                              "updated_at": _now()}))


def _now() -> datetime:
    return datetime(2026, 12, 1, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.mark.parametrize("listened", [False, True], ids=["cursor", "listened"])
def test_rows_keys_and_types_are_sqlalchemys(db: Database, listened: bool) -> None:
    add_product = Prepared(insert(Product), keys=_PRODUCT_KEYS)
    with db.engine.connect() as conn, conn.begin():
        category = _category(conn, f"prepared-{listened}")
        with watched(db) if listened else nullcontext([]) as seen:
            ids = [add_product.insert(conn, {
                "sku": f"P-{listened}-{i}", "slug": f"p-{listened}-{i}",
                "name": f"Prepared {i}", "category_id": category,
                "price_cents": 100 + i, "description": "", "active": i % 2 == 0,
                "created_at": _now() + timedelta(seconds=i), "updated_at": _now()})
                for i in range(3)]
            rows = Prepared(_PRODUCTS).all(conn, {"category_id": category})
        expected = conn.execute(_PRODUCTS, {"category_id": category}).all()
        assert [tuple(r) for r in rows] == [tuple(r) for r in expected]
        assert ids == [r.id for r in expected]
        assert [r.active for r in rows] == [True, False, True]
        assert rows[1].created_at == _now() + timedelta(seconds=1)
        assert rows[1].created_at.tzinfo is not None, "UTCDateTime's processor ran"
        assert rows[0]._fields == ("id", "name", "price_cents", "active", "created_at")
        if listened:
            assert sum("INSERT INTO products" in s for s in seen) == 3
            assert any("FROM products" in s for s in seen)
        conn.rollback()


def test_a_driver_error_is_sqlalchemys_and_leaves_the_transaction_usable(db: Database) -> None:
    add = Prepared(insert(Customer), keys=_CUSTOMER_KEYS)
    customer = {"email": "twice@example.com", "name": "Twice", "password_hash": "x",
                "is_admin": False, "country": "GB", "created_at": _now(), "updated_at": _now()}
    with db.engine.connect() as conn:
        with conn.begin():
            first = add.insert(conn, customer)
        with pytest.raises(IntegrityError) as raised, conn.begin():
            add.insert(conn, customer)
        assert not raised.value.connection_invalidated
        assert "INSERT INTO customers" in str(raised.value.statement)
        # The failed transaction was rolled back; the connection goes on.
        count = Prepared(select(Customer.id).where(Customer.email == bindparam("email")))
        assert count.all(conn, {"email": "twice@example.com"})[0].id == first
        conn.rollback()


def test_a_statement_it_cannot_run_faithfully_is_refused_with_the_reason(db: Database) -> None:
    with db.engine.connect() as conn:
        # Product.updated_at has a Python-side default SQLAlchemy would compute per call.
        with pytest.raises(ValueError, match="updated_at.*give them values"):
            Prepared(insert(Product), keys=("sku", "name")).insert(conn, {"sku": "x",
                                                                         "name": "y"})
        with pytest.raises(ValueError, match="needs a value for 'category_id'"):
            Prepared(_PRODUCTS).all(conn, {})
        with pytest.raises(ValueError, match="rendered at execution"):
            Prepared(select(Product.id).where(Product.id.in_(bindparam("ids", expanding=True)))
                     ).all(conn, {"ids": [1]})
