"""Idempotency keys become reservations: a ``state`` and a nullable answer.

Revision ID: 0002_idempotency_reservations
Revises: 0001_baseline
Create Date: 2026-11-25 01:45:00

An ``Idempotency-Key`` is now reserved (``state = 'pending'``, no answer)
before the create runs and completed with its answer afterwards, so
``status_code`` and ``response_body`` become nullable and ``completed_at`` is
added.  Every row stored before this revision was a stored answer, so it
becomes ``completed`` with ``completed_at = created_at``.

Batch mode, so SQLite (and D1, which replays these statements) rebuilds the
table to relax the NOT NULLs; PostgreSQL alters in place, and the table's
row-level security policy (0001) is untouched by column changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_idempotency_reservations"
down_revision: str | None = "0001_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``state`` and ``completed_at``; the answer columns become nullable."""
    with op.batch_alter_table("idempotency_keys") as batch:
        # The default only fills the rows already stored (all answers); it is dropped below.
        batch.add_column(
            sa.Column("state", sa.String(length=16), nullable=False, server_default="completed")
        )
        batch.add_column(sa.Column("completed_at", sa.BigInteger(), nullable=True))
        batch.alter_column("status_code", existing_type=sa.Integer(), nullable=True)
        batch.alter_column("response_body", existing_type=sa.Text(), nullable=True)
    op.execute("UPDATE idempotency_keys SET completed_at = created_at WHERE completed_at IS NULL")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column(
            "state",
            existing_type=sa.String(length=16),
            existing_nullable=False,
            server_default=None,
        )


def downgrade() -> None:
    """Drop the reservations (pending rows have no answer to keep) and the new columns."""
    op.execute("DELETE FROM idempotency_keys WHERE state = 'pending'")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("response_body", existing_type=sa.Text(), nullable=False)
        batch.alter_column("status_code", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("completed_at")
        batch.drop_column("state")
