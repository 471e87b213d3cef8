"""PostgreSQL engine: SQLAlchemy Core's async engine over asyncpg, with row-level security.

Each unit of work runs in one transaction whose first statement is::

    SELECT set_config('role', :app_role, true),
           set_config('crm.tenant_id', :tenant, true),
           set_config('crm.scope', :scope, true)

i.e. ``SET LOCAL ROLE`` to the application role (which owns no table, so RLS
applies to it) and ``SET LOCAL`` of the bound location.  The policies created
by the baseline migration compare ``tenant_id`` with
``current_setting('crm.tenant_id', true)``: with nothing set that is ``NULL``
and every comparison fails — closed by default.  ``crm.scope = 'system'``
(a unit of work bound to no location) additionally reaches what the port gives
such a unit of work: the outbox of every location (the consumer) and the
system audit chain.

Every write runs under a savepoint so that a refused statement (a duplicate
key, a bad reference) raises its domain error and leaves the unit of work
usable, as the in-memory reference gateway does; PostgreSQL would otherwise
abort the whole transaction.

SQLAlchemy owns the pool, the transaction and the setup statement; the
repositories' statements then run on the asyncpg connection underneath, from
SQL compiled once per statement shape (as the SQLite engine does).  Every
value the schema stores is a primitive asyncpg encodes itself (timestamps are
integer microseconds, JSON is text), so SQLAlchemy's per-call parameter and
result processing adds nothing but time: measured on 127.0.0.1, a savepoint
and its release cost ≈ 1.2 ms through SQLAlchemy's async layer against
≈ 0.2 ms on the driver, and every statement pays a similar toll.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Hashable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from crm_domain.entities import AuditEntry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction
from sqlalchemy.sql.compiler import SQLCompiler

from crm_gateway_sql import statements as st
from crm_gateway_sql.errors import DRIVER_ERRORS, from_postgres
from crm_gateway_sql.mapping import from_row
from crm_gateway_sql.session import Row
from crm_gateway_sql.statements import CompiledSql, Statement

#: The role units of work act as; created by the baseline migration.
DEFAULT_APP_ROLE = "crm_app"

_SETUP = sa.text(
    "SELECT set_config('role', :role, true), set_config('crm.tenant_id', :tenant, true), "
    "set_config('crm.scope', :scope, true)"
)
_SETUP_NO_ROLE = sa.text(
    "SELECT set_config('crm.tenant_id', :tenant, true), set_config('crm.scope', :scope, true)"
)
#: Rebinding the transaction's location (transaction-local, like the setup).
_BIND_SQL = "SELECT set_config('crm.tenant_id', $1, true), set_config('crm.scope', $2, true)"
_CHAIN_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended('crm.audit:' || $1::text, 0))"


@contextlib.contextmanager
def _translated(statement: Statement | None = None) -> Iterator[None]:
    """Driver failures as domain errors (asyncpg raises its own when called directly)."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise from_postgres(exc, statement) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("asyncpg"):
            raise from_postgres(exc, statement) from exc
        raise


@contextlib.asynccontextmanager
async def _savepoint(driver: Any) -> AsyncIterator[None]:
    """All or nothing on the driver, leaving the transaction usable after a refusal."""
    await driver.execute("SAVEPOINT crm_write")
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            await driver.execute("ROLLBACK TO SAVEPOINT crm_write")
            await driver.execute("RELEASE SAVEPOINT crm_write")
        raise
    await driver.execute("RELEASE SAVEPOINT crm_write")


