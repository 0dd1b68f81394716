"""Synthetic store databases and clickstreams for the analytics pipeline benchmarks.

``build_store(url, lines)`` migrates an empty database (SQLite file or MariaDB) with
``tierlake.data.migrate.upgrade`` and bulk-loads a store with ``lines`` order lines:
a few categories, products and customers, ``lines / 2.5`` orders (1-4 lines each), all
timestamps spread over the year that ended yesterday (so a 300 s extract lookback sees
none of them). Rows are generated with numpy and inserted with the raw DB-API driver:
SQLite through ``executemany`` in large transactions with foreign keys off, MariaDB
through PyMySQL's multi-row ``executemany`` with ``FOREIGN_KEY_CHECKS=0``.

Run it alone to time a build::

    .venv/bin/python bench/pipeline_data.py --lines 5000000 --url sqlite:////tmp/store.db
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
from sqlalchemy import create_engine

from tierlake.data.migrate import upgrade

CHUNK = 50_000
COUNTRIES = np.array(["GB", "FR", "DE", "ES", "IT", "NL", "IE", "US", "PL", "SE"])
STATUSES = np.array(["placed", "paid", "shipped", "delivered", "cancelled"])
STATUS_P = [0.05, 0.10, 0.15, 0.65, 0.05]
WORDS = ["Oak", "Linen", "Copper", "Wool", "Stone", "Glass", "Cedar", "Slate", "Ash", "Brass"]
ITEMS = ["Lamp", "Chair", "Mug", "Throw", "Shelf", "Bowl", "Vase", "Rug", "Clock", "Stool"]


def _ts_strings(micros: np.ndarray) -> list[str]:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` (how SQLAlchemy stores UTCDateTime) for epoch micros."""
    text = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us")
    return [s.replace("T", " ") for s in text.tolist()]


def _span(rng: np.random.Generator, n: int, start: int, end: int) -> np.ndarray:
    return np.sort(rng.integers(start, end, n, dtype=np.int64))


def _rows(columns: Sequence[Any]) -> list[tuple[Any, ...]]:
    return list(zip(*[c.tolist() if isinstance(c, np.ndarray) else c for c in columns],
                    strict=True))


