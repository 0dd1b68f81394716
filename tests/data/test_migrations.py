"""Alembic migrations build exactly the schema the models declare, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Engine, event, func, inspect, select

from tierlake.data.db import Database, create_db_engine
from tierlake.data.migrate import current_revision, head_revision, upgrade
from tierlake.data.schema import (
    STORE_TABLES,
    Base,
    Cart,
    CartItem,
    Category,
    Customer,
    DeletedRow,
    Inventory,
    Product,
    UTCDateTime,
)


def _schema_differences(engine: Engine) -> list[object]:
    """What autogenerate would put in a new migration (types and server defaults included).

    Nothing is filtered. Two blind spots of Alembic's comparison are covered by
    ``_check_what_autogenerate_skips``: CHECK constraints are not compared at all,
    and a type argument present on one side only is ignored (``DATETIME`` in the
    database passes for the models' ``DATETIME(6)``).
    """
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Base.metadata))


def _check_what_autogenerate_skips(engine: Engine) -> None:
    found = inspect(engine)
    for table in Base.metadata.sorted_tables:
        # CHECK constraints, by name (each engine re-renders the expression).
        declared = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
        reflected = {c["name"] for c in found.get_check_constraints(table.name)}
        assert declared <= reflected, f"{table.name}: missing {declared - reflected}"
        # Timestamps keep microseconds, stored naive (UTC); SQLite stores text.
        types = {c["name"]: c["type"] for c in found.get_columns(table.name)}
        for column in table.columns:
            if not isinstance(column.type, UTCDateTime) or engine.dialect.name == "sqlite":
                continue
            t = types[column.name]
            where = f"{table.name}.{column.name} is {t!r}"
            assert not getattr(t, "timezone", False), where
            if engine.dialect.name == "mysql":
                assert t.fsp == 6, where
            else:  # PostgreSQL: no precision means the default, microseconds
                assert t.precision in (None, 6), where


def test_upgrade_builds_empty_database_to_head(empty_database_url: str) -> None:
    engine = create_db_engine(empty_database_url)
    try:
        assert current_revision(engine) is None
        assert upgrade(engine) == head_revision()
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) == {*STORE_TABLES, "alembic_version"}
        assert _schema_differences(engine) == []
    finally:
        engine.dispose()


def test_migrated_schema_matches_models(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        assert _schema_differences(engine) == []
        _check_what_autogenerate_skips(engine)
    finally:
        engine.dispose()


def test_second_upgrade_is_a_no_op(database_url: str) -> None:
    engine = create_db_engine(database_url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        assert upgrade(engine) == head_revision()
    finally:
        engine.dispose()
    assert any("alembic_version" in s for s in statements)  # the listener saw the upgrade
    writes = ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE")
    assert [s for s in statements if s.lstrip().upper().startswith(writes)] == []


def test_store_tables_lists_every_table_parents_first() -> None:
    assert sorted(STORE_TABLES) == sorted(Base.metadata.tables)
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            parent = fk.column.table.name
            assert STORE_TABLES.index(parent) < STORE_TABLES.index(table.name), (
                f"{parent} must come before {table.name} in STORE_TABLES"
            )


def test_deleting_a_cart_item_leaves_a_tombstone(db: Database) -> None:
    with db.session() as s:
        customer = Customer(email="ada@example.com", name="Ada")
        category = Category(slug="tea", name="Tea")
        product = Product(
            sku="TEA-1", slug="green-tea", name="Green tea", category=category, price_cents=450
        )
        product.inventory = Inventory(quantity=10)
        s.add_all([customer, product])
        s.flush()
        cart = Cart(customer_id=customer.id)
        cart.items.append(CartItem(product=product, quantity=2))
        s.add(cart)
        s.flush()
        item_id = cart.items[0].id

    with db.session() as s:
        s.delete(s.get_one(CartItem, item_id))

    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(CartItem)) == 0
        tombstones = [(t.table_name, t.row_key) for t in s.scalars(select(DeletedRow))]
    assert tombstones == [("cart_items", str(item_id))]
