"""SQLite and PostgreSQL DatabaseGateway for the Avatar Imaging CRM (SQLAlchemy Core, Alembic).

Public API:

* :func:`create_gateway` (and the ``crm.gateways`` entry points
  ``sqlite+aiosqlite`` / ``postgresql+asyncpg``) → :class:`SqlGateway`;
* :mod:`crm_gateway_sql.schema` — the tables (``metadata``);
* :mod:`crm_gateway_sql.statements` — Core statements per repository operation,
  built without a connection, and :func:`~crm_gateway_sql.statements.compile_sqlite`;
* :mod:`crm_gateway_sql.mapping` — rows ⇄ entities (``make_sql_converter``);
* :mod:`crm_gateway_sql.store` — :class:`~crm_gateway_sql.store.SqlTableStore`, the
  :class:`~crm_domain.storage.TableStore` the shared repositories run on;
* :mod:`crm_gateway_sql.session` — the :class:`~crm_gateway_sql.session.SqlSession`
  Protocol the store runs on (another SQLite-speaking engine can reuse it);
* :mod:`crm_gateway_sql.audit` (``verify``), :mod:`crm_gateway_sql.outbox`
  (``OutboxRelay``), :mod:`crm_gateway_sql.importing` (validated bulk import).
"""

from crm_gateway_sql.audit import verify, verify_all
from crm_gateway_sql.gateway import (
    SqlGateway,
    SqlUnitOfWork,
    create_gateway,
    create_postgres_gateway,
    create_sqlite_gateway,
)
from crm_gateway_sql.importing import ImportReport, RowError, import_contacts, validate_rows
from crm_gateway_sql.outbox import OutboxRelay

__all__ = [
    "ImportReport",
    "OutboxRelay",
    "RowError",
    "SqlGateway",
    "SqlUnitOfWork",
    "create_gateway",
    "create_postgres_gateway",
    "create_sqlite_gateway",
    "import_contacts",
    "validate_rows",
    "verify",
    "verify_all",
]
