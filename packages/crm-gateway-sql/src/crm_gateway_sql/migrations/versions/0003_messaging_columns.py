"""Why an SMS failed, and how new a booking's external state is: two nullable columns.

Revision ID: 0003_messaging_columns
Revises: 0002_idempotency_reservations
Create Date: 2026-12-06 01:50:00

Outbound SMS are stored ``queued`` and sent by the worker through the outbox;
a provider's refusal (``failed``) or outage (still ``queued``, retried) is
recorded on the message (``sms_messages.error``).  A booking upserted from Wix
keeps the event time of the newest change applied (``bookings.external_updated_at``)
so that an older event delivered late changes nothing.  Nullable columns:
existing rows need no value, and ``ADD COLUMN`` works in place on SQLite, D1
and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_messaging_columns"
down_revision: str | None = "0002_idempotency_reservations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``sms_messages.error`` and ``bookings.external_updated_at``."""
    op.add_column("sms_messages", sa.Column("error", sa.String(length=500), nullable=True))
    op.add_column("bookings", sa.Column("external_updated_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop both columns (batch mode: SQLite rebuilds the tables)."""
    with op.batch_alter_table("bookings") as batch:
        batch.drop_column("external_updated_at")
    with op.batch_alter_table("sms_messages") as batch:
        batch.drop_column("error")