class PostgresDatabase:
    """An async engine and the settings every unit of work applies."""

    def __init__(self, engine: AsyncEngine, *, app_role: str | None = DEFAULT_APP_ROLE) -> None:
        self.engine = engine
        self.app_role = app_role
        self._compiled: dict[Hashable, CompiledSql] = {}

    def compiled(
        self, statement: Statement, params: Mapping[str, Any] | None = None
    ) -> CompiledSql:
        """A statement shape's asyncpg SQL (``$n`` placeholders), parameter order and defaults.

        An ``INSERT``/``UPDATE`` compiles for the columns ``params`` (by default
        the statement's) name, as SQLAlchemy's own execution does, so a
        statement given only some columns leaves the others to their defaults.
        """
        clause = statement.clause
        column_keys: tuple[str, ...] | None = None
        if isinstance(clause, sa.Insert | sa.Update):
            column_keys = tuple(statement.params if params is None else params)
        cache_key = statement.key if column_keys is None else (statement.key, column_keys)
        compiled = self._compiled.get(cache_key)
        if compiled is None:
            assert isinstance(clause, sa.ClauseElement)  # every builder makes a Core construct
            result = clause.compile(
                dialect=self.engine.dialect,
                column_keys=None if column_keys is None else list(column_keys),
            )
            assert isinstance(result, SQLCompiler)  # a Core statement compiles with SQLCompiler
            # Values the construct binds itself (``sa.literal(1)``) are not in
            # the statement's params: keep them beside the text.
            defaults = {
                name: bind.effective_value
                for bind, name in result.bind_names.items()
                if not bind.required
            }
            compiled = CompiledSql(str(result), tuple(result.positiontup or ()), defaults)
            self._compiled[cache_key] = compiled
        return compiled

    def session(self, tenant_id: str | None) -> PostgresSession:
        """A session for one unit of work bound to ``tenant_id``."""
        return PostgresSession(self, tenant_id)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


