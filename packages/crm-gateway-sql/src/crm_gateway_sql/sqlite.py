"""SQLite engine: stdlib ``sqlite3`` run directly on the event loop.

Why not SQLAlchemy's async engine over aiosqlite?  Measured on this project's
machines (docs/architecture.md), a point read served by Litestar reaches ≈ 1.3k req/s
through Core async/aiosqlite, ≈ 6.6k through Core sync and ≈ 11.8k through
stdlib ``sqlite3`` on the event loop: aiosqlite pays a thread hop and a future
per call, and SQLAlchemy's per-execution work (cache key, result processing)
dominates statements that take microseconds.  So this engine:

* compiles each statement *shape* once with SQLAlchemy's SQLite dialect
  (``named`` placeholders) and keeps the SQL text (:func:`compile_sqlite`);
* runs it with ``sqlite3`` synchronously — statements on a local WAL file take
  tens of microseconds, far less than a thread hop;
* has one **writer** connection guarded by an ``asyncio.Lock``: the first
  write of a unit of work takes the lock and ``BEGIN IMMEDIATE`` (which also
  holds SQLite's file write lock against other processes), commit/rollback
  release it.  Units of work that only read never wait for it: they read
  through a separate **reader** connection in autocommit mode, which WAL lets
  run beside an open write transaction (each statement sees the last commit).
  Once a unit of work has written, its reads go to the writer so it reads its
  own writes;
* an in-memory URL (``sqlite+aiosqlite://`` or ``:memory:``) is served by a
  private temporary file, deleted on close: a real ``:memory:`` database is
  visible to one connection only, which would make a reading unit of work wait
  for every writing one (and deadlock a unit of work that reads while another
  holds uncommitted writes).

The cost: a statement blocks the loop while it runs, and waiting on another
*process's* write lock blocks it up to ``busy_timeout`` (5 s by default);
within one process the asyncio lock makes that wait cooperative.

Durability: by default (``durable=True``) the connections run with
``PRAGMA synchronous = FULL``, so a commit returns only once the WAL is
fsynced and survives a power loss or an OS crash — the promise behind "the
audit entry is committed before the data leaves".  ``NORMAL`` skips that
fsync (WAL stays consistent, but the last commits can roll back after a power
loss).  The fsync is the one slow step (≈ 0.3 ms on this project's machines,
milliseconds on network disks), so a durable ``COMMIT`` runs in a worker
thread — sqlite3 releases the GIL while it waits — and the event loop keeps
serving reads meanwhile; the writer stays locked until it is done.  The read
audit's group commit then pays one fsync per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import os
import sqlite3
import tempfile
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from crm_domain.entities import AuditEntry
from crm_domain.errors import CrmError, ValidationError

from crm_gateway_sql.errors import fk_column, foreign_keys_in_order, from_sqlite
from crm_gateway_sql.mapping import audit_entry_from_row, chain_key
from crm_gateway_sql.schema import metadata
from crm_gateway_sql.session import Row
from crm_gateway_sql.statements import (
    CompiledSql,
    Statement,
    audit_head,
    compile_sqlite,
    insert_many,
)


def _lower(value: str | bytes | int | float | None) -> str | bytes | int | float | None:
    return value.lower() if isinstance(value, str) else value


async def _in_thread(function: Any, *args: Any) -> bool:
    """Run ``function(*args)`` in a worker thread and wait for it even if cancelled.

    A COMMIT cannot be stopped half-way, and the writer must not be touched
    (rolled back, reused) while it runs: a cancellation is held until the call
    returns, and reported as ``True`` for the caller to re-raise afterwards.
    """
    future = asyncio.get_running_loop().run_in_executor(None, function, *args)
    cancelled = False
    while True:
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled = True
            if not future.done():
                continue
        break
    future.result()  # the call's own exception, if any
    return cancelled


class SqliteDatabase:
    """One SQLite database file (or in-memory database) and its connections."""

    def __init__(self, path: str, *, busy_timeout: float = 5.0, durable: bool = True) -> None:
        self.temporary = path in ("", ":memory:")
        if self.temporary:
            handle, path = tempfile.mkstemp(prefix="crm-", suffix=".sqlite3")
            os.close(handle)
        self.path = path
        self.busy_timeout = busy_timeout
        #: ``PRAGMA synchronous = FULL`` (commits survive a power loss) or ``NORMAL``.
        #: An in-memory database is gone at close anyway: no fsync for it.
        self.durable = durable and not self.temporary
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._compiled: dict[Hashable, CompiledSql] = {}
        self._row_tuples: dict[Hashable, tuple[CompiledSql, Callable[[Any], Any]]] = {}
        #: Committed audit chain heads (chain key → last entry, ``None`` for an
        #: empty chain), valid while the writer's ``PRAGMA data_version`` is
        #: :attr:`audit_heads_version`: see :meth:`SqliteSession.audit_head`.
        self.audit_heads: dict[str, AuditEntry | None] = {}
        self.audit_heads_version: int | None = None

    # -- connections ------------------------------------------------------------------

    def _connect(self, *, reader: bool) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # migrations may run in a worker thread
                cached_statements=512,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            # SQLite's lower() folds ASCII only; searches compare lower(column)
            # with lower(needle), so a Unicode-aware one finds "Zoë" for "ZOË".
            conn.create_function("lower", 1, _lower, deterministic=True)
            if not reader:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys = ON")
            if reader:
                conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise from_sqlite(exc) from exc
        return conn

    @property
    def writer(self) -> sqlite3.Connection:
        """The single connection that writes (opened on first use)."""
        if self._writer is None:
            self._writer = self._connect(reader=False)
        return self._writer

    @property
    def reader(self) -> sqlite3.Connection:
        """The autocommit connection read-only units of work use."""
        if self._reader is None:
            if self._writer is None:  # the writer switches the file to WAL first
                self._writer = self._connect(reader=False)
            self._reader = self._connect(reader=True)
        return self._reader

    @property
    def write_lock(self) -> asyncio.Lock:
        """Serialises write transactions within this process."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def compiled(self, statement: Statement) -> CompiledSql:
        """The SQL text of a statement's shape (compiled once)."""
        compiled = self._compiled.get(statement.key)
        if compiled is None:
            compiled = compile_sqlite(statement.clause)
            self._compiled[statement.key] = compiled
        return compiled

    def compiled_rows(self, statement: Statement) -> tuple[CompiledSql, Callable[[Any], Any]]:
        """The ``qmark`` text of a statement's shape and a function making a row's tuple.

        For ``executemany``: sqlite3 looks named parameters up in each row's
        mapping one by one, which measured ≈ 16 µs per 20-column audit row
        against ≈ 8 µs for a tuple, and ``itemgetter`` builds the tuple in C.
        """
        cached = self._row_tuples.get(statement.key)
        if cached is None:
            compiled = compile_sqlite(statement.clause, paramstyle="qmark")
            positions = compiled.positions
            row_tuple: Callable[[Any], Any]
            if compiled.defaults:
                row_tuple = compiled.positional_params
            elif len(positions) == 1:  # itemgetter of one name returns the value, not a tuple
                name = positions[0]

                def row_tuple(row: Any) -> Any:
                    return (row[name],)
            else:
                row_tuple = operator.itemgetter(*positions)
            cached = self._row_tuples[statement.key] = (compiled, row_tuple)
        return cached

    def session(self) -> SqliteSession:
        """A session for one unit of work."""
        return SqliteSession(self)

    def close(self) -> None:
        """Close both connections."""
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None
        self.audit_heads.clear()
        self.audit_heads_version = None
        if self.temporary:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path + suffix)


