"""The SQL behind one request of each endpoint the HTTP bench drives (a diagnostic, untimed).

Companion of ``bench/http_bench.py``: it explains where tierlake's app tier
spends its database round trips, for one catalogue page and one checkout of a
cart with ``--items`` lines, in process (Starlette TestClient):

* SQLite (default): every statement tierlake sends (and each pool checkout);
* ``--backend mariadb`` (a throw-away server from tests/servers.py): also the
  server's own counters (``SHOW GLOBAL STATUS``: statements, commits,
  rollbacks, pings) for tierlake's request and for the ANCHOR's
  (``bench/anchor_app.py``) same request, side by side.

    .venv/bin/python bench/sql_trace.py
    .venv/bin/python bench/sql_trace.py --backend mariadb --items 5
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

import structlog  # noqa: E402

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

from sqlalchemy import event, insert  # noqa: E402
from starlette.datastructures import Headers  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from anchor_app import make_app as make_anchor  # noqa: E402
from benchdata import build_store  # noqa: E402
from tierlake.app.main import create_app  # noqa: E402
from tierlake.config import Settings  # noqa: E402
from tierlake.data.db import Database  # noqa: E402
from tierlake.data.schema import CartItem, utcnow  # noqa: E402

SHIPPING = {"shipping": {"name": "Ada Bench", "address": "1 Loop Road", "city": "Localhost",
                         "postcode": "12345", "country": "DE"}}
COUNTERS = ("Questions", "Com_select", "Com_insert", "Com_update", "Com_delete", "Com_commit",
            "Com_rollback", "Com_begin", "Com_set_option", "Com_admin_commands")


def add_items(db: Database, customer_ids: list[int], extra: int) -> None:
    """Give each customer's cart ``extra`` more lines (products 100, 101, ...)."""
    if extra <= 0:
        return
    now = utcnow()
    with db.engine.begin() as conn:
        conn.execute(insert(CartItem.__table__), [
            {"cart_id": cid, "product_id": 100 + k, "quantity": 1, "created_at": now,
             "updated_at": now} for cid in customer_ids for k in range(extra)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "mariadb"), default="sqlite")
    p.add_argument("--items", type=int, default=1, help="lines in the cart checked out")
    p.add_argument("--width", type=int, default=150, help="characters of each statement shown")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="tierlake-sqltrace-") as tmp:
        if args.backend == "sqlite":
            trace(f"sqlite:///{Path(tmp) / 'trace.db'}", args, None)
        else:
            from servers import mariadb_server

            with mariadb_server() as server:
                trace(server.create_database("trace"), args, server)


def trace(url: str, args: argparse.Namespace, server) -> None:  # type: ignore[no-untyped-def]
    store = build_store(url, customers=6)
    db = Database(url)
    add_items(db, [1, 2, 3, 4, 5, 6], args.items - 1)
    statements: list[str] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _stmt(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        text = " ".join(statement.split())
        statements.append(text[:args.width] + (" [executemany]" if executemany else ""))

    @event.listens_for(db.engine.pool, "checkout")
    def _checkout(*_a):  # type: ignore[no-untyped-def]
        statements.append("-- pool checkout")

    status = None
    if server is not None:
        import pymysql

        admin = pymysql.connect(unix_socket=str(server.socket), user="root", autocommit=True)

        def status() -> dict[str, int]:  # type: ignore[no-redef]
            with admin.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ("
                            + ",".join(f"'{c}'" for c in COUNTERS) + ")")
                return {k: int(v) for k, v in cur.fetchall()}

    def server_delta(fn) -> dict[str, int] | None:  # type: ignore[no-untyped-def]
        if status is None:
            fn()
            return None
        before = status()
        fn()
        after = status()
        delta = {k: after[k] - before[k] for k in COUNTERS}
        delta["Questions"] -= 1  # the second SHOW GLOBAL STATUS itself
        return delta

    anchor = make_anchor(url)
    app = create_app(Settings(database_url=url, cache={"enabled": False}), db)  # the database work
    tokens = iter(store.tokens)
    rows = []
    with TestClient(app) as client:
        def tl_get():  # type: ignore[no-untyped-def]
            assert client.get("/api/v1/products?page=2&page_size=24").status_code == 200

        def tl_post():  # type: ignore[no-untyped-def]
            r = client.post("/api/v1/orders", json=SHIPPING, headers={
                "Authorization": f"Bearer {next(tokens)}", "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201, r.text

        def an_get():  # type: ignore[no-untyped-def]
            scope = {"type": "http", "query_string": b"page=2&page_size=24", "headers": []}
            assert anchor.state.list_products(Request(scope)).status_code == 200

        def an_post():  # type: ignore[no-untyped-def]
            r = anchor.state.place_order(Headers({
                "authorization": f"Bearer {next(tokens)}",
                "idempotency-key": uuid.uuid4().hex}), json_body())
            assert r.status_code == 201, r.body

        for name, tl, an in (("GET /api/v1/products?page=2&page_size=24", tl_get, an_get),
                             (f"POST /api/v1/orders ({args.items}-line cart)", tl_post, an_post)):
            tl()  # warm: first-use compilation, pool connections
            an()
            statements.clear()
            tl_delta = server_delta(tl)
            shown = list(statements)
            an_delta = server_delta(an)
            n = sum(1 for s in shown if not s.startswith(("--", "BEGIN")))
            print(f"\n{name}: tierlake sends {n} statements over "
                  f"{sum(1 for s in shown if s.startswith('--'))} pool checkouts "
                  "(SQLAlchemy's before_cursor_execute; COMMIT/ROLLBACK not shown, "
                  "SQLite's BEGIN shown but not counted)")
            for s in shown:
                print("   ", s)
            if tl_delta is not None:
                rows.append((name, tl_delta, an_delta))
    if rows:
        print("\nMariaDB server counters per request (SHOW GLOBAL STATUS deltas; Questions = "
              "every statement incl. COMMIT/ROLLBACK/SET; Com_admin_commands = pings):")
        print("| request | app | " + " | ".join(COUNTERS) + " |")
        print("|---|---|" + "---|" * len(COUNTERS))
        for name, tl_delta, an_delta in rows:
            for who, d in (("tierlake", tl_delta), ("anchor", an_delta)):
                print(f"| {name} | {who} | " + " | ".join(str(d[c]) for c in COUNTERS) + " |")
    db.dispose()


def json_body() -> bytes:
    import json

    return json.dumps(SHIPPING).encode()


if __name__ == "__main__":
    main()
