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

Units of work run on a plain asyncpg pool; SQLAlchemy keeps the schema, the
migrations (its engine is used for nothing else) and the compiler that turns
each statement shape into asyncpg SQL once.  A point read is then three round
trips — ``BEGIN`` with the setup (one simple-protocol message), the read,
``ROLLBACK`` — where SQLAlchemy's pool and transaction made it five (pre-ping,
``BEGIN``, setup, read, ``ROLLBACK``) plus its own per-call work: measured on
127.0.0.1, a savepoint and its release cost ≈ 1.2 ms through SQLAlchemy's
async layer against ≈ 0.2 ms on the driver.

**No tenant can leak from one unit of work to the next.**  The binding is
transaction-local (``set_config(…, true)``), so it ends with the transaction;
every unit of work sets its own in the message that begins its transaction;
and a connection goes back to the pool only through asyncpg's release, which
waits for a cancelled query to finish and rolls back a transaction still
open (a request killed mid-transaction) before anyone else can acquire it —
or terminates the connection if that fails.  The pool's reset query is
replaced by nothing because nothing session-level is ever set.  A pooled
connection the server dropped (a restart) fails the setup, which is retried
once on a new connection: the pre-ping's job, without its round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable, Iterator, Mapping, Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa
from crm_domain.entities import AuditEntry
from crm_domain.errors import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

from crm_gateway_sql import statements as st
from crm_gateway_sql.errors import DRIVER_ERRORS, from_postgres
from crm_gateway_sql.mapping import audit_entry_from_row
from crm_gateway_sql.session import Row
from crm_gateway_sql.statements import CompiledSql, Statement

#: The role units of work act as; created by the baseline migration.
DEFAULT_APP_ROLE = "crm_app"

#: Errors of a connection that is gone (the server restarted, the socket died).
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
)


def _literal(value: str, what: str) -> str:
    """``value`` as a SQL string literal for the simple-protocol setup message.

    Quotes are doubled; a backslash or NUL is refused rather than escaped, so the
    literal means the same whatever ``standard_conforming_strings`` says.
    """
    if "\\" in value or "\x00" in value:
        raise ValidationError(what, f"may not contain a backslash or NUL: {value!r}")
    return "'" + value.replace("'", "''") + "'"


def _setup_sql(app_role: str | None, tenant_id: str | None) -> str:
    """``BEGIN`` and the transaction-local role and location, as one message."""
    tenant = _literal(tenant_id or "", "tenant_id")
    scope = "'tenant'" if tenant_id is not None else "'system'"
    settings = [
        f"set_config('crm.tenant_id', {tenant}, true)",
        f"set_config('crm.scope', {scope}, true)",
    ]
    if app_role:
        settings.insert(0, f"set_config('role', {_literal(app_role, 'app_role')}, true)")
    return "BEGIN; SELECT " + ", ".join(settings)


