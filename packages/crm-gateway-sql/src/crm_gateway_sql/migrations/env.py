"""Alembic environment: runs on the connection handed over by :mod:`crm_gateway_sql.migrate`.

No ``alembic.ini`` is needed at run time; for developing a new revision, run
``alembic`` with ``script_location = crm_gateway_sql:migrations`` and pass a
connection the same way (see ``crm_gateway_sql.migrate``).
"""

from __future__ import annotations

from alembic import context

from crm_gateway_sql.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from the alembic CLI
    raise RuntimeError("run migrations through crm_gateway_sql.migrate (or pass a connection)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place: future revisions use batch mode.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
