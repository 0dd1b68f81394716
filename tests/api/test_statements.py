"""What the app tier costs its database, counted (not timed), and how it meets a dead connection.

Checkout must send n + a small constant statements for n cart lines, on one pooled
connection: a regression (a per-line tombstone, a re-read of the order just written, a
second pool checkout) fails here without any timing. Counted with SQLAlchemy's
``before_cursor_execute`` event, which sees every statement the app sends (SQLite's
``BEGIN`` is left out: it is a statement there, and implicit on MariaDB and PostgreSQL).
A listener makes prepared statements (tierlake.data.prepared) send their SQL through
SQLAlchemy instead of the bare cursor: the same statements, so the same count.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, create_engine, event, func, insert, select, text
from sqlalchemy.pool import NullPool

from tierlake.app.main import create_app
from tierlake.config import Settings
from tierlake.data.db import Database
from tierlake.data.schema import DeletedRow
from tierlake.errors import DatabaseUnavailableError

pytestmark = pytest.mark.timeout(120)

# The hold 3 (token lookup, cart with its lines, the hold), the checkout transaction n + 6
# (tierlake.app.services.orders explains each).
CONSTANT = 9


@contextmanager
def counting(db: Database) -> Iterator[tuple[list[str], list[int]]]:
    """The statements sent and the pool checkouts made while the block runs."""
    statements: list[str] = []
    checkouts: list[int] = []

    def on_statement(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        text_ = " ".join(statement.split())
        if text_.upper() not in ("BEGIN", "BEGIN IMMEDIATE", "BEGIN DEFERRED"):
            statements.append(text_)

    def on_checkout(*_args: Any) -> None:
        checkouts.append(1)

    event.listen(db.engine, "before_cursor_execute", on_statement)
    event.listen(db.engine.pool, "checkout", on_checkout)
    try:
        yield statements, checkouts
    finally:
        event.remove(db.engine, "before_cursor_execute", on_statement)
        event.remove(db.engine.pool, "checkout", on_checkout)


@pytest.mark.parametrize("lines", [1, 5])
def test_checkout_sends_n_plus_a_constant_statements_on_one_connection(api, db, lines):  # type: ignore[no-untyped-def]
    headers = api.register()
    for i in range(lines):
        product = api.product(name=f"Counted {i}", stock=3, category="counted")
        api.add(headers, product["id"], 2)
    with db.read() as s:
        tombstones_before = s.scalar(select(func.count()).select_from(DeletedRow))

    with counting(db) as (statements, checkouts):
        r = api.checkout(headers)

    assert r.status_code == 201, r.text
    order = r.json()
    assert [line["quantity"] for line in order["lines"]] == [2] * lines
    assert len(statements) <= lines + CONSTANT, "\n".join(statements)
    assert len(checkouts) == 1, "one pooled connection for the whole checkout request"
    # The lines and the cart lines' tombstones: one multi-row insert each, whatever n.
    assert sum(s.startswith("INSERT INTO order_lines") for s in statements) == 1
    assert sum(s.startswith("INSERT INTO deleted_rows") for s in statements) == 1
    # Nothing just written is read back.
    assert not any("FROM order_lines" in s for s in statements), "\n".join(statements)
    with db.read() as s:
        tombstones = s.scalar(select(func.count()).select_from(DeletedRow))
    assert tombstones == tombstones_before + lines
    # The order as answered is the order as stored.
    listed = api.client.get("/api/v1/orders", headers=headers).json()["items"]
    assert listed == [order]


def test_a_catalogue_page_is_two_statements_on_one_connection(api, db):  # type: ignore[no-untyped-def]
    for i in range(3):
        api.product(name=f"Listed {i}", category="listed")
    with counting(db) as (statements, checkouts):
        r = api.client.get("/api/v1/products?page=1&page_size=2")
    assert r.status_code == 200, r.text
    assert [p["name"] for p in r.json()["items"]] == ["Listed 0", "Listed 1"]
    assert len(statements) == 2, "\n".join(statements)
    assert len(checkouts) == 1


# -- a connection that died in the pool (no pre-ping) --------------------------------------


def _server_id(db: Database) -> int:
    query = "SELECT pg_backend_pid()" if db.backend == "postgresql" else "SELECT CONNECTION_ID()"
    with db.engine.connect() as conn:
        return int(conn.exec_driver_sql(query).scalar_one())


def _kill(url: str, backend: str, server_id: int) -> None:
    """End one server session from outside, as a restart or an idle timeout would."""
    # Autocommit: PostgreSQL takes pg_stat_activity's snapshot once per transaction, so a
    # poll inside one transaction would see the ended session alive for ever.
    admin = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": server_id})
                alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"
            else:
                conn.exec_driver_sql(f"KILL CONNECTION {server_id}")
                alive = "SELECT count(*) FROM information_schema.processlist WHERE id = :pid"
            deadline = time.monotonic() + 20
            while conn.execute(text(alive), {"pid": server_id}).scalar():
                assert time.monotonic() < deadline, f"server session {server_id} did not end"
                time.sleep(0.05)
    finally:
        admin.dispose()


def test_a_dead_pooled_connection_costs_a_read_nothing_and_a_write_a_clean_503(database_url):  # type: ignore[no-untyped-def]
    db = Database(database_url, pool_size=1)
    if db.backend == "sqlite":
        db.dispose()
        pytest.skip("SQLite is a file in the process: there is no connection to lose")
    try:
        with TestClient(create_app(Settings(), db)) as client:
            assert client.get("/api/v1/products").status_code == 200
            _kill(database_url, db.backend, _server_id(db))
            # A read finds the connection dead, and is run again on a fresh one.
            r = client.get("/api/v1/products")
            assert r.status_code == 200, r.text
            assert client.get("/ready").json()["status"] == "ok"

            # A write that finds its connection dead before its COMMIT is run again on a
            # fresh one: the server dropped the dead session's uncommitted work.
            _kill(database_url, db.backend, _server_id(db))
            db.run(lambda conn: db.transaction(conn, lambda c: _tombstone(c, "before-commit")))
            assert _tombstones(db, "before-commit") == 1

            # Once a COMMIT was sent, the request is not run again blindly: a later
            # statement on a dead connection fails as "database unavailable" (a 503 for a
            # client), what was committed stays, once, and the next request works.
            def _two_writes(conn: Connection) -> None:
                db.transaction(conn, lambda c: _tombstone(c, "committed"))
                _kill(database_url, db.backend, _server_id_of(conn))
                db.transaction(conn, lambda c: _tombstone(c, "never"))

            with pytest.raises(DatabaseUnavailableError, match="cannot reach the database"):
                db.run(_two_writes)
            assert (_tombstones(db, "committed"), _tombstones(db, "never")) == (1, 0)
            assert client.get("/api/v1/products").status_code == 200
    finally:
        db.dispose()


def _server_id_of(conn: Connection) -> int:
    query = "SELECT pg_backend_pid()" if conn.dialect.name == "postgresql" \
        else "SELECT CONNECTION_ID()"
    return int(conn.exec_driver_sql(query).scalar_one())


def _tombstone(conn: Connection, key: str) -> None:
    conn.execute(insert(DeletedRow).values(table_name="dead-connection-test", row_key=key,
                                           deleted_at=datetime.now(UTC)))


def _tombstones(db: Database, key: str) -> int:
    with db.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(DeletedRow).where(
            DeletedRow.table_name == "dead-connection-test", DeletedRow.row_key == key)) or 0
