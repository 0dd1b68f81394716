"""The ANCHOR of the HTTP bench: the two benched endpoints, hand-written, minimal.

A plain Starlette app (no tierlake imports, no ORM, no pydantic) served by one
uvicorn process exactly like ``tierlake serve app`` (same uvicorn settings, sync
handlers run in Starlette's thread pool). It talks to the database with the raw
DB-API driver (``sqlite3`` or ``pymysql``), one connection per thread, and
answers the same URLs with the same JSON shapes from the same SQL as tierlake:

* ``GET /api/v1/products?page=P&page_size=N``: count + one page joining
  category and inventory, ordered by name, id (tierlake's default listing);
* ``POST /api/v1/orders``: bearer token -> customer, idempotency key, then one
  transaction: insert the order, take stock with a conditional
  ``UPDATE inventory SET quantity = quantity - q WHERE product_id = ? AND quantity >= q``,
  insert the order lines, delete the cart items (leaving the same tombstones in
  ``deleted_rows`` that tierlake leaves), commit; 201 with the order.

Only what the bench needs is implemented (no category/search filters). Run it::

    python bench/anchor_app.py --db sqlite:////tmp/x.db --port 9001
    python bench/anchor_app.py --db mysql+pymysql://app:app@127.0.0.1:3306/appdb --port 9001
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

FREE_SHIPPING_FROM_CENTS = 5000
SHIPPING_CENTS = 499
IDEM_KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,100}$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
SHIP_FIELDS = {"name": 200, "address": 300, "city": 120, "postcode": 20}


class Http(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": {"code": code, "message": message, "fields": []}}, status,
                        headers=headers)


class Store:
    """Per-thread DB-API connections and the dialect differences (placeholders, timestamps)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.kind = "sqlite" if parts.scheme.startswith("sqlite") else "mysql"
        self._local = threading.local()
        if self.kind == "sqlite":
            self.path = url.split(":///", 1)[1]
            self.true = "IS 1"
        else:
            self.params = {
                "host": parts.hostname or "127.0.0.1", "port": parts.port or 3306,
                "user": unquote(parts.username or ""), "password": unquote(parts.password or ""),
                "database": parts.path.lstrip("/"), "charset": "utf8mb4", "autocommit": False,
            }
            self.true = "= true"

    def conn(self):  # type: ignore[no-untyped-def]
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = self._connect()
        return c

    def _connect(self):  # type: ignore[no-untyped-def]
        if self.kind == "sqlite":
            c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                timeout=30)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                           "busy_timeout=30000"):
                c.execute(f"PRAGMA {pragma}")
            return c
        import pymysql

        c = pymysql.connect(**self.params)
        with c.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return c

    def drop(self) -> None:
        c = getattr(self._local, "conn", None)
        self._local.conn = None
        if c is not None:
            with contextlib.suppress(Exception):  # the connection is being thrown away
                c.close()

    def sql(self, text: str) -> str:
        return text if self.kind == "sqlite" else text.replace("?", "%s")

    def ts(self, dt: datetime):  # type: ignore[no-untyped-def]
        """A naive-UTC timestamp as the store keeps it (SQLAlchemy's SQLite text format)."""
        naive = dt.astimezone(UTC).replace(tzinfo=None)
        return naive.strftime("%Y-%m-%d %H:%M:%S.%f") if self.kind == "sqlite" else naive

    def parse_ts(self, value) -> datetime:  # type: ignore[no-untyped-def]
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)

    def begin(self, cur, write: bool) -> None:  # type: ignore[no-untyped-def]
        if self.kind == "sqlite":
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
        # pymysql (autocommit off) opens the transaction with the first statement

    def commit(self, c) -> None:  # type: ignore[no-untyped-def]
        if self.kind == "sqlite":
            c.execute("COMMIT")
        else:
            c.commit()

    def rollback(self, c) -> None:  # type: ignore[no-untyped-def]
        try:
            if self.kind == "sqlite":
                if c.in_transaction:
                    c.execute("ROLLBACK")
            else:
                c.rollback()
        except Exception:  # noqa: BLE001 - a connection that cannot roll back is dropped
            self.drop()

    def transient(self, exc: BaseException) -> bool:
        if self.kind == "sqlite":
            return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
        args = getattr(exc, "args", ())
        return bool(args) and args[0] in (1205, 1213)

    def integrity_error(self, exc: BaseException) -> bool:
        if self.kind == "sqlite":
            return isinstance(exc, sqlite3.IntegrityError)
        import pymysql

        return isinstance(exc, pymysql.err.IntegrityError)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def make_app(url: str) -> Starlette:
    store = Store(url)
    q = store.sql

    count_sql = q(f"SELECT count(products.id) FROM products WHERE products.active {store.true}")
    page_sql = q(
        "SELECT products.id, products.sku, products.slug, products.name, products.description,"
        " products.price_cents, products.active, categories.id, categories.slug, categories.name,"
        " categories.description, inventory.quantity"
        " FROM products"
        " LEFT OUTER JOIN categories ON categories.id = products.category_id"
        " LEFT OUTER JOIN inventory ON inventory.product_id = products.id"
        f" WHERE products.active {store.true}"
        " ORDER BY products.name, products.id LIMIT ? OFFSET ?"
    )
    auth_sql = q(
        "SELECT customers.id FROM customers JOIN auth_sessions"
        " ON auth_sessions.customer_id = customers.id"
        " WHERE auth_sessions.token_hash = ? AND auth_sessions.expires_at > ?"
        " AND customers.deleted_at IS NULL"
    )
    order_by_key_sql = q("SELECT id FROM orders WHERE customer_id = ? AND idempotency_key = ?")
    cart_sql = q(
        "SELECT cart_items.id, cart_items.product_id, cart_items.quantity, products.name,"
        " products.price_cents, products.active, carts.id"
        " FROM carts JOIN cart_items ON cart_items.cart_id = carts.id"
        " JOIN products ON products.id = cart_items.product_id"
        " WHERE carts.customer_id = ? ORDER BY cart_items.product_id"
    )
    insert_order_sql = q(
        "INSERT INTO orders (customer_id, idempotency_key, status, item_count, subtotal_cents,"
        " shipping_cents, total_cents, ship_name, ship_address, ship_city, ship_postcode,"
        " ship_country, placed_at, created_at, updated_at)"
        " VALUES (?, ?, 'placed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    take_stock_sql = q(
        "UPDATE inventory SET quantity = quantity - ?, updated_at = ?"
        " WHERE product_id = ? AND quantity >= ?"
    )
    stock_left_sql = q("SELECT quantity FROM inventory WHERE product_id = ?")
    insert_line_sql = q(
        "INSERT INTO order_lines (order_id, product_id, product_name, quantity, unit_price_cents,"
        " line_total_cents, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    delete_items_sql = q("DELETE FROM cart_items WHERE cart_id = ?")
    tombstone_sql = q("INSERT INTO deleted_rows (table_name, row_key, deleted_at)"
                      " VALUES (?, ?, ?)")  # all placeholders: pymysql batches executemany
    read_order_sql = q(
        "SELECT id, status, item_count, subtotal_cents, shipping_cents, total_cents, ship_name,"
        " ship_address, ship_city, ship_postcode, ship_country, placed_at FROM orders WHERE id = ?"
    )
    read_lines_sql = q(
        "SELECT product_id, product_name, quantity, unit_price_cents, line_total_cents"
        " FROM order_lines WHERE order_id = ? ORDER BY id"
    )

    def int_param(request: Request, name: str, default: int, hi: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise Http(422, "invalid_input", f"{name} must be an integer") from None
        if not 1 <= value <= hi:
            raise Http(422, "invalid_input", f"{name} must be between 1 and {hi}")
        return value

    def list_products(request: Request) -> Response:
        try:
            page = int_param(request, "page", 1, 100_000)
            page_size = int_param(request, "page_size", 24, 100)
        except Http as e:
            return error(e.status, e.code, e.message)
        c = store.conn()
        cur = c.cursor()
        try:
            store.begin(cur, write=False)
            cur.execute(count_sql)
            total = cur.fetchone()[0] or 0
            cur.execute(page_sql, (page_size, (page - 1) * page_size))
            rows = cur.fetchall()
            store.rollback(c)  # read-only: end the snapshot
        except Exception:
            store.rollback(c)
            store.drop()
            raise
        finally:
            cur.close()
        items = []
        for (pid, sku, slug, name, desc, price, active, cid, cslug, cname, cdesc, qty) in rows:
            stock = qty if qty is not None else 0
            items.append({
                "id": pid, "sku": sku, "slug": slug, "name": name, "description": desc,
                "price_cents": price,
                "category": {"id": cid, "slug": cslug, "name": cname, "description": cdesc,
                             "product_count": 0},
                "active": bool(active), "in_stock": bool(active) and stock > 0, "stock": stock,
            })
        return JSONResponse({"items": items, "total": total, "page": page,
                             "page_size": page_size,
                             "pages": max(1, math.ceil(total / page_size))})

    def order_json(cur, order_id: int) -> dict:  # type: ignore[no-untyped-def]
        cur.execute(read_order_sql, (order_id,))
        (oid, status, count, sub, ship, total, name, addr, city, pc, country,
         placed) = cur.fetchone()
        cur.execute(read_lines_sql, (order_id,))
        lines = [{"product_id": p, "product_name": n, "quantity": qn, "unit_price_cents": u,
                  "line_total_cents": lt} for (p, n, qn, u, lt) in cur.fetchall()]
        return {"id": oid, "status": status, "item_count": count, "subtotal_cents": sub,
                "shipping_cents": ship, "total_cents": total, "ship_name": name,
                "ship_address": addr, "ship_city": city, "ship_postcode": pc,
                "ship_country": country, "placed_at": iso(store.parse_ts(placed)),
                "lines": lines}

    def parse_shipping(raw: bytes) -> dict[str, str]:
        try:
            body = json.loads(raw)
        except ValueError:
            raise Http(422, "invalid_input", "body is not JSON") from None
        if not isinstance(body, dict) or set(body) != {"shipping"}:
            raise Http(422, "invalid_input", "body must be {\"shipping\": {...}}")
        ship = body["shipping"]
        if not isinstance(ship, dict) or set(ship) != {*SHIP_FIELDS, "country"}:
            raise Http(422, "invalid_input", "shipping needs name, address, city, postcode, "
                       "country")
        out = {}
        for key, limit in SHIP_FIELDS.items():
            value = ship[key].strip() if isinstance(ship[key], str) else ""
            if not 1 <= len(value) <= limit:
                raise Http(422, "invalid_input", f"shipping.{key} is invalid")
            out[key] = value
        if not isinstance(ship["country"], str) or not COUNTRY.match(ship["country"]):
            raise Http(422, "invalid_input", "shipping.country must be two capitals")
        out["country"] = ship["country"]
        return out

    def checkout(c, customer_id: int, key: str, ship: dict[str, str]):  # type: ignore[no-untyped-def]
        """One transaction; returns (status, order dict)."""
        cur = c.cursor()
        try:
            store.begin(cur, write=True)
            cur.execute(order_by_key_sql, (customer_id, key))
            found = cur.fetchone()
            if found is not None:  # a retry of an order already placed
                order = order_json(cur, found[0])
                store.commit(c)
                return 200, order
            cur.execute(cart_sql, (customer_id,))
            items = cur.fetchall()
            if not items:
                raise Http(409, "cart_empty", "Your cart is empty.")
            for (_iid, _pid, _qty, name, _price, active, _cart) in items:
                if not active:
                    raise Http(409, "product_unavailable", f"{name!r} is no longer sold.")
            now = datetime.now(UTC)
            ts = store.ts(now)
            subtotal = sum(price * qty for (_i, _p, qty, _n, price, _a, _c) in items)
            shipping = (0 if subtotal == 0 or subtotal >= FREE_SHIPPING_FROM_CENTS
                        else SHIPPING_CENTS)
            cur.execute(insert_order_sql, (
                customer_id, key, sum(i[2] for i in items), subtotal, shipping,
                subtotal + shipping, ship["name"], ship["address"], ship["city"],
                ship["postcode"], ship["country"], ts, ts, ts))
            order_id = cur.lastrowid
            for (_iid, pid, qty, name, _price, _a, _c) in items:
                cur.execute(take_stock_sql, (qty, ts, pid, qty))
                if cur.rowcount != 1:
                    cur.execute(stock_left_sql, (pid,))
                    left = (cur.fetchone() or (0,))[0]
                    raise Http(409, "out_of_stock", f"Only {left} of {name!r} left.")
            cur.executemany(insert_line_sql, [
                (order_id, pid, name, qty, price, price * qty, ts, ts)
                for (_iid, pid, qty, name, price, _a, _c) in items])
            cur.execute(delete_items_sql, (items[0][6],))
            cur.executemany(tombstone_sql, [("cart_items", str(iid), ts)
                                            for (iid, *_rest) in items])
            store.commit(c)
            return 201, {
                "id": order_id, "status": "placed", "item_count": sum(i[2] for i in items),
                "subtotal_cents": subtotal, "shipping_cents": shipping,
                "total_cents": subtotal + shipping, "ship_name": ship["name"],
                "ship_address": ship["address"], "ship_city": ship["city"],
                "ship_postcode": ship["postcode"], "ship_country": ship["country"],
                "placed_at": iso(now),
                "lines": [{"product_id": pid, "product_name": name, "quantity": qty,
                           "unit_price_cents": price, "line_total_cents": price * qty}
                          for (_iid, pid, qty, name, price, _a, _c) in items],
            }
        except BaseException:
            store.rollback(c)
            raise
        finally:
            cur.close()

    async def place_order(request: Request) -> Response:
        raw = await request.body()
        return await _in_thread(_place_order, request.headers, raw)

    def _place_order(headers, raw: bytes) -> Response:  # type: ignore[no-untyped-def]
        try:
            auth = headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise Http(401, "unauthorized", "Log in first.")
            key = headers.get("idempotency-key", "")
            if not IDEM_KEY.match(key):
                raise Http(422, "invalid_input", "Idempotency-Key header is missing or invalid")
            ship = parse_shipping(raw)
            c = store.conn()
            cur = c.cursor()
            try:  # the token lookup is its own short read, as in tierlake
                store.begin(cur, write=False)
                cur.execute(auth_sql, (hashlib.sha256(token.encode()).hexdigest(),
                                       store.ts(datetime.now(UTC))))
                row = cur.fetchone()
                store.rollback(c)
            except BaseException:
                store.rollback(c)
                raise
            finally:
                cur.close()
            if row is None:
                raise Http(401, "invalid_token", "Your session has expired or is not valid.")
            for attempt in range(1, 5):
                try:
                    status, order = checkout(c, row[0], key, ship)
                    break
                except Http:
                    raise
                except Exception as exc:
                    if store.integrity_error(exc):  # same key placed concurrently
                        cur = c.cursor()
                        try:
                            store.begin(cur, write=False)
                            cur.execute(order_by_key_sql, (row[0], key))
                            found = cur.fetchone()
                            if found is None:
                                raise
                            order = order_json(cur, found[0])
                            store.rollback(c)
                        finally:
                            cur.close()
                        status = 200
                        break
                    if attempt == 4 or not store.transient(exc):
                        store.drop()
                        raise
                    time.sleep(0.02 * attempt)
        except Http as e:
            return error(e.status, e.code, e.message)
        return JSONResponse(order, status, headers={"Location": f"/api/v1/orders/{order['id']}"})

    def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[
        Route("/api/v1/products", list_products, methods=["GET"]),
        Route("/api/v1/orders", place_order, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ])
    # The handlers' bodies without HTTP, for bench/stage_breakdown.py.
    app.state.list_products = list_products
    app.state.place_order = _place_order
    return app


async def _in_thread(fn, *args):  # type: ignore[no-untyped-def]
    # The same thread pool Starlette (and FastAPI) run sync endpoints in.
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def main() -> None:
    parser = argparse.ArgumentParser(description="The HTTP bench's minimal anchor app.")
    parser.add_argument("--db", required=True, help="sqlite:///PATH or mysql+pymysql://u:p@h:p/db")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the anchor serves loopback only")
    # The same uvicorn settings as `tierlake serve app`.
    uvicorn.run(make_app(args.db), host=args.host, port=args.port, log_config=None,
                access_log=False, timeout_graceful_shutdown=10, server_header=False)


if __name__ == "__main__":
    main()
