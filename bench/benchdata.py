"""Bench data built with SQLAlchemy Core bulk inserts (independent of ``tierlake.seed``).

One call builds a migrated store holding a catalogue (``products`` products in
``categories`` categories, each with ``stock`` units of inventory) and
``customers`` shoppers, each with a live login session (a bearer token, stored
as its SHA-256 like the app does) and a cart holding one unit of one product
(customer ``i`` buys product ``i % products + 1``, so checkouts spread over every
inventory row). The tokens are returned in customer order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, insert, select

from tierlake.app.security import token_hash
from tierlake.data import migrate
from tierlake.data.db import create_db_engine
from tierlake.data.schema import (
    AuthSession,
    Cart,
    CartItem,
    Category,
    Customer,
    DeletedRow,
    Inventory,
    Order,
    OrderLine,
    Product,
)

BATCH = 5000
WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor", "indigo",
         "juniper", "kelp", "lagoon", "meadow", "nickel", "orchid", "prairie", "quartz", "river",
         "sierra", "tundra", "umber", "valley", "willow", "yarrow", "zephyr")
KINDS = ("lamp", "mug", "jacket", "kettle", "notebook", "backpack", "scarf", "bottle", "chair",
         "clock", "blanket", "candle")


@dataclass
class BenchStore:
    url: str
    products: int
    customers: int
    stock: int
    tokens: list[str] = field(default_factory=list)


def _chunks(rows: list[dict], size: int = BATCH):  # type: ignore[no-untyped-def]
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def _bulk(engine: Engine, table, rows: list[dict]) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        for chunk in _chunks(rows):
            conn.execute(insert(table.__table__), chunk)


def build_store(url: str, *, products: int = 240, categories: int = 12, customers: int = 0,
                stock: int = 1_000_000, seed: int = 7) -> BenchStore:
    """Migrate the (empty) database at ``url`` and fill it; returns the tokens."""
    rnd = random.Random(seed)
    engine = create_db_engine(url)
    try:
        migrate.upgrade(engine)
        now = datetime.now(UTC)
        ts = {"created_at": now, "updated_at": now}
        _bulk(engine, Category, [
            {"id": c, "slug": f"{KINDS[(c - 1) % len(KINDS)]}s-{c}",
             "name": f"{KINDS[(c - 1) % len(KINDS)].title()}s {c}",
             "description": f"Everything {KINDS[(c - 1) % len(KINDS)]}, collection {c}.", **ts}
            for c in range(1, categories + 1)
        ])
        prows, irows = [], []
        for p in range(1, products + 1):
            name = f"{rnd.choice(WORDS).title()} {rnd.choice(WORDS)} {KINDS[p % len(KINDS)]} {p}"
            prows.append({
                "id": p, "sku": f"BENCH-{p:05d}", "slug": f"{name.lower().replace(' ', '-')}",
                "name": name, "description": f"A {name.lower()} for the benchmark. " * 3,
                "category_id": (p - 1) % categories + 1, "price_cents": rnd.randint(199, 19999),
                "active": True, "retired_at": None, **ts,
            })
            irows.append({"product_id": p, "quantity": stock, **ts})
        _bulk(engine, Product, prows)
        _bulk(engine, Inventory, irows)
        tokens: list[str] = []
        if customers:
            expires = now + timedelta(days=2)
            crows, srows, carts, items = [], [], [], []
            for i in range(1, customers + 1):
                token = f"bench-{seed}-{i:07d}-{rnd.getrandbits(64):016x}"
                tokens.append(token)
                crows.append({"id": i, "email": f"shopper{i}@bench.test", "name": f"Shopper {i}",
                              "password_hash": "", "is_admin": False, "country": "DE",
                              "deleted_at": None, **ts})
                srows.append({"id": i, "token_hash": token_hash(token), "customer_id": i,
                              "expires_at": expires, **ts})
                carts.append({"id": i, "customer_id": i, **ts})
                items.append({"id": i, "cart_id": i, "product_id": (i - 1) % products + 1,
                              "quantity": 1, **ts})
            _bulk(engine, Customer, crows)
            _bulk(engine, AuthSession, srows)
            _bulk(engine, Cart, carts)
            _bulk(engine, CartItem, items)
        return BenchStore(url=url, products=products, customers=customers, stock=stock,
                          tokens=tokens)
    finally:
        engine.dispose()


@dataclass
class Snapshot:
    orders: int
    order_lines: int
    cart_items: int
    stock: int
    tombstones: int


def snapshot(url: str) -> Snapshot:
    """Counts that a checkout run must move: orders, lines, cart items, total stock."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return Snapshot(
                orders=conn.scalar(select(func.count()).select_from(Order.__table__)) or 0,
                order_lines=conn.scalar(select(func.count()).select_from(OrderLine.__table__))
                or 0,
                cart_items=conn.scalar(select(func.count()).select_from(CartItem.__table__)) or 0,
                stock=int(conn.scalar(select(func.sum(Inventory.quantity))) or 0),
                tombstones=conn.scalar(select(func.count()).select_from(DeletedRow.__table__))
                or 0,
            )
    finally:
        engine.dispose()
