"""A small seeded store and a stand-in lake of Parquet files for the analytics tests.

Until the jobs run on the real lake, :func:`build_lake` seeds a store and exports each
table the way the extract's ``current`` zone holds it (exactly the rows and columns, minus
``customers.password_hash``; timestamps ``timestamp[us, UTC]``), and the clickstream
JSON-lines files (``ts`` as a timestamp, plus ``dt`` and ``_source_file``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq
from sqlalchemy import Boolean, Integer, select

from tierlake.data import migrate, schema
from tierlake.data.db import Database
from tierlake.events import ClickEvent, list_delivered
from tierlake.lake import ExtractConfig, extract
from tierlake.lake import Lake as TierLake
from tierlake.seed import seed_store

NOW = datetime(2026, 3, 20, 15, 45, tzinfo=UTC)
SIZE = {"products": 60, "customers": 200, "orders": 3000, "months": 12}
LAKE_TABLES = ("categories", "products", "inventory", "customers", "carts", "cart_items",
               "orders", "order_lines")
DROP = {"customers": {"password_hash"}}
TS = pa.timestamp("us", tz="UTC")
CLICK_SCHEMA = pa.schema([
    (name, pa.int64() if name in ("customer_id", "product_id", "order_id", "status")
     else pa.string()) for name in ClickEvent.__annotations__
])


@dataclass
class Lake:
    db: Database
    events_dir: Path
    files: dict[str, list[str]]  # lake table -> Parquet files


def _arrow_type(column: object) -> pa.DataType:
    kind = column.type  # type: ignore[attr-defined]
    if isinstance(kind, schema.UTCDateTime):
        return TS
    if isinstance(kind, Boolean):
        return pa.bool_()
    if isinstance(kind, Integer) or column.name == "id":  # type: ignore[attr-defined]
        return pa.int64()
    return pa.string()


def _export_table(db: Database, name: str, out: Path, parts: int) -> list[str]:
    table = schema.Base.metadata.tables[name]
    columns = [c for c in table.columns if c.name not in DROP.get(name, set())]
    arrow_schema = pa.schema([(c.name, _arrow_type(c)) for c in columns])
    with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            select(*columns).order_by(*table.primary_key.columns))]
    data = pa.Table.from_pylist(rows, schema=arrow_schema)
    step = -(-data.num_rows // parts) or 1
    paths = []
    for i in range(parts):
        path = out / name / f"part-{i:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data.slice(i * step, step), path)
        paths.append(str(path))
    return paths


def _export_clicks(events_dir: Path, out: Path) -> list[str]:
    blobs, names, counts = [], [], []
    for path in list_delivered(events_dir):
        blob = path.read_bytes()
        blobs.append(blob)
        names.append(path.relative_to(events_dir).as_posix())
        counts.append(blob.count(b"\n"))
    events = pj.read_json(pa.BufferReader(b"".join(blobs)),
                          parse_options=pj.ParseOptions(explicit_schema=CLICK_SCHEMA))
    file_of_row = pa.array([i for i, n in enumerate(counts) for _ in range(n)], pa.int32())
    events = events.set_column(events.schema.get_field_index("ts"), "ts", events["ts"].cast(TS))
    dts = [name.split("/")[1].removeprefix("dt=") for name in names]  # clickstream/dt=.../...
    events = events.append_column("dt", pa.array(dts).take(file_of_row))
    events = events.append_column("_source_file", pa.array(names).take(file_of_row))
    paths = []
    for i, start in enumerate(range(0, events.num_rows, 40_000)):
        path = out / "clickstream" / f"part-{i:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(events.slice(start, 40_000), path)
        paths.append(str(path))
    return paths


def build_lake(root: Path) -> Lake:
    """Seed a store under ``root`` and export it as the lake's tables."""
    db = Database(f"sqlite:///{root / 'store.db'}")
    migrate.upgrade(db.engine)
    seed_store(db, **SIZE, events_dir=root / "events", seed=7, admin_email="admin@shop.example",
               admin_password="admin-secret-1", progress=False, now=NOW)
    files = {name: _export_table(db, name, root / "lake", 2 if name == "orders" else 1)
             for name in LAKE_TABLES}
    files["clickstream"] = _export_clicks(root / "events", root / "lake")
    return Lake(db, root / "events", files)


@dataclass
class LoggedLake:
    db: Database
    lake: TierLake
    changed: tuple[str, ...]  # the tables whose changes wait in the log


def build_logged_lake(root: Path) -> LoggedLake:
    """A small store extracted into a real lake, then changed (orders' statuses, prices,
    carts dropped with their items, new customers) and extracted again with the changes
    left in the log."""
    db = Database(f"sqlite:///{root / 'store.db'}")
    migrate.upgrade(db.engine)
    seed_store(db, products=30, customers=80, orders=600, months=3, seed=11,
               events_dir=root / "events", admin_email="admin@shop.example",
               admin_password="admin-secret-1", progress=False, now=NOW)
    def fill_carts(s):  # type: ignore[no-untyped-def]
        shoppers = s.scalars(select(schema.Customer.id).order_by(schema.Customer.id).limit(6))
        for n, customer in enumerate(shoppers):
            s.add(schema.Cart(customer_id=customer, items=[
                schema.CartItem(product_id=p, quantity=1 + n % 3) for p in (1 + n, 2 + n)]))

    db.write(fill_carts)
    lake = TierLake(str(root / "lake"))
    extract(db.url, lake, events_dir=root / "events")

    def change(s):  # type: ignore[no-untyped-def]
        for order in s.scalars(select(schema.Order).where(schema.Order.id % 9 == 0)):
            order.status = "cancelled"
        for product in s.scalars(select(schema.Product).where(schema.Product.id % 4 == 0)):
            product.price_cents += 100
        for cart in s.scalars(select(schema.Cart).order_by(schema.Cart.id).limit(3)):
            s.delete(cart)  # and its items: tombstones
        for item in s.scalars(select(schema.CartItem).order_by(schema.CartItem.id.desc())
                              .limit(2)):
            item.quantity += 1
        s.add_all([schema.Customer(email=f"late{i}@example.com", name=f"Late {i}")
                   for i in range(5)])

    db.write(change)
    info = extract(db.url, lake, ExtractConfig(compact_ratio=1e9),
                   events_dir=root / "events")
    changed = tuple(t.table for t in info.tables if t.pending)
    return LoggedLake(db, lake, changed)