def generate(lines: int, seed: int = 7) -> dict[str, tuple[list[str], Iterator[list[tuple]]]]:
    """Every table's columns and its rows in chunks (order lines are generated lazily)."""
    rng = np.random.default_rng(seed)
    end_dt = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end_dt -= timedelta(days=1)
    end = int(end_dt.timestamp() * 1e6)
    start = end - 365 * 86_400 * 1_000_000
    n_cat, n_prod = 12, 240
    n_cust = max(1000, lines // 50)
    n_orders = max(1, int(lines / 2.5))

    cat_ts = _ts_strings(np.full(n_cat, start))
    categories = _rows([np.arange(1, n_cat + 1), [f"cat-{i}" for i in range(1, n_cat + 1)],
                        [f"Category {i}" for i in range(1, n_cat + 1)], [""] * n_cat,
                        cat_ts, cat_ts])
    prod_ids = np.arange(1, n_prod + 1)
    prices = rng.integers(299, 19_999, n_prod)
    names = [f"{WORDS[i % 10]} {ITEMS[(i // 10) % 10]} {i}" for i in range(n_prod)]
    prod_ts = _ts_strings(np.full(n_prod, start))
    products = _rows([prod_ids, [f"SKU-{i:05d}" for i in prod_ids],
                      [f"product-{i}" for i in prod_ids], names, ["A fine thing."] * n_prod,
                      (prod_ids - 1) % n_cat + 1, prices, np.ones(n_prod, dtype=np.int64),
                      [None] * n_prod, prod_ts, prod_ts])
    inventory = _rows([prod_ids, rng.integers(0, 500, n_prod), prod_ts, prod_ts])
    cust_ids = np.arange(1, n_cust + 1)
    cust_ts = _ts_strings(_span(rng, n_cust, start, end))
    customers = _rows([cust_ids, [f"c{i}@example.com" for i in cust_ids],
                       [f"Customer {i}" for i in cust_ids], ["x"] * n_cust,
                       np.zeros(n_cust, dtype=np.int64), COUNTRIES[rng.integers(0, 10, n_cust)],
                       [None] * n_cust, cust_ts, cust_ts])

    # order lines: 1-4 per order (mean 2.5), trimmed/padded to exactly `lines`
    counts = rng.integers(1, 5, n_orders)
    order_of_line = np.repeat(np.arange(1, n_orders + 1), counts)[:lines]
    if len(order_of_line) < lines:
        extra = np.sort(rng.integers(1, n_orders + 1, lines - len(order_of_line)))
        order_of_line = np.sort(np.concatenate([order_of_line, extra]))
    product_of_line = rng.integers(1, n_prod + 1, lines)
    qty = rng.integers(1, 4, lines)
    unit = prices[product_of_line - 1]
    total = qty * unit
    order_ids = np.arange(1, n_orders + 1)
    placed = _span(rng, n_orders, start, end)
    sub = np.bincount(order_of_line, weights=total, minlength=n_orders + 1)[1:].astype(np.int64)
    items = np.bincount(order_of_line, weights=qty, minlength=n_orders + 1)[1:].astype(np.int64)
    ship = np.where(sub >= 5000, 0, 495)
    order_cust = rng.integers(1, n_cust + 1, n_orders)
    status = STATUSES[rng.choice(5, n_orders, p=STATUS_P)]
    country = COUNTRIES[order_cust % 10]

    def order_chunks() -> Iterator[list[tuple]]:
        for lo in range(0, n_orders, CHUNK):
            s = slice(lo, lo + CHUNK)
            ids = order_ids[s]
            ts = _ts_strings(placed[s])
            yield _rows([ids, order_cust[s], [f"idem-{i}" for i in ids.tolist()], status[s],
                         items[s], sub[s], ship[s], sub[s] + ship[s],
                         [f"Customer {c}" for c in order_cust[s].tolist()],
                         ["1 High Street"] * len(ids), ["Townsville"] * len(ids),
                         ["AB1 2CD"] * len(ids), country[s], ts, ts, ts])

    def line_chunks() -> Iterator[list[tuple]]:
        for lo in range(0, lines, CHUNK):
            s = slice(lo, lo + CHUNK)
            ts = _ts_strings(placed[order_of_line[s] - 1])
            yield _rows([np.arange(lo + 1, lo + 1 + len(ts)), order_of_line[s],
                         product_of_line[s], [names[p - 1] for p in product_of_line[s].tolist()],
                         qty[s], unit[s], total[s], ts, ts])

    return {
        "categories": (["id", "slug", "name", "description", "created_at", "updated_at"],
                       iter([categories])),
        "products": (["id", "sku", "slug", "name", "description", "category_id", "price_cents",
                      "active", "retired_at", "created_at", "updated_at"], iter([products])),
        "inventory": (["product_id", "quantity", "created_at", "updated_at"], iter([inventory])),
        "customers": (["id", "email", "name", "password_hash", "is_admin", "country",
                       "deleted_at", "created_at", "updated_at"],
                      (customers[i:i + CHUNK] for i in range(0, n_cust, CHUNK))),
        "orders": (["id", "customer_id", "idempotency_key", "status", "item_count",
                    "subtotal_cents", "shipping_cents", "total_cents", "ship_name",
                    "ship_address", "ship_city", "ship_postcode", "ship_country", "placed_at",
                    "created_at", "updated_at"], order_chunks()),
        "order_lines": (["id", "order_id", "product_id", "product_name", "quantity",
                         "unit_price_cents", "line_total_cents", "created_at", "updated_at"],
                        line_chunks()),
    }


def sqlite_path(url: str) -> str:
    return unquote(url.split("sqlite:///", 1)[1])


def mysql_connect(url: str) -> Any:
    import pymysql

    u = urlparse(url)
    return pymysql.connect(host=u.hostname, port=u.port or 3306, user=unquote(u.username or ""),
                           password=unquote(u.password or ""), database=u.path.lstrip("/"),
                           autocommit=False, max_allowed_packet=64 << 20)


def build_store(url: str, lines: int, *, seed: int = 7) -> dict[str, int]:
    """Migrate the (empty) database at ``url`` and load a synthetic store; row counts."""
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    tables = generate(lines, seed)
    counts: dict[str, int] = {}
    if url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(url))
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        ph = "?"
    else:
        conn = mysql_connect(url)
        conn.cursor().execute("SET FOREIGN_KEY_CHECKS=0")
        conn.cursor().execute("SET UNIQUE_CHECKS=0")
        ph = "%s"
    cur = conn.cursor()
    for name, (cols, chunks) in tables.items():
        sql = (f"INSERT INTO {name} ({', '.join(cols)}) "
               f"VALUES ({', '.join([ph] * len(cols))})")
        n = 0
        for chunk in chunks:
            cur.executemany(sql, chunk)
            n += len(chunk)
            if n % 1_000_000 < CHUNK:
                conn.commit()
        conn.commit()
        counts[name] = n
    if url.startswith("sqlite"):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    return counts


