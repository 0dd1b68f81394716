"""The demo data: a realistic, consistent store and a clickstream that matches its orders."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from tierlake.app.security import verify_password
from tierlake.data import migrate, schema
from tierlake.data.db import Database
from tierlake.events import list_delivered
from tierlake.pricing import FREE_SHIPPING_FROM_CENTS, SHIPPING_CENTS
from tierlake.seed import (
    DEMO_PASSWORD,
    SeedInfo,
    StoreNotEmptyError,
    is_empty,
    seed_store,
)

NOW = datetime(2026, 6, 15, 12, 30, tzinfo=UTC)
SMALL = {"products": 50, "customers": 100, "orders": 1000, "months": 12}
ADMIN = {"admin_email": "Admin@Shop.Example", "admin_password": "admin-secret-1"}
T = schema.Base.metadata.tables
PATH = re.compile(r"^(/|/c/[a-z0-9-]+|/p/[a-z0-9-]+|/search|/cart|/cart/add|/login|/checkout"
                  r"|/cart/items/\d+/remove|/orders/\d+)$")


def new_db(path: Path) -> Database:
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db.engine)
    return db


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Database, SeedInfo, Path]:
    root = tmp_path_factory.mktemp("seed")
    db = new_db(root / "t.db")
    info = seed_store(db, **SMALL, **ADMIN, events_dir=root / "events", progress=False, now=NOW)
    yield db, info, root / "events"
    db.dispose()


def rows(db: Database, sql: str) -> list[tuple]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql)]


def test_counts(seeded) -> None:  # type: ignore[no-untyped-def]
    db, info, _ = seeded
    assert (info.categories, info.products, info.customers, info.orders) == (11, 50, 100, 1000)
    with db.engine.connect() as conn:
        count = {t: conn.scalar(select(func.count()).select_from(T[t]))
                 for t in ("categories", "products", "inventory", "customers", "orders",
                           "order_lines")}
    assert count == {"categories": 11, "products": 50, "inventory": 50, "customers": 101,
                     "orders": 1000, "order_lines": info.order_lines}
    assert 1000 < info.order_lines < 5000
    assert info.end == NOW and info.start == datetime(2025, 6, 15, 12, 30, tzinfo=UTC)
    assert info.elapsed_seconds > 0


def test_order_totals_equal_their_lines(seeded) -> None:  # type: ignore[no-untyped-def]
    db, _, _ = seeded
    orders = rows(db, """
        SELECT o.id, o.subtotal_cents, o.shipping_cents, o.total_cents, o.item_count,
               SUM(l.line_total_cents), SUM(l.quantity), COUNT(*), COUNT(DISTINCT l.product_id),
               MIN(l.line_total_cents - l.quantity * l.unit_price_cents)
        FROM orders o JOIN order_lines l ON l.order_id = o.id GROUP BY o.id""")
    assert len(orders) == 1000  # every order has lines
    for _id, sub, ship, total, items, line_sum, qty, n, distinct, diff in orders:
        assert sub == line_sum and total == sub + ship and items == qty and diff == 0
        assert ship == (0 if sub >= FREE_SHIPPING_FROM_CENTS else SHIPPING_CENTS)
        assert 1 <= n <= 5 and distinct == n  # a product appears once per order
    assert {o[2] for o in orders} == {0, SHIPPING_CENTS}


def test_lines_name_products_that_were_on_sale(seeded) -> None:  # type: ignore[no-untyped-def]
    db, _, _ = seeded
    with db.read() as s:
        lines = s.execute(
            select(schema.OrderLine.product_name, schema.OrderLine.unit_price_cents,
                   schema.Order.placed_at, schema.Product)
            .join(schema.Order, schema.Order.id == schema.OrderLine.order_id)
            .outerjoin(schema.Product, schema.Product.id == schema.OrderLine.product_id)
        ).all()
    for name, price, placed, product in lines:
        assert product is not None and product.name == name and product.price_cents == price
        assert product.created_at < placed
        assert product.retired_at is None or placed < product.retired_at


def test_catalogue_looks_like_a_store(seeded) -> None:  # type: ignore[no-untyped-def]
    db, _, _ = seeded
    with db.read() as s:
        products = s.scalars(select(schema.Product)).unique().all()
    assert len({p.category.slug for p in products}) >= 8
    assert len({p.slug for p in products}) == len({p.sku for p in products}) == 50
    for p in products:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", p.slug)
        assert re.fullmatch(r"[A-Z]{3}-\d{6}", p.sku) and p.price_cents % 100 == 99
        assert p.active == (p.retired_at is None) and p.inventory is not None
    stock = sorted(p.inventory.quantity for p in products)
    assert stock[0] == 0 and stock[-1] > 30  # some out of stock, most well stocked
    books = [p.price_cents for p in products if p.category.slug == "books"]
    gadgets = [p.price_cents for p in products if p.category.slug == "electronics"]
    if books and gadgets:
        assert sorted(books)[len(books) // 2] < sorted(gadgets)[len(gadgets) // 2]


def test_seasonality_peaks_in_november_and_december(seeded) -> None:  # type: ignore[no-untyped-def]
    db, info, _ = seeded
    per_month = Counter(m for (m,) in rows(db, "SELECT substr(placed_at, 1, 7) FROM orders"))
    days: Counter[str] = Counter()
    day = info.start
    while day < info.end:
        days[f"{day:%Y-%m}"] += 1
        day += timedelta(days=1)
    rate = {m: per_month[m] / days[m] for m in days if days[m] >= 10}
    peak = [r for m, r in rate.items() if m[5:] in ("11", "12")]
    rest = [r for m, r in rate.items() if m[5:] not in ("11", "12")]
    assert len(peak) == 2 and min(peak) > 1.2 * sum(rest) / len(rest)


def test_repeat_buyers_and_customers_sign_up_before_ordering(seeded) -> None:  # type: ignore[no-untyped-def]
    db, _, _ = seeded
    per_customer = [n for (n,) in rows(db, "SELECT COUNT(*) FROM orders GROUP BY customer_id")]
    assert sum(n >= 2 for n in per_customer) >= 0.3 * len(per_customer)
    assert max(per_customer) > 3 * sum(per_customer) / len(per_customer)  # heavy tail
    late = rows(db, """SELECT COUNT(*) FROM orders o JOIN customers c ON c.id = o.customer_id
                       WHERE c.created_at >= o.placed_at OR c.is_admin""")
    assert late == [(0,)]
    keys = rows(db, "SELECT COUNT(*) FROM orders WHERE idempotency_key = 'seed-' || id")
    assert keys == [(1000,)]


def test_accounts_and_passwords(seeded) -> None:  # type: ignore[no-untyped-def]
    db, _, _ = seeded
    with db.read() as s:
        people = s.scalars(select(schema.Customer).order_by(schema.Customer.id)).all()
    admin = [c for c in people if c.is_admin]
    assert len(admin) == 1 and admin[0].email == "admin@shop.example"
    assert verify_password(admin[0].password_hash, ADMIN["admin_password"])
    demo = [c for c in people if not c.is_admin]
    assert len({c.password_hash for c in demo}) == 1  # one shared hash (argon2 is slow)
    assert verify_password(demo[0].password_hash, DEMO_PASSWORD)
    assert all(re.fullmatch(r"[a-z]+\.[a-z]+\.\d+@example\.com", c.email or "") for c in demo)
    assert len({c.email for c in demo}) == 100 and all(re.fullmatch("[A-Z]{2}", c.country)
                                                        for c in demo)
    created = [c.created_at for c in demo]
    assert created == sorted(created)  # ids follow sign-up order


def test_status_and_timestamps_follow_age(seeded) -> None:  # type: ignore[no-untyped-def]
    db, info, _ = seeded
    with db.read() as s:
        orders = s.execute(select(schema.Order.status, schema.Order.placed_at,
                                  schema.Order.created_at, schema.Order.updated_at)).all()
    status = Counter(o.status for o in orders)
    assert status["delivered"] > 0.9 * len(orders) and 0 < status["cancelled"] < 0.06 * 1000
    for o in orders:
        assert o.created_at == o.placed_at <= o.updated_at <= info.end
        if info.end - o.placed_at > timedelta(days=10):
            assert o.status in ("delivered", "cancelled")
        if o.status in ("placed", "paid", "shipped"):
            assert info.end - o.placed_at < timedelta(days=8)
    placed = sorted(o.placed_at for o in orders)
    assert info.start <= placed[0] and placed[-1] <= info.end


def test_clickstream_matches_the_orders(seeded) -> None:  # type: ignore[no-untyped-def]
    db, info, events_dir = seeded
    files = list_delivered(events_dir)
    assert len(files) == info.event_files and not list(events_dir.rglob("*.tmp"))
    events = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(events) == info.events
    orders = {o.id: o for o in rows_of(db)}
    purchases = [e for e in events if e["event_type"] == "purchase"]
    assert len(purchases) == len(orders) == len({e["order_id"] for e in purchases})
    for e in purchases:
        order = orders[e["order_id"]]  # every purchase names a real order
        ts = datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
        assert timedelta(0) < ts - order.placed_at < timedelta(seconds=1)  # as live: just after
        assert e["customer_id"] == order.customer_id
    sessions: dict[str, list[dict]] = {}
    for e in events:
        sessions.setdefault(e["session_id"], []).append(e)
        assert PATH.match(e["path"]) or e["status"] == 404, e["path"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", e["ts"])
    buying = {e["session_id"] for e in purchases}
    assert len(sessions) - len(buying) >= 2 * len(buying)  # many more visits than orders
    kinds = Counter(e["event_type"] for e in events)
    assert all(kinds[k] for k in ("page_view", "search", "add_to_cart", "remove_from_cart",
                                  "checkout"))
    searches = [e for e in events if e["event_type"] == "search"]
    assert all(e["path"] == "/search" and e["query"] for e in searches)
    for e in events:  # cart actions need an account; referrers are absolute URLs
        if e["event_type"] in ("add_to_cart", "remove_from_cart", "purchase"):
            assert e["customer_id"] is not None and e["method"] == "POST"
        assert e["referrer"] is None or e["referrer"].startswith(("http://", "https://"))
    for e in purchases[:50]:  # a buying session viewed and carted what it bought
        session = sessions[e["session_id"]]
        carted = {x["product_id"] for x in session if x["event_type"] == "add_to_cart"}
        bought = {pid for (pid,) in rows(db, "SELECT product_id FROM order_lines "
                                             f"WHERE order_id = {e['order_id']}")}
        assert bought <= carted
    for f in files:  # one delivery per hour, partitioned by the hour of its events
        stamps = [json.loads(line)["ts"] for line in f.read_text().splitlines()]
        assert stamps == sorted(stamps)
        assert {s[:13] for s in stamps} == {f"{f.parent.parent.name[3:]}T{f.parent.name[5:]}"}


def rows_of(db: Database) -> list[schema.Order]:
    with db.read() as s:
        return list(s.scalars(select(schema.Order).execution_options(populate_existing=True)))


def test_refuses_a_store_that_is_not_empty(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, _, _ = seeded
    assert not is_empty(db)
    with pytest.raises(StoreNotEmptyError, match="already has"):
        seed_store(db, **SMALL, **ADMIN, progress=False)
    assert is_empty(new_db(tmp_path / "empty.db"))


def test_deterministic_for_a_seed_and_now(tmp_path: Path) -> None:
    small = {"products": 20, "customers": 30, "orders": 200, "progress": False, "now": NOW}
    dumps = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        db = new_db(tmp_path / f"{name}.db")
        seed_store(db, **small, **ADMIN, seed=seed, events_dir=tmp_path / name)
        dumps.append((
            rows(db, "SELECT * FROM order_lines ORDER BY id"),
            rows(db, "SELECT id, customer_id, status, total_cents, placed_at, updated_at, "
                     "ship_address FROM orders ORDER BY id"),
            rows(db, "SELECT id, slug, price_cents FROM products ORDER BY id"),
            [p.read_text() for p in list_delivered(tmp_path / name)],
        ))
        db.dispose()
    assert dumps[0] == dumps[1]
    assert dumps[0][0] != dumps[2][0] and dumps[0][3] != dumps[2][3]


def test_existing_customers_are_kept_and_the_admin_account_reused(tmp_path: Path) -> None:
    db = new_db(tmp_path / "t.db")
    with db.engine.begin() as conn:
        conn.execute(insert(T["customers"]), [{
            "email": "admin@shop.example", "name": "Owner", "password_hash": "x",
            "is_admin": False, "country": "NL", "created_at": NOW, "updated_at": NOW}])
    assert is_empty(db)
    info = seed_store(db, products=10, customers=5, orders=50, months=1, **ADMIN,
                      progress=False)
    with db.read() as s:
        people = s.scalars(select(schema.Customer)).all()
    assert len(people) == 6 and info.orders == 50
    owner = next(c for c in people if c.email == "admin@shop.example")
    assert owner.is_admin and owner.name == "Owner"
    assert verify_password(owner.password_hash, ADMIN["admin_password"])


def test_nothing_but_the_catalogue(tmp_path: Path) -> None:
    db = new_db(tmp_path / "t.db")
    info = seed_store(db, products=3, customers=1, orders=0, months=1, **ADMIN,
                      events_dir=tmp_path / "events", progress=False)
    assert (info.orders, info.order_lines, info.events) == (0, 0, 0)
    assert list_delivered(tmp_path / "events") == []


def test_seeds_every_backend_and_later_inserts_get_fresh_ids(db: Database) -> None:
    """MariaDB and PostgreSQL too; PostgreSQL's sequences must be moved past the seed."""
    info = seed_store(db, products=20, customers=30, orders=300, **ADMIN, progress=False)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(schema.OrderLine)) == info.order_lines
        cat = schema.Category(slug="new-category", name="New")
        s.add(cat)
        s.flush()
        product = schema.Product(sku="NEW-1", slug="new-product", name="New", category_id=cat.id,
                                 price_cents=100)
        customer = schema.Customer(email="new@example.com", name="New")
        s.add_all([product, customer])
        s.flush()
        order = schema.Order(customer_id=customer.id, idempotency_key="k", item_count=1,
                             subtotal_cents=100, total_cents=100, placed_at=NOW)
        s.add(order)
        s.flush()
        line = schema.OrderLine(order_id=order.id, product_id=product.id, product_name="New",
                                quantity=1, unit_price_cents=100, line_total_cents=100)
        s.add(line)
        s.flush()
        ids = (cat.id, product.id, customer.id, order.id, line.id)
    assert all(i is not None for i in ids) and order.id > 300


@pytest.mark.slow
def test_the_default_volume(tmp_path: Path) -> None:
    """What `tierlake up` seeds (its time is measured by bench/, never asserted here)."""
    db = new_db(tmp_path / "t.db")
    info = seed_store(db, **ADMIN, events_dir=tmp_path / "events", progress=False, now=NOW)
    assert (info.products, info.customers, info.orders) == (240, 1000, 20_000)
    assert info.events > 10 * info.orders and info.event_files > 24 * 300
    shutil.rmtree(tmp_path / "events")  # ~400 MB; pytest keeps the last runs' tmp dirs
