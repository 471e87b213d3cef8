"""Schema migrations for D1, from the SQL gateway's own Alembic revisions.

D1 is SQLite, so the SQL gateway's migrations (``crm_gateway_sql:migrations``,
generated from :mod:`crm_gateway_sql.schema`) are the schema source here too.
Alembic needs a live DB-API connection, which D1's REST API is not, so
migrating is *record and replay*:

1. read the revision D1 is at (its ``alembic_version`` table, if any);
2. on a scratch in-memory SQLite database, upgrade to that revision, then
   record every statement Alembic sends while upgrading to ``head`` (tables,
   indexes, the audit log's append-only triggers, SQLite batch-mode table
   rebuilds of later revisions, the ``alembic_version`` bookkeeping);
3. send the recorded statements to D1 as ONE batch — atomic, so a failed
   upgrade leaves D1 as it was.

Running it again finds D1 at ``head`` and sends nothing.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from alembic import command
from crm_gateway_sql.migrate import alembic_config

from crm_gateway_d1.client import D1Client, D1Statement

#: Statements Alembic sends that only read (its own bookkeeping, SQLite reflection).
_READS = ("SELECT", "PRAGMA")


@functools.cache
def upgrade_statements(current: str | None, target: str = "head") -> tuple[D1Statement, ...]:
    """The statements that take a database at revision ``current`` to ``target``."""
    engine = sa.create_engine("sqlite://")
    recorded: list[D1Statement] = []
    try:
        with engine.begin() as connection:
            if current is not None:
                command.upgrade(alembic_config(connection), current)

            def record(
                _conn: Any,
                _cursor: Any,
                statement: str,
                parameters: Any,
                _context: Any,
                executemany: bool,
            ) -> None:
                text = statement.strip()
                if text.upper().startswith(_READS):
                    return
                rows = parameters if executemany else [parameters]
                for params in rows:
                    recorded.append(D1Statement(text, tuple(params or ())))

            sa.event.listen(connection, "before_cursor_execute", record)
            try:
                command.upgrade(alembic_config(connection), target)
            finally:
                sa.event.remove(connection, "before_cursor_execute", record)
    finally:
        engine.dispose()
    return tuple(recorded)


async def current_revision(client: D1Client) -> str | None:
    """The Alembic revision D1 is at (``None`` for an empty database)."""
    found = await client.query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    )
    if not found.rows:
        return None
    rows = (await client.query("SELECT version_num FROM alembic_version")).rows
    return str(rows[0]["version_num"]) if rows else None


async def upgrade(client: D1Client, target: str = "head") -> int:
    """Bring D1 to ``target`` in one atomic batch; return how many statements were sent."""
    current = await current_revision(client)
    statements = await anyio.to_thread.run_sync(upgrade_statements, current, target)
    if statements:
        await client.batch(list(statements))
    return len(statements)


__all__ = ["current_revision", "upgrade", "upgrade_statements"]
