"""A small seeded store and a stand-in lake of Parquet files for the analytics tests.

Until the jobs run on the real lake, :func:`build_lake` seeds a store and exports each
table the way the extract's ``current`` zone holds it (exactly the rows and columns, minus
``customers.password_hash``; timestamps ``timestamp[us, UTC]``), and the clickstream
JSON-lines files (``ts`` as a timestamp, plus ``dt`` and ``_source_file``). The load
balancers' access logs are made by the real writer from seeded requests and loaded by the
real source (:func:`build_access_logs`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq
from sqlalchemy import Boolean, Integer, select

from tierlake.data import migrate, schema
from tierlake.data.db import Database
from tierlake.edge.lb.accesslog import AccessLogWriter
from tierlake.edge.lb.model import AccessLogEntry
from tierlake.events import ClickEvent, list_delivered
from tierlake.lake import ExtractConfig, extract
from tierlake.lake import Lake as TierLake
from tierlake.lake.extract import run_sources
from tierlake.lake.sources.accesslogs import TABLE as ACCESS_LOGS
from tierlake.lake.sources.accesslogs import AccessLogsSource
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
    files["lb_access_logs"] = build_access_logs(root / "lb-logs", TierLake(str(root / "lb")))
    return Lake(db, root / "events", files)


def _request(rng: random.Random, at: float, lb: str, i: int) -> AccessLogEntry:
    """One request as the balancer reports it: forwarded (200, some 404 and 500), answered
    by the balancer with no target (503), or failed at the target's connection (502)."""
    kind = rng.choices(["ok", "404", "500", "503", "502"], [80, 6, 4, 6, 4])[0]
    group = "-" if kind == "503" and i % 2 else f"{lb}-tg{i % 2}"
    target = None if kind == "503" else ("127.0.0.1", 8000 + i % 3)
    forwarded = kind in ("ok", "404", "500")
    target_time = rng.randint(1, 400) / 1000 if forwarded else -1.0
    code = {"ok": 200, "404": 404, "500": 500, "503": 503, "502": 502}[kind]
    return AccessLogEntry(
        type="http", time=at, elb=lb, client=("127.0.0.1", 40000 + i), target=target,
        request_processing_time=rng.randint(0, 3) / 1000 if target else -1.0,
        target_processing_time=target_time,
        response_processing_time=rng.randint(0, 2) / 1000 if target else -1.0,
        elb_status_code=code, target_status_code=code if forwarded else None,
        received_bytes=rng.randint(80, 400), sent_bytes=rng.randint(0, 9000) if forwarded else 0,
        request=f"GET http://localhost:8080/p/{i} HTTP/1.1", user_agent="locust",
        target_group=group, trace_id=f"Root=1-{lb}-{i}", domain_name="localhost",
        matched_rule_priority="0", request_creation_time=at - 0.01,
        actions_executed=["forward"],
        error_reason="TargetConnectionErrorCode" if kind == "502" else "-",
        targets_tried=[target] if target else [],
        target_status_codes=[code] if forwarded else [])


def build_access_logs(logs_dir: Path, lake: TierLake, seed: int = 5) -> list[str]:
    """Two balancers' access logs over a few minutes (seeded), loaded into ``lake``; its
    access-log table's files."""
    write_access_logs(logs_dir, seed)
    run_sources([AccessLogsSource(logs_dir)], lake)
    return lake.files("raw", ACCESS_LOGS)


def write_access_logs(logs_dir: Path, seed: int = 5) -> None:
    """Two balancers' access logs over a few minutes, one file a minute (seeded)."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 20, 14, 58, tzinfo=UTC).timestamp()
    for lb in ("web-alb", "app-alb"):
        for minute in range(4):  # one delivered file a minute
            end = start + 60 * (minute + 1)
            writer = AccessLogWriter(logs_dir, lb, clock=lambda end=end: end)
            for i in range(rng.randint(40, 120)):
                writer.request_done(_request(rng, end - 60 + rng.uniform(0, 59.9), lb,
                                             1000 * minute + i))
            writer.close()


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
    write_access_logs(root / "lb-logs", seed=11)
    extract(db.url, lake, events_dir=root / "events", access_logs_dir=root / "lb-logs")

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
                   events_dir=root / "events", access_logs_dir=root / "lb-logs")
    changed = tuple(t.table for t in info.tables if t.pending)
    return LoggedLake(db, lake, changed)