class PostgresSession:
    """A unit of work's transaction on PostgreSQL."""

    dialect_name = "postgresql"

    def __init__(self, db: PostgresDatabase, tenant_id: str | None) -> None:
        self._db = db
        self._tenant_id = tenant_id
        self._conn: AsyncConnection | None = None
        self._driver: Any = None  # the asyncpg connection under self._conn
        self._tx: AsyncTransaction | None = None
        self._savepoints: dict[str, AsyncTransaction] = {}

    async def _connection(self) -> AsyncConnection:
        if self._conn is not None:
            return self._conn
        try:
            conn = await self._db.engine.connect()
        except DRIVER_ERRORS as exc:
            raise from_postgres(exc) from exc
        try:
            self._tx = await conn.begin()
            params = {
                "tenant": self._tenant_id or "",
                "scope": "tenant" if self._tenant_id is not None else "system",
            }
            # The setup runs through SQLAlchemy: it starts the transaction
            # SQLAlchemy commits or rolls back.
            if self._db.app_role:
                await conn.execute(_SETUP, {"role": self._db.app_role, **params})
            else:
                await conn.execute(_SETUP_NO_ROLE, params)
            raw = await conn.get_raw_connection()
        except DRIVER_ERRORS as exc:
            await conn.close()
            raise from_postgres(exc) from exc
        self._driver = raw.driver_connection
        self._conn = conn
        return conn

    async def _run(self, statement: Statement, *, rows: bool) -> Any:
        """Run ``statement`` on the driver; a write under its own savepoint.

        Returns the result rows (``rows=True``) or asyncpg's status text.
        """
        await self._connection()
        driver = self._driver
        compiled = self._db.compiled(statement)
        sql = compiled.sql
        args = compiled.positional_params(statement.params)
        run = driver.fetch if rows else driver.execute
        with _translated(statement):
            if not statement.write:
                return await run(sql, *args)
            async with _savepoint(driver):
                return await run(sql, *args)

    async def fetch(self, statement: Statement) -> list[Row]:
        """Run a statement and return its rows as dicts."""
        return [dict(r) for r in await self._run(statement, rows=True)]

    async def fetch_as_tenant(
        self, tenant_id: str, statements: Sequence[Statement]
    ) -> list[list[Row]]:
        """Run reads with ``crm.tenant_id`` set to ``tenant_id``, then restore the binding."""
        await self._connection()
        driver = self._driver
        own = (self._tenant_id or "", "tenant" if self._tenant_id is not None else "system")
        with _translated():
            await driver.execute(_BIND_SQL, tenant_id, "tenant")
            try:
                return [await self.fetch(statement) for statement in statements]
            finally:
                await driver.execute(_BIND_SQL, *own)

    async def execute(self, statement: Statement) -> int:
        """Run a statement; return the number of rows it changed."""
        status = await self._run(statement, rows=False)
        # asyncpg answers with the command tag: "UPDATE 3", "DELETE 0", "INSERT 0 1".
        count = str(status).rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def execute_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """asyncpg's ``executemany`` of the statement compiled once, all or nothing.

        Measured for 64 rows of 21 columns on 127.0.0.1: 0.7 ms through
        asyncpg's pipelined ``executemany`` against 3.3 ms through
        SQLAlchemy's (which processes every parameter set in Python) and
        0.5 ms for one multi-row ``INSERT`` (which needs a new prepared
        statement per row count and loses to ``executemany`` at 500 rows:
        20 ms against 9 ms).  The savepoint keeps the rows all or nothing and
        the transaction usable after a refused row.
        """
        if not rows:
            return
        await self._connection()
        driver = self._driver
        compiled = self._db.compiled(statement, rows[0])
        sql = compiled.sql
        records = [compiled.positional_params(row) for row in rows]
        with _translated(statement):
            async with _savepoint(driver):
                await driver.executemany(sql, records)

    async def bulk_insert(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """``COPY`` the rows into a temporary table, then one ``INSERT … SELECT``.

        PostgreSQL refuses ``COPY FROM`` into a table with row-level security,
        so the rows are copied (binary, through asyncpg's
        ``copy_records_to_table``) into an unindexed temporary table that drops
        at commit, and moved with one set-based insert, which the RLS
        ``WITH CHECK`` policy still checks row by row.
        """
        if not rows:
            return
        await self._connection()
        driver = self._driver
        columns = [c.name for c in table.columns]
        temp = f"crm_import_{table.name}"
        statement = Statement(("insert", table.name), table.insert(), {}, True)
        with _translated(statement):
            async with _savepoint(driver):
                await driver.execute(
                    f"CREATE TEMPORARY TABLE IF NOT EXISTS {temp} "
                    f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
                await driver.execute(f"TRUNCATE {temp}")
                await driver.copy_records_to_table(
                    temp, records=[tuple(r[c] for c in columns) for r in rows], columns=columns
                )
                cols = ", ".join(columns)
                await driver.execute(
                    f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {temp}"  # noqa: S608
                )

    async def savepoint(self, name: str) -> None:
        """Start a savepoint."""
        conn = await self._connection()
        self._savepoints[name] = await conn.begin_nested()

    async def release_savepoint(self, name: str) -> None:
        """Keep the work done since the savepoint."""
        await self._savepoints.pop(name).commit()

    async def rollback_to_savepoint(self, name: str) -> None:
        """Undo the work done since the savepoint."""
        await self._savepoints.pop(name).rollback()

    async def lock_audit_chain(self, chain: str) -> None:
        """``pg_advisory_xact_lock`` on the chain until the transaction ends."""
        await self._connection()
        with _translated():
            await self._driver.execute(_CHAIN_LOCK_SQL, chain)

    async def audit_head(self, tenant_id: str | None) -> AuditEntry | None:
        """The chain's last entry, read under the chain's advisory lock.

        Not cached: other processes append to the same chains, and knowing
        whether one did costs the same round trip as the read.
        """
        rows = await self.fetch(st.audit_head(tenant_id))
        return from_row(AuditEntry, rows[0]) if rows else None

    def audit_appended(self, head: AuditEntry) -> None:
        """Nothing to note (heads are read each time)."""

    async def commit(self) -> None:
        """Commit and return the connection to the pool."""
        if self._conn is None:
            return
        try:
            assert self._tx is not None
            await self._tx.commit()
        except DRIVER_ERRORS as exc:
            await self._discard()
            raise from_postgres(exc) from exc
        await self._discard()

    async def rollback(self) -> None:
        """Roll back and return the connection to the pool."""
        if self._conn is None:
            return
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
        except DRIVER_ERRORS:
            pass  # the connection is gone; so is its transaction
        await self._discard()

    async def _discard(self) -> None:
        conn, self._conn, self._tx, self._driver = self._conn, None, None, None
        self._savepoints.clear()
        if conn is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await conn.close()


__all__ = ["DEFAULT_APP_ROLE", "PostgresDatabase", "PostgresSession"]