async def _no_reset(connection: Any) -> None:
    """Nothing session-level to undo: every setting of a unit of work is transaction-local."""


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
    """The asyncpg pool units of work run on, and the settings every one applies.

    ``engine`` (SQLAlchemy) runs the migrations and provides the dialect the
    statements compile with; ``dsn`` (default: the engine's URL) is what the
    pool connects to, lazily, on the first unit of work.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        app_role: str | None = DEFAULT_APP_ROLE,
        dsn: str | None = None,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
    ) -> None:
        self.engine = engine
        self.app_role = app_role
        self._dsn = dsn or engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._compiled: dict[Hashable, CompiledSql] = {}
        #: The setup message per location (a few locations, reused for every unit of work).
        self._setups: dict[str | None, str] = {}

    @property
    def pool_size(self) -> int:
        """Connections this process may open (units of work beyond that wait for one)."""
        return self._pool_size

    async def pool(self) -> asyncpg.Pool:
        """The connection pool, created on first use."""
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=self._pool_size,
                        timeout=self._connect_timeout,
                        command_timeout=self._command_timeout,
                        reset=_no_reset,
                    )
                except DRIVER_ERRORS as exc:
                    raise from_postgres(exc) from exc
                except Exception as exc:
                    if type(exc).__module__.startswith("asyncpg"):
                        raise from_postgres(exc) from exc
                    raise
        return self._pool

    def setup_sql(self, tenant_id: str | None) -> str:
        """The message that begins a unit of work bound to ``tenant_id``."""
        sql = self._setups.get(tenant_id)
        if sql is None:
            sql = _setup_sql(self.app_role, tenant_id)
            if len(self._setups) < 10_000:
                self._setups[tenant_id] = sql
        return sql

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
        """Close every pooled connection (and the migration engine's)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await pool.close()
        await self.engine.dispose()


class PostgresSession:
    """A unit of work's transaction on PostgreSQL, on one pooled asyncpg connection."""

    dialect_name = "postgresql"

    def __init__(self, db: PostgresDatabase, tenant_id: str | None) -> None:
        self._db = db
        self._tenant_id = tenant_id
        self._driver: Any = None  # the pooled asyncpg connection, once the transaction began
        self._pool: asyncpg.Pool | None = None

    async def _connection(self) -> Any:
        """The transaction's connection: acquired, ``BEGIN`` and the binding sent, once."""
        if self._driver is not None:
            return self._driver
        pool = await self._db.pool()
        setup = self._db.setup_sql(self._tenant_id)
        for attempt in (1, 2):
            with _translated():
                conn = await pool.acquire()
            try:
                await conn.execute(setup)
            except _CONNECTION_LOST as exc:
                # A pooled connection the server dropped: nothing was done on it yet,
                # so one retry on a fresh connection is safe (the pre-ping's job).
                await _release(pool, conn)
                if attempt == 2:
                    raise from_postgres(exc) from exc
                continue
            except BaseException as exc:
                await _release(pool, conn)
                if isinstance(exc, DRIVER_ERRORS) or type(exc).__module__.startswith("asyncpg"):
                    raise from_postgres(exc) from exc
                raise
            self._driver, self._pool = conn, pool
            break
        return self._driver

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
        driver = await self._connection()
        with _translated():
            await driver.execute(f"SAVEPOINT {_identifier(name)}")

    async def release_savepoint(self, name: str) -> None:
        """Keep the work done since the savepoint."""
        driver = await self._connection()
        with _translated():
            await driver.execute(f"RELEASE SAVEPOINT {_identifier(name)}")

    async def rollback_to_savepoint(self, name: str) -> None:
        """Undo the work done since the savepoint."""
        driver = await self._connection()
        with _translated():
            await driver.execute(f"ROLLBACK TO SAVEPOINT {_identifier(name)}")
            await driver.execute(f"RELEASE SAVEPOINT {_identifier(name)}")

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
        return audit_entry_from_row(rows[0]) if rows else None

    def audit_appended(self, head: AuditEntry) -> None:
        """Nothing to note (heads are read each time)."""

    async def commit(self) -> None:
        """Commit and return the connection to the pool."""
        driver = self._driver
        if driver is None:
            return
        try:
            with _translated():
                await driver.execute("COMMIT")
        finally:
            await self._discard()

    async def rollback(self) -> None:
        """Roll back and return the connection to the pool."""
        driver = self._driver
        if driver is None:
            return
        try:
            with contextlib.suppress(*DRIVER_ERRORS, asyncpg.PostgresError, asyncpg.InterfaceError):
                await driver.execute(
                    "ROLLBACK"
                )  # the connection may be gone; so is its transaction
        finally:
            await self._discard()

    async def _discard(self) -> None:
        driver, pool = self._driver, self._pool
        self._driver, self._pool = None, None
        if driver is not None and pool is not None:
            await _release(pool, driver)


def _identifier(name: str) -> str:
    """A savepoint name (chosen by the repositories, never by users) as a SQL identifier."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a savepoint name: {name!r}")
    return name


async def _release(pool: asyncpg.Pool, conn: Any) -> None:
    """Back to the pool; asyncpg rolls back an open transaction (or drops the connection) first.

    ``Pool.release`` is shielded from cancellation inside asyncpg: a request
    killed here still returns the connection clean, or not at all.
    """
    with contextlib.suppress(*DRIVER_ERRORS, asyncpg.PostgresError, asyncpg.InterfaceError):
        await pool.release(conn)


__all__ = ["DEFAULT_APP_ROLE", "PostgresDatabase", "PostgresSession"]
