"""Alembic environment: migrations run on the connection tierlake hands over."""

from __future__ import annotations

from alembic import context

from tierlake.data.schema import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - tierlake always passes a connection
    raise RuntimeError("run migrations with `tierlake db migrate`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