def touch_order_lines(url: str, fraction: float, shape: str = "spread") -> int:
    """Set ``updated_at`` = now on a ``fraction`` of the order lines; rows changed.

    ``spread``: every ``1/fraction``-th id, all over the table (the worst case for a MERGE:
    every file holds a changed row). ``recent``: the newest ``fraction`` of ids, the way a
    store changes (status changes of recent orders)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    step = max(1, round(1 / fraction))
    sqlite = url.startswith("sqlite")
    conn = sqlite3.connect(sqlite_path(url)) if sqlite else mysql_connect(url)
    cur = conn.cursor()
    mark = "?" if sqlite else "%s"
    if shape == "spread":
        where = f"id % {step} = 0" if sqlite else f"MOD(id, {step}) = 0"
        cur.execute(f"UPDATE order_lines SET updated_at = {mark} WHERE {where}", (now,))
    elif shape == "recent":
        cur.execute("SELECT min(id), max(id) FROM order_lines")
        lo, hi = cur.fetchone()
        cur.execute(f"UPDATE order_lines SET updated_at = {mark} WHERE id > {mark}",
                    (now, hi - (hi - lo + 1) // step))
    else:
        raise ValueError(f"shape must be 'spread' or 'recent', not {shape!r}")
    conn.commit()
    changed = cur.rowcount
    conn.close()
    return changed


def clickstream_table(events: int, *, products: int = 240, customers: int = 1000,
                      orders: int = 1000, days: int = 30, seed: int = 11) -> pa.Table:
    """``events`` synthetic ClickEvents with the columns of the lake's clickstream table."""
    from tierlake.events import EVENT_TYPES
    from tierlake.lake.sources.clickstream import LAKE_SCHEMA

    rng = np.random.default_rng(seed)
    end = int(datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
              .timestamp() * 1e6)
    ts = np.sort(rng.integers(end - days * 86_400 * 1_000_000, end, events, dtype=np.int64))
    kinds = np.array(EVENT_TYPES)[rng.choice(len(EVENT_TYPES), events,
                                             p=[0.70, 0.10, 0.10, 0.03, 0.04, 0.03])]
    sessions = rng.integers(1, max(2, events // 8), events)
    prod = rng.integers(1, products + 1, events)
    has_prod = np.isin(kinds, ["add_to_cart", "remove_from_cart"]) | (
        (kinds == "page_view") & (rng.random(events) < 0.5))
    cust = np.where(rng.random(events) < 0.4, sessions % customers + 1, 0)
    paths = np.where(has_prod, np.char.add("/products/product-", prod.astype(str)), "/")
    day = np.datetime_as_string(ts.astype("datetime64[us]"), unit="D")
    cols = {
        "event_id": pa.array([f"{i:032x}" for i in rng.integers(0, 2**62, events).tolist()]),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "event_type": pa.array(kinds.tolist()),
        "session_id": pa.array([f"s{i}" for i in sessions.tolist()]),
        "visitor_id": pa.array([f"v{i // 3}" for i in sessions.tolist()]),
        "customer_id": pa.array(cust, mask=cust == 0),
        "method": pa.array(np.where(kinds == "page_view", "GET", "POST").tolist()),
        "path": pa.array(paths.tolist()),
        "status": pa.array(np.full(events, 200)),
        "product_id": pa.array(prod, mask=~has_prod),
        "category": pa.array([None] * events, pa.string()),
        "query": pa.array(np.where(kinds == "search", "lamp", None).tolist(), pa.string()),
        "order_id": pa.array(rng.integers(1, orders + 1, events), mask=kinds != "purchase"),
        "referrer": pa.array([None] * events, pa.string()),
        "user_agent": pa.array(["bench/1.0"] * events),
        "source": pa.array(["web-1"] * events),
        "_source_file": pa.array([f"{d}/bench.jsonl" for d in day.tolist()]),
        "dt": pa.array(day.tolist()),
    }
    return pa.table(cols).cast(LAKE_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description="Build a synthetic store database (timed).")
    parser.add_argument("--lines", type=int, default=1_000_000, help="order lines to create")
    parser.add_argument("--url", required=True,
                        help="an EMPTY database: sqlite:///path.db or mysql+pymysql://...")
    args = parser.parse_args()
    began = time.perf_counter()
    counts = build_store(args.url, args.lines)
    print(counts, f"{time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
