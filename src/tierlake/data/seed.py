"""Demo data: a year of a realistic store, fast, on SQLite, MySQL/MariaDB or PostgreSQL.

``seed_store`` writes ~11 categories, a catalogue, stock, customers, the admin account,
orders with their lines and (optionally) the matching clickstream history:

* orders follow the calendar: a weekly pattern, a daily curve, slow growth and a
  November-December peak (Black Friday week highest); ids follow ``placed_at``;
* a few customers buy very often (Pareto propensity), every order's customer signed up
  before it, and popular products sell far more (Zipf); lines never repeat a product;
* totals are consistent: ``subtotal = sum(line totals)``, shipping is free from
  ``FREE_SHIPPING_FROM_CENTS`` else ``SHIPPING_CENTS`` (the cart's rule), ``total =
  subtotal + shipping``; status follows age (old orders delivered, recent ones
  placed/paid/shipped, a few cancelled) and ``updated_at`` is the last change.

Every demo customer has the password ``demo-password`` and shares ONE argon2 hash of it:
argon2 is slow on purpose (tens of ms), so hashing per customer would take about a
minute for 1,000 customers. The hashes are still valid argon2 hashes of that password.

Speed and scale: rows are generated with numpy and written with SQLAlchemy Core
``insert()`` executemany in batches of ``INSERT_ROWS``, orders in chunks of
``CHUNK_ORDERS`` (one transaction each), so memory stays bounded for millions of
orders. Ids are explicit; on PostgreSQL the id sequences are moved past them
(``setval``) at the end. Deterministic for a given ``seed`` and ``now``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Connection, Table, func, insert, select, text, update

from tierlake.app.security import hash_password
from tierlake.data import schema
from tierlake.data.db import Database
from tierlake.data.seed_catalogue import (
    CATEGORIES,
    DAY_US,
    Catalogue,
    Customers,
    build_catalogue,
    build_customers,
)
from tierlake.data.seed_clicks import HOUR_US, ClickGenerator
from tierlake.errors import TierlakeError

log = structlog.get_logger(__name__)

DEMO_PASSWORD = "demo-password"  # noqa: S105 - the documented demo customers' password
FREE_SHIPPING_FROM_CENTS = 5000  # same rule as tierlake.app.services.carts
SHIPPING_CENTS = 499
CHUNK_ORDERS = 10_000
CLICK_BATCH = 2_500
INSERT_ROWS = 5_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = {t.name: t for t in schema.Base.metadata.sorted_tables}


class StoreNotEmptyError(TierlakeError, RuntimeError):
    """The database already holds a catalogue or orders."""


@dataclass
class SeedInfo:
    categories: int
    products: int
    customers: int  # demo customers, the admin not included
    admins: int
    orders: int
    order_lines: int
    events: int
    event_files: int
    start: datetime
    end: datetime
    elapsed_seconds: float


def is_empty(db: Database) -> bool:
    """True if the store has no categories, products or orders (customers may exist)."""
    with db.engine.connect() as conn:
        return all(
            conn.execute(select(T[name].c.id).limit(1)).first() is None
            for name in ("categories", "products", "orders")
        )


def _us(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1)


def _dts(us: np.ndarray) -> list[datetime]:
    return [d.replace(tzinfo=UTC) for d in us.astype("datetime64[us]").tolist()]


def _months_before(now: datetime, months: int) -> datetime:
    y, m = divmod(now.year * 12 + now.month - 1 - months, 12)
    first_next = datetime(y + (m + 1) // 12, (m + 1) % 12 + 1, 1, tzinfo=UTC)
    day = min(now.day, (first_next - timedelta(days=1)).day)
    return now.replace(year=y, month=m + 1, day=day)


SEASON = {11: 1.45, 12: 1.9, 1: 0.85, 2: 0.85, 3: 0.95, 7: 0.9, 8: 0.9, 10: 1.05}
WEEKDAY = np.array([1.08, 1.0, 0.98, 0.97, 0.9, 0.86, 1.12])  # Monday first
HOUR_OF_DAY = np.array([0.35, 0.25, 0.2, 0.18, 0.2, 0.3, 0.5, 0.75, 0.95, 1.05, 1.1, 1.15,
                        1.2, 1.15, 1.1, 1.1, 1.15, 1.25, 1.4, 1.55, 1.6, 1.45, 1.1, 0.7])


def hourly_weights(start: int, now: int) -> tuple[np.ndarray, np.ndarray]:
    """Hour starts from ``start`` to ``now`` and each hour's relative order rate."""
    hours = np.arange(start // HOUR_US * HOUR_US, now, HOUR_US, dtype=np.int64)
    days = hours.astype("datetime64[us]").astype("datetime64[D]")
    month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    mday = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    season = np.array([SEASON.get(m, 1.0) for m in range(13)])[month]
    season[(month == 11) & (mday >= 23)] = 2.6  # Black Friday to Cyber Monday
    season[(month == 12) & (mday >= 21)] = 1.3
    season[(month == 12) & (mday >= 24) & (mday <= 25)] = 0.6
    weekday = WEEKDAY[(days.astype(np.int64) + 3) % 7]
    hod = HOUR_OF_DAY[(hours // HOUR_US) % 24]
    trend = 1.0 + 0.35 * (hours - hours[0]) / max(now - hours[0], 1)
    part = np.minimum(now - hours, HOUR_US) / HOUR_US  # the current hour is partial
    return hours, season * weekday * hod * trend * part


class _Bars:
    """A rich progress bar per table, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.progress: Progress | None = None
        if enabled:
            self.progress = Progress(TextColumn("{task.description:<14}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(),
                                     console=Console(stderr=True))
        self.tasks: dict[str, Any] = {}

    @contextmanager
    def shown(self) -> Iterator[_Bars]:
        if self.progress is None:
            yield self
            return
        with self.progress:
            yield self

    def add(self, name: str, n: int, total: int | None = None) -> None:
        if self.progress is None:
            return
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.advance(self.tasks[name], n)

    def total(self, name: str, total: int) -> None:
        if self.progress is not None and name in self.tasks:
            self.progress.update(self.tasks[name], total=total, completed=total)


def _insert(conn: Connection, table: Table, n: int, rows: Callable[[int, int], list[dict]],
            bars: _Bars, total: int | None = None) -> None:
    for lo in range(0, n, INSERT_ROWS):
        batch = rows(lo, min(lo + INSERT_ROWS, n))
        conn.execute(insert(table), batch)
        bars.add(table.name, len(batch), total if total is not None else n)


def _next_id(conn: Connection, table: str) -> int:
    return int(conn.scalar(select(func.coalesce(func.max(T[table].c.id), 0)))) + 1


def seed_store(
    db: Database,
    *,
    products: int = 240,
    customers: int = 1000,
    orders: int = 20_000,
    months: int = 12,
    events_dir: Path | None = None,
    seed: int = 42,
    admin_email: str,
    admin_password: str,
    progress: bool = True,
    now: datetime | None = None,
) -> SeedInfo:
    """Fill an empty store with demo data (see the module docstring); returns the counts.

    Raises :class:`StoreNotEmptyError` if the store already has categories, products or
    orders. ``now`` (aware UTC, default the current time) is where the history ends.
    """
    if products < 1 or customers < 1 or orders < 0 or months < 1:
        raise ValueError("need products >= 1, customers >= 1, orders >= 0 and months >= 1")
    if not is_empty(db):
        raise StoreNotEmptyError(
            f"the store at {db.engine.url.render_as_string(hide_password=True)} already has "
            "a catalogue or orders; seed an empty database (drop it and run `tierlake db "
            "migrate` again) instead of seeding twice"
        )
    began = time.perf_counter()
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = _months_before(end, months)
    now_us, start_us = _us(end), _us(start)
    r_cat, r_cust, r_ord, r_click = (np.random.default_rng(s)
                                     for s in np.random.SeedSequence(seed).spawn(4))
    bars = _Bars(progress)
    with bars.shown():
        with db.engine.begin() as conn:
            cat_ids, catalogue = _seed_catalogue(conn, r_cat, products, start_us, now_us, bars)
            people = _seed_customers(conn, r_cust, customers, start_us, now_us, admin_email,
                                     admin_password, bars)
        hours, weights = hourly_weights(start_us, now_us)
        clicks = None
        if events_dir is not None:
            clicks = ClickGenerator(Path(events_dir), catalogue, people, r_click, seed, now_us,
                                    hours, weights, orders)
        n_lines = _seed_orders(db, r_ord, orders, hours, weights, now_us, catalogue, people,
                               clicks, bars)
        if clicks is not None:
            clicks.finish()
            bars.total("clickstream", clicks.events)
    if db.backend == "postgresql":
        _fix_sequences(db)
    info = SeedInfo(len(CATEGORIES), products, customers, 1, orders, n_lines,
                    clicks.events if clicks else 0, clicks.files if clicks else 0, start, end,
                    round(time.perf_counter() - began, 3))
    log.info("seed.done", **{k: v for k, v in vars(info).items() if isinstance(v, int | float)})
    return info


def _seed_catalogue(conn: Connection, rng: np.random.Generator, n: int, start: int, now: int,
                    bars: _Bars) -> tuple[np.ndarray, Catalogue]:
    cat0 = _next_id(conn, "categories")
    cat_ids = np.arange(cat0, cat0 + len(CATEGORIES), dtype=np.int64)
    born = _dts(np.array([start - 1200 * DAY_US]))[0]
    conn.execute(insert(T["categories"]), [
        {"id": int(cat_ids[i]), "slug": c.slug, "name": c.name, "description": c.description,
         "created_at": born, "updated_at": born} for i, c in enumerate(CATEGORIES)])
    bars.add("categories", len(CATEGORIES), len(CATEGORIES))
    cat = build_catalogue(rng, n, start, now, first_id=_next_id(conn, "products"))
    created, retired = _dts(cat.created), _dts(np.maximum(cat.retired, 0))
    stock_at = _dts(cat.stock_updated)

    def product_rows(lo: int, hi: int) -> list[dict]:
        return [{
            "id": int(cat.ids[i]), "sku": cat.skus[i], "slug": cat.slugs[i],
            "name": cat.names[i], "description": cat.descriptions[i],
            "category_id": int(cat_ids[cat.category[i]]), "price_cents": int(cat.price[i]),
            "active": bool(cat.retired[i] < 0),
            "retired_at": retired[i] if cat.retired[i] >= 0 else None,
            "created_at": created[i],
            "updated_at": retired[i] if cat.retired[i] >= 0 else created[i],
        } for i in range(lo, hi)]

    def stock_rows(lo: int, hi: int) -> list[dict]:
        return [{"product_id": int(cat.ids[i]), "quantity": int(cat.stock[i]),
                 "created_at": created[i], "updated_at": stock_at[i]} for i in range(lo, hi)]

    _insert(conn, T["products"], n, product_rows, bars)
    _insert(conn, T["inventory"], n, stock_rows, bars)
    return cat_ids, cat


def _seed_customers(conn: Connection, rng: np.random.Generator, n: int, start: int, now: int,
                    admin_email: str, admin_password: str, bars: _Bars) -> Customers:
    first = _next_id(conn, "customers")
    people = build_customers(rng, n, start, now, first_id=first + 1)
    admin_at = _dts(np.array([min(int(people.created[0]), start) - DAY_US]))[0]
    admin = {"email": admin_email.lower(), "name": "Store Admin", "is_admin": True,
             "password_hash": hash_password(admin_password), "country": "GB",
             "updated_at": admin_at}
    customers = T["customers"]
    existing = conn.scalar(select(customers.c.id).where(customers.c.email == admin["email"]))
    if existing is None:
        conn.execute(insert(customers), [{"id": first, "created_at": admin_at, **admin}])
    else:  # an account with that address exists: make it the admin, with this password
        conn.execute(update(customers).where(customers.c.id == existing).values(
            is_admin=True, password_hash=admin["password_hash"], updated_at=datetime.now(UTC)))
        log.info("seed.admin_updated", email=admin["email"])
    shared_hash = hash_password(DEMO_PASSWORD)  # one hash for all: see the module docstring
    created = _dts(people.created)

    def rows(lo: int, hi: int) -> list[dict]:
        return [{"id": int(people.ids[i]), "email": people.emails[i], "name": people.names[i],
                 "password_hash": shared_hash, "is_admin": False, "country": people.country[i],
                 "created_at": created[i], "updated_at": created[i]} for i in range(lo, hi)]

    _insert(conn, customers, n, rows, bars)
    return people


LINES_P = np.array([0.45, 0.28, 0.15, 0.08, 0.04])
QTY_P = np.array([0.78, 0.14, 0.05, 0.02, 0.01])


def _draw_products(rng: np.random.Generator, cat: Catalogue, at: np.ndarray) -> np.ndarray:
    """One product per line, by popularity, among those on sale at ``at``."""
    cum = np.cumsum(cat.popularity)
    idx = np.minimum(np.searchsorted(cum, rng.random(len(at)) * cum[-1], "right"), len(cum) - 1)
    for _ in range(30):
        bad = np.flatnonzero(~cat.available(idx, at))
        if not len(bad):
            return idx
        idx[bad] = np.minimum(np.searchsorted(cum, rng.random(len(bad)) * cum[-1], "right"),
                              len(cum) - 1)
    idx[~cat.available(idx, at)] = int(np.argmax(cat.popularity))  # always on sale
    return idx


def _seed_orders(db: Database, rng: np.random.Generator, total: int, hours: np.ndarray,
                 weights: np.ndarray, now: int, cat: Catalogue, people: Customers,
                 clicks: ClickGenerator | None, bars: _Bars) -> int:
    if total == 0:
        return 0
    counts = rng.multinomial(total, weights / weights.sum())
    ends = np.searchsorted(np.cumsum(counts), np.arange(CHUNK_ORDERS, total, CHUNK_ORDERS))
    with db.engine.connect() as conn:
        next_order, next_line = _next_id(conn, "orders"), _next_id(conn, "order_lines")
    n_lines = 0
    for a, b in zip(np.r_[0, ends + 1], np.r_[ends + 1, len(hours)], strict=True):
        if counts[a:b].sum() == 0:
            continue
        hour = np.repeat(hours[a:b], counts[a:b])
        span = np.minimum(now - hour, HOUR_US)
        placed = np.sort(hour + (rng.random(len(hour)) * span).astype(np.int64))
        chunk = _order_chunk(rng, cat, people, placed, now, next_order, next_line)
        with db.engine.begin() as conn:
            _insert(conn, T["orders"], len(placed), chunk.order_rows, bars, total)
            _insert(conn, T["order_lines"], len(chunk.line_order), chunk.line_rows, bars)
        if clicks is not None:
            for s in range(0, len(placed), CLICK_BATCH):
                e = min(s + CLICK_BATCH, len(placed))
                la, lb = np.searchsorted(chunk.line_order, [s, e])
                before = clicks.events
                clicks.add_orders(chunk.ids[s:e], placed[s:e], chunk.cust[s:e],
                                  chunk.line_order[la:lb] - s, chunk.product[la:lb])
                bars.add("clickstream", clicks.events - before)
        next_order += len(placed)
        next_line += len(chunk.line_order)
        n_lines += len(chunk.line_order)
    bars.total("order_lines", n_lines)
    return n_lines


@dataclass
class _Chunk:
    ids: np.ndarray
    cust: np.ndarray
    line_order: np.ndarray
    product: np.ndarray
    order_rows: Callable[[int, int], list[dict]]
    line_rows: Callable[[int, int], list[dict]]


def _order_chunk(rng: np.random.Generator, cat: Catalogue, people: Customers,
                 placed: np.ndarray, now: int, first_order: int, first_line: int) -> _Chunk:
    n = len(placed)
    ids = np.arange(first_order, first_order + n, dtype=np.int64)
    # The customer: anyone who had signed up by then, weighted by their propensity.
    k = np.searchsorted(people.created, placed, "left")
    assert k.min() >= 1, "the first customer signs up before the window"
    u = rng.random(n) * people.cum_weight[k - 1]
    cust = np.minimum(np.searchsorted(people.cum_weight, u, "right"), k - 1)
    # Lines: 1-5 products, distinct within an order (a repeat draw adds to the quantity).
    n_lines = rng.choice(5, size=n, p=LINES_P) + 1
    line_order = np.repeat(np.arange(n), n_lines)
    product = _draw_products(rng, cat, placed[line_order])
    qty = rng.choice(5, size=len(line_order), p=QTY_P) + 1
    key, inv = np.unique(line_order * len(cat.ids) + product, return_inverse=True)
    qty = np.bincount(inv, weights=qty).astype(np.int64)
    line_order, product = key // len(cat.ids), key % len(cat.ids)
    unit = cat.price[product]
    line_total = qty * unit
    subtotal = np.bincount(line_order, weights=line_total, minlength=n).round().astype(np.int64)
    items = np.bincount(line_order, weights=qty, minlength=n).astype(np.int64)
    shipping = np.where(subtotal >= FREE_SHIPPING_FROM_CENTS, 0, SHIPPING_CENTS)
    # Status from age: paid within hours, shipped 0.5-2 days later, delivered 1-5 days later.
    paid = placed + (rng.exponential(3 * 3600, n) * 1e6).astype(np.int64) + 1_000_000
    shipped = paid + rng.integers(12 * HOUR_US, 48 * HOUR_US, n)
    delivered = shipped + rng.integers(24 * HOUR_US, 120 * HOUR_US, n)
    cancel = placed + (rng.uniform(0.05, 0.9, n) * (shipped - placed)).astype(np.int64)
    cancelled = (rng.random(n) < 0.025) & (cancel <= now)
    steps = [(cancelled, "cancelled", cancel), (delivered <= now, "delivered", delivered),
             (shipped <= now, "shipped", shipped), (paid <= now, "paid", paid)]
    status = np.select([c for c, _, _ in steps], [s for _, s, _ in steps], "placed")
    changed = np.select([c for c, _, _ in steps], [t for _, _, t in steps], placed)

    placed_at, changed_at = _dts(placed), _dts(changed)
    c_ids, c_list = people.ids[cust].tolist(), cust.tolist()
    o_ids = ids.tolist()

    def order_rows(lo: int, hi: int) -> list[dict]:
        rows = []
        for i in range(lo, hi):
            c = c_list[i]
            rows.append({
                "id": o_ids[i], "customer_id": c_ids[i], "idempotency_key": f"seed-{o_ids[i]}",
                "status": str(status[i]), "item_count": int(items[i]),
                "subtotal_cents": int(subtotal[i]), "shipping_cents": int(shipping[i]),
                "total_cents": int(subtotal[i] + shipping[i]), "ship_name": people.names[c],
                "ship_address": people.address[c], "ship_city": people.city[c],
                "ship_postcode": people.postcode[c], "ship_country": people.country[c],
                "placed_at": placed_at[i], "created_at": placed_at[i],
                "updated_at": changed_at[i],
            })
        return rows

    l_order, l_prod = line_order.tolist(), product.tolist()
    l_qty, l_unit, l_total = qty.tolist(), unit.tolist(), line_total.tolist()
    p_ids = cat.ids.tolist()

    def line_rows(lo: int, hi: int) -> list[dict]:
        return [{
            "id": first_line + j, "order_id": o_ids[l_order[j]], "product_id": p_ids[l_prod[j]],
            "product_name": cat.names[l_prod[j]], "quantity": l_qty[j],
            "unit_price_cents": l_unit[j], "line_total_cents": l_total[j],
            "created_at": placed_at[l_order[j]], "updated_at": placed_at[l_order[j]],
        } for j in range(lo, hi)]

    return _Chunk(ids, cust, line_order, product, order_rows, line_rows)


def _fix_sequences(db: Database) -> None:
    """Move PostgreSQL's id sequences past the explicit ids the seed wrote."""
    with db.engine.begin() as conn:
        for name in ("categories", "products", "customers", "orders", "order_lines"):
            conn.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"(SELECT MAX(id) FROM {name}))"
            ))
