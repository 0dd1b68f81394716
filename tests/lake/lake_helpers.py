"""Helpers of the lake tests: read a database table and compare it with ``current/``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa

from tierlake.data.db import Database
from tierlake.data.schema import STORE_TABLES, Base
from tierlake.lake import Lake
from tierlake.seed import seed_store

ADMIN = {"admin_email": "admin@example.com", "admin_password": "admin-password"}
EXCLUDED_COLUMNS = {"customers": {"password_hash"}}
LAKE_TABLES = [t for t in STORE_TABLES
               if t not in ("auth_sessions", "deleted_rows", "rate_limit_counters")]
# The seed's history ends here rather than at the clock, so the same store is seeded on
# every run (the seed alone does not pin it: orders follow the hours before ``now``).
SEED_NOW = datetime(2026, 3, 21, 15, 0, tzinfo=UTC)


def seed(db: Database, events_dir: Path | None = None, orders: int = 40) -> None:
    """A small store, the same on every run (seed 42, history ending at ``SEED_NOW``)."""
    seed_store(db, products=20, customers=12, orders=orders, months=2, events_dir=events_dir,
               seed=42, now=SEED_NOW, progress=False, **ADMIN)


def primary_key(db: Database, table: str) -> list[str]:
    return sa.inspect(db.engine).get_pk_constraint(table)["constrained_columns"]


def read_db_table(db: Database, table: str, schema: pa.Schema) -> pa.Table:
    """The database table as an Arrow table of ``schema`` (typed by the app's models, so an
    independent path from the extract's ConnectorX + normalisation)."""
    model = Base.metadata.tables.get(table)
    cols = [model.c[f.name] if model is not None and f.name in model.c else sa.column(f.name)
            for f in schema]
    source = model if model is not None else sa.table(table)
    with db.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(*cols).select_from(source)).mappings()]
    return pa.Table.from_pylist(rows, schema=schema)


def assert_current_matches(db: Database, lake: Lake, tables: list[str] | None = None) -> None:
    """``current/<table>`` holds exactly the database table's rows, row for row."""
    for table in tables or LAKE_TABLES:
        lake_rows = lake.read_arrow("current", table)
        db_columns = {c["name"] for c in sa.inspect(db.engine).get_columns(table)}
        expected_columns = db_columns - EXCLUDED_COLUMNS.get(table, set())
        assert set(lake_rows.column_names) == expected_columns, table
        pk = primary_key(db, table)
        order = [(k, "ascending") for k in pk]
        actual = lake_rows.sort_by(order)
        expected = read_db_table(db, table, lake_rows.schema).sort_by(order)
        keys = actual.select(pk)
        assert len(set(zip(*[keys[k].to_pylist() for k in pk], strict=True))) == actual.num_rows, (
            f"{table}: a key is doubled in current/")
        if not actual.equals(expected):
            got, want = actual.to_pylist(), expected.to_pylist()
            diff = [(g, w) for g, w in zip(got, want, strict=False) if g != w][:3]
            raise AssertionError(f"current/{table} differs from the database: "
                                 f"{len(got)} vs {len(want)} rows; first differences {diff}")


def empty_store(db: Database) -> None:
    with db.engine.begin() as conn:
        for name in reversed(STORE_TABLES):
            conn.execute(sa.delete(Base.metadata.tables[name]))
