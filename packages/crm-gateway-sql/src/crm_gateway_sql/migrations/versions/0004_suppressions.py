"""A location's suppression list: the ``suppressions`` table (and, on PostgreSQL, its RLS).

Revision ID: 0004_suppressions
Revises: 0003_messaging_columns
Create Date: 2026-12-06 05:00:00

Addresses never to send SMS or marketing email to, per location, whatever any
contact's consent says: a STOP from a number that matches no contact, an
opt-out that must outlive the contact, a mailer's permanent bounce.  Unique on
``(tenant_id, channel, address)``; the send-time check looks an address up by
that key.  A tenant table like the others of 0001: on PostgreSQL the
application role is granted it and row-level security binds it to the
transaction's location.  D1 replays these statements (SQLite dialect).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_suppressions"
down_revision: str | None = "0003_messaging_columns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The application role of 0001 (a constant of the migrations, not input).
APP_ROLE = "crm_app"
_TENANT = "current_setting('crm.tenant_id', true)"


def upgrade() -> None:
    """Create ``suppressions`` with its unique key and list index; RLS on PostgreSQL."""
    op.create_table(
        "suppressions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["locations.id"],
            name=op.f("fk_suppressions_tenant_id_locations"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint(
            "tenant_id",
            "channel",
            "address",
            name=op.f("uq_suppressions_tenant_id_channel_address"),
        ),
    )
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_suppressions_tenant_id_id"), ["tenant_id", "id"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON suppressions TO {APP_ROLE}")
        op.execute("ALTER TABLE suppressions ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE suppressions FORCE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY crm_tenant_isolation ON suppressions "
            f"USING (tenant_id = {_TENANT}) WITH CHECK (tenant_id = {_TENANT})"
        )


def downgrade() -> None:
    """Drop the table (its policy and grants go with it)."""
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suppressions_tenant_id_id"))
    op.drop_table("suppressions")
