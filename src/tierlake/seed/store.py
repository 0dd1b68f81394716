"""Demo data: a year of a realistic store, fast, on SQLite, MySQL/MariaDB or PostgreSQL.

``seed_store`` writes ~11 categories, a catalogue, stock, customers, the admin account,
orders with their lines and (optionally) the matching clickstream history:

* orders follow the calendar: a weekly pattern, a daily curve, slow growth and a
  November-December peak (Black Friday week highest); ids follow ``placed_at``;
* a few customers buy very often (Pareto propensity), every order's customer signed up
  before it, and popular products sell far more (Zipf); lines never repeat a product;
* totals are consistent: ``subtotal = sum(line totals)``, shipping by the store's
  one rule (``tierlake.pricing``, the cart's too), ``total = subtotal + shipping``;
  status follows age (old orders delivered, recent ones placed/paid/shipped, a few
  cancelled) and ``updated_at`` is the last change.

Every demo customer has the password ``demo-password`` and shares ONE argon2 hash of it:
argon2 is slow on purpose (tens of ms), so hashing per customer would take about a
minute for 1,000 customers. The hashes are still valid argon2 hashes of that password.

Speed and scale: rows are generated with numpy and written with SQLAlchemy Core
``insert()`` executemany in batches of ``INSERT_ROWS``, orders in chunks of
``CHUNK_ORDERS`` (one transaction each), so memory stays bounded for millions of
orders. Ids are explicit; on PostgreSQL the id sequences are moved past them
(``setval``) at the end. Deterministic for a given ``seed`` and ``now``.

Helpers: ``catalogue`` (word lists, products, customers), ``orders`` (the
calendar, orders and lines), ``clicks`` (the clickstream history).
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
from tierlake.errors import TierlakeError
from tierlake.seed.catalogue import (
    CATEGORIES,
    DAY_US,
    Catalogue,
    Customers,
    build_catalogue,
    build_customers,
    to_datetimes,
)
from tierlake.seed.clicks import HOUR_US, ClickGenerator
from tierlake.seed.orders import hourly_weights, order_chunk

log = structlog.get_logger(__name__)

DEMO_PASSWORD = "demo-password"  # the documented demo customers' password
CHUNK_ORDERS = 10_000
CLICK_BATCH = 2_500
INSERT_ROWS = 5_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
__all__ = ["SeedInfo", "StoreNotEmptyError", "is_empty", "seed_store"]
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


def _months_before(now: datetime, months: int) -> datetime:
    y, m = divmod(now.year * 12 + now.month - 1 - months, 12)
    first_next = datetime(y + (m + 1) // 12, (m + 1) % 12 + 1, 1, tzinfo=UTC)
    day = min(now.day, (first_next - timedelta(days=1)).day)
    return now.replace(year=y, month=m + 1, day=day)


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
    return int(conn.scalar(select(func.coalesce(func.max(T[table].c.id), 0))) or 0) + 1


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
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be an aware datetime, e.g. datetime.now(UTC)")
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
            if any((Path(events_dir) / "clickstream").glob("dt=*")):
                log.warning("seed.events_dir_not_empty", events_dir=str(events_dir),
                            fix="clickstream history is added beside the files already there; "
                            "empty the directory first unless that is what you want")
            clicks = ClickGenerator(Path(events_dir), catalogue, people, r_click, seed, now_us,
                                    hours, weights, orders)
        n_lines = _seed_orders(db, r_ord, orders, hours, weights, start_us, now_us, catalogue,
                               people, clicks, bars)
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
    born = to_datetimes(np.array([start - 1200 * DAY_US]))[0]
    conn.execute(insert(T["categories"]), [
        {"id": int(cat_ids[i]), "slug": c.slug, "name": c.name, "description": c.description,
         "created_at": born, "updated_at": born} for i, c in enumerate(CATEGORIES)])
    bars.add("categories", len(CATEGORIES), len(CATEGORIES))
    cat = build_catalogue(rng, n, start, now, first_id=_next_id(conn, "products"))
    created, retired = to_datetimes(cat.created), to_datetimes(np.maximum(cat.retired, 0))
    stock_at = to_datetimes(cat.stock_updated)

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
    admin_at = to_datetimes(np.array([min(int(people.created[0]), start) - DAY_US]))[0]
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
    created = to_datetimes(people.created)

    def rows(lo: int, hi: int) -> list[dict]:
        return [{"id": int(people.ids[i]), "email": people.emails[i], "name": people.names[i],
                 "password_hash": shared_hash, "is_admin": False, "country": people.country[i],
                 "created_at": created[i], "updated_at": created[i]} for i in range(lo, hi)]

    _insert(conn, customers, n, rows, bars)
    return people


def _seed_orders(db: Database, rng: np.random.Generator, total: int, hours: np.ndarray,
                 weights: np.ndarray, start: int, now: int, cat: Catalogue, people: Customers,
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
        hour = np.maximum(np.repeat(hours[a:b], counts[a:b]), start)
        span = np.minimum(now, hour // HOUR_US * HOUR_US + HOUR_US) - hour
        placed = np.sort(hour + (rng.random(len(hour)) * span).astype(np.int64))
        chunk = order_chunk(rng, cat, people, placed, now, next_order, next_line)
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


def _fix_sequences(db: Database) -> None:
    """Move PostgreSQL's id sequences past the explicit ids the seed wrote."""
    with db.engine.begin() as conn:
        for name in ("categories", "products", "customers", "orders", "order_lines"):
            conn.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"(SELECT MAX(id) FROM {name}))"
            ))
