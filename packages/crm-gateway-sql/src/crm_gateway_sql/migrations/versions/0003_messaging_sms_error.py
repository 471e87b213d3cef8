"""SMS messages keep why sending failed: a nullable ``error`` column.

Revision ID: 0003_messaging_sms_error
Revises: 0002_idempotency_reservations
Create Date: 2026-12-06 01:50:00

Outbound SMS are stored ``queued`` and sent by the worker through the outbox;
a provider's refusal (``failed``) or outage (still ``queued``, retried) is
recorded on the message.  A nullable column: existing rows need no value, and
``ADD COLUMN`` works in place on SQLite, D1 and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_messaging_sms_error"
down_revision: str | None = "0002_idempotency_reservations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``sms_messages.error``."""
    op.add_column("sms_messages", sa.Column("error", sa.String(length=500), nullable=True))


def downgrade() -> None:
    """Drop ``sms_messages.error`` (batch mode: SQLite rebuilds the table)."""
    with op.batch_alter_table("sms_messages") as batch:
        batch.drop_column("error")
