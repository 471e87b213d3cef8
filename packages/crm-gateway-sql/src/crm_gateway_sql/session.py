"""What the SQL table store needs from a database connection: :class:`SqlSession`.

The table store (:class:`crm_gateway_sql.store.SqlTableStore`) only builds
:class:`~crm_gateway_sql.statements.Statement` objects and hands them to a
session, so any engine that can run SQLite- or PostgreSQL-flavoured SQL can
reuse it by implementing this Protocol (this package ships one for SQLite and
one for PostgreSQL; the D1 gateway may ship its own).

A session belongs to one unit of work: it starts its transaction lazily,
translates driver failures into domain errors (:mod:`crm_gateway_sql.errors`)
and ends with exactly one ``commit`` or ``rollback``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from crm_domain.entities import AuditEntry

from crm_gateway_sql.statements import Statement

#: A result row: column name to primitive value.
Row = Mapping[str, Any]


class SqlSession(Protocol):
    """One transaction's access to the database."""

    #: ``"sqlite"`` or ``"postgresql"`` — which SQL the session speaks.
    dialect_name: str

    async def fetch(self, statement: Statement) -> list[Row]:
        """Run a statement and return its rows (``RETURNING`` rows for writes)."""
        ...

    async def execute(self, statement: Statement) -> int:
        """Run a statement that returns no rows; return the affected row count."""
        ...

    async def fetch_as_tenant(
        self, tenant_id: str, statements: Sequence[Statement]
    ) -> list[list[Row]]:
        """Run read ``statements`` seeing ``tenant_id``'s rows, in this transaction.

        For counting a location's rows from a unit of work bound elsewhere (or
        to none) when its delete is refused: PostgreSQL's row-level security
        would otherwise hide them.  The transaction's own binding is restored.
        """
        ...

    async def execute_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement per parameter set in ``rows`` (``executemany``); all or nothing."""
        ...

    async def bulk_insert(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert many full rows the fastest way the engine has (COPY, insertmanyvalues)."""
        ...

    async def savepoint(self, name: str) -> None:
        """Start a savepoint: bulk operations are all or nothing without ending the transaction."""
        ...

    async def release_savepoint(self, name: str) -> None:
        """Keep the work done since the savepoint."""
        ...

    async def rollback_to_savepoint(self, name: str) -> None:
        """Undo the work done since the savepoint (the transaction stays usable)."""
        ...

    async def lock_audit_chain(self, chain: str) -> None:
        """Serialise audit appends to ``chain`` until the transaction ends."""
        ...

    async def audit_head(self, tenant_id: str | None) -> AuditEntry | None:
        """The last entry of a chain (``None`` when empty); called under its lock."""
        ...

    def audit_appended(self, head: AuditEntry) -> None:
        """Note the new head of ``head``'s chain, appended in this transaction.

        An engine may keep it to answer :meth:`audit_head` without a query once
        the transaction commits; it must forget it if the transaction rolls back.
        """
        ...

    async def commit(self) -> None:
        """Commit (a no-op if nothing was started)."""
        ...

    async def rollback(self) -> None:
        """Roll back (a no-op if nothing was started)."""
        ...


__all__ = ["Row", "SqlSession"]
