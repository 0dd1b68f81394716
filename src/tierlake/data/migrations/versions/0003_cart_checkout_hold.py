"""cart checkout hold: the Idempotency-Key of a checkout in progress

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 04:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tierlake.data.schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checkout_key", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("checkout_fingerprint", sa.String(length=64),
                                      nullable=True))
        batch_op.add_column(sa.Column("checkout_expires_at",
                                      tierlake.data.schema.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.drop_column("checkout_expires_at")
        batch_op.drop_column("checkout_fingerprint")
        batch_op.drop_column("checkout_key")