class SqliteSession:
    """A unit of work's transaction on a :class:`SqliteDatabase`."""

    dialect_name = "sqlite"

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._writing = False
        # Heads appended by this transaction; published to the database's
        # cache only once COMMIT succeeds.
        self._appended: dict[str, AuditEntry] = {}

    async def begin_write(self) -> None:
        """Take the writer (lock + ``BEGIN IMMEDIATE``) unless this session holds it."""
        if self._writing:
            return
        db = self._db
        await db.write_lock.acquire()
        try:
            db.writer.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            db.write_lock.release()
            if isinstance(exc, sqlite3.Error):
                raise from_sqlite(exc) from exc
            raise
        self._writing = True

    async def _connection(self, statement: Statement) -> sqlite3.Connection:
        if statement.write:
            await self.begin_write()
        return self._db.writer if self._writing else self._db.reader

    async def fetch(self, statement: Statement) -> list[Row]:
        """Run a statement and return its rows as dicts."""
        conn = await self._connection(statement)
        compiled = self._db.compiled(statement)
        try:
            cursor = conn.execute(compiled.sql, compiled.named_params(statement.params))
            rows = cursor.fetchall()
        except sqlite3.Error as exc:
            raise self._translate(exc, statement) from exc
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def fetch_as_tenant(
        self, tenant_id: str, statements: Sequence[Statement]
    ) -> list[list[Row]]:
        """Run reads (SQLite has no row-level security: scoping is in the statements)."""
        return [await self.fetch(statement) for statement in statements]

    async def execute(self, statement: Statement) -> int:
        """Run a statement; return the number of rows it changed."""
        conn = await self._connection(statement)
        compiled = self._db.compiled(statement)
        try:
            return conn.execute(compiled.sql, compiled.named_params(statement.params)).rowcount
        except sqlite3.Error as exc:
            raise self._translate(exc, statement) from exc

    async def execute_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """``executemany`` on the writer (always a write), all or nothing.

        ``executemany`` steps the statement once per row, so a failure on row
        *n* would leave rows before it in the transaction: a savepoint (two
        statements of a few microseconds) undoes them.
        """
        await self.begin_write()
        compiled, row_tuple = self._db.compiled_rows(statement)
        params = [row_tuple(r) for r in rows]
        writer = self._db.writer
        atomic = False
        try:
            if len(rows) > 1:
                writer.execute("SAVEPOINT crm_execute_many")
                atomic = True
            writer.executemany(compiled.sql, params)
            if atomic:
                writer.execute("RELEASE SAVEPOINT crm_execute_many")
        except sqlite3.Error as exc:
            if atomic:
                writer.execute("ROLLBACK TO SAVEPOINT crm_execute_many")
                writer.execute("RELEASE SAVEPOINT crm_execute_many")
            raise from_sqlite(exc, statement) from exc

    async def bulk_insert(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """One prepared ``INSERT`` run for every row inside the C loop of ``executemany``.

        Measured against SQLAlchemy's insertmanyvalues (multi-row ``VALUES``)
        on stdlib sqlite3, ``executemany`` of one prepared statement is as
        fast or faster and needs no batching by parameter limits.
        """
        await self.execute_many(insert_many(table), rows)

    def _translate(self, exc: sqlite3.Error, statement: Statement) -> CrmError:
        error = from_sqlite(exc, statement)
        if isinstance(error, ValidationError) and "FOREIGN KEY" in str(exc):
            column = self._missing_reference(statement)
            if column is not None:
                return ValidationError(column, "refers to a record that does not exist")
        return error

    def _missing_reference(self, statement: Statement) -> str | None:
        """Which foreign key of an insert/update failed (SQLite does not say).

        Checked in the memory gateway's order (location first) against the
        statement's values, inside the same transaction.
        """
        key = statement.key
        if not (isinstance(key, tuple) and key[0] in ("insert", "update")):
            return None
        table = metadata.tables[key[1]]
        params = statement.params
        for fk in foreign_keys_in_order(table):
            local = [c.name for c in fk.columns]
            if any(params.get(name) is None for name in local):
                continue
            conditions = " AND ".join(f"{el.column.name} = ?" for el in fk.elements)
            sql = f"SELECT 1 FROM {fk.referred_table.name} WHERE {conditions} LIMIT 1"  # noqa: S608
            if self._db.writer.execute(sql, [params[n] for n in local]).fetchone() is None:
                return fk_column(fk)
        return None

    async def savepoint(self, name: str) -> None:
        """Start a savepoint (on the writer)."""
        await self.begin_write()
        self._db.writer.execute(f"SAVEPOINT {name}")

    async def release_savepoint(self, name: str) -> None:
        """Keep what was done since the savepoint."""
        self._db.writer.execute(f"RELEASE SAVEPOINT {name}")

    async def rollback_to_savepoint(self, name: str) -> None:
        """Undo what was done since the savepoint."""
        self._db.writer.execute(f"ROLLBACK TO SAVEPOINT {name}")
        self._db.writer.execute(f"RELEASE SAVEPOINT {name}")

    async def lock_audit_chain(self, chain: str) -> None:
        """Appends are serialised by the single writer (and SQLite's file lock)."""
        await self.begin_write()

    async def audit_head(self, tenant_id: str | None) -> AuditEntry | None:
        """The chain's last entry, from memory when no other connection wrote since.

        Called under :meth:`lock_audit_chain`, i.e. holding SQLite's write
        lock, so nothing can commit until this transaction ends.  The writer
        is the only connection of this process that writes, and
        ``PRAGMA data_version`` changes exactly when *another* connection
        (another process, a migration) committed: while it is unchanged, the
        heads this process committed are still the heads.  That replaces the
        head ``SELECT`` (≈ 15 µs with mapping) with a pragma (≈ 2 µs) on
        every append after the first.
        """
        chain = chain_key(tenant_id)
        appended = self._appended.get(chain)
        if appended is not None:
            return appended
        db = self._db
        try:
            version = db.writer.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise from_sqlite(exc) from exc
        if version != db.audit_heads_version:
            db.audit_heads.clear()
            db.audit_heads_version = version
        elif chain in db.audit_heads:
            return db.audit_heads[chain]
        rows = await self.fetch(audit_head(tenant_id))
        head = audit_entry_from_row(rows[0]) if rows else None
        db.audit_heads[chain] = head  # committed state: this transaction has not appended
        return head

    def audit_appended(self, head: AuditEntry) -> None:
        """Remember the chain's new head until commit (forgotten on rollback)."""
        self._appended[chain_key(head.tenant_id)] = head

    async def commit(self) -> None:
        """Commit the write transaction, if any, and release the writer."""
        if not self._writing:
            return
        cancelled = False
        try:
            if self._db.durable:
                cancelled = await _in_thread(self._db.writer.execute, "COMMIT")
            else:
                self._db.writer.execute("COMMIT")
        except sqlite3.Error as exc:
            self._release(rollback=True)
            raise from_sqlite(exc) from exc
        # Our own commit leaves data_version as it was, so the cache stays valid.
        self._db.audit_heads.update(self._appended)
        self._release(rollback=False)
        if cancelled:
            raise asyncio.CancelledError

    async def rollback(self) -> None:
        """Roll back the write transaction, if any, and release the writer."""
        if self._writing:
            self._release(rollback=True)

    def _release(self, *, rollback: bool) -> None:
        try:
            if rollback and self._db.writer.in_transaction:
                self._db.writer.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is unusable; the transaction died with it
        finally:
            self._appended.clear()
            self._writing = False
            self._db.write_lock.release()


__all__ = ["SqliteDatabase", "SqliteSession"]
