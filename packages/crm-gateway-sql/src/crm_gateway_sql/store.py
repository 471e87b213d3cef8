"""The SQL :class:`~crm_domain.storage.TableStore`, over a :class:`~.session.SqlSession`.

The repositories are the shared ones (:mod:`crm_domain.storage.repositories`);
this store turns each table operation into one statement
(:mod:`crm_gateway_sql.statements`) and maps rows (:mod:`crm_gateway_sql.mapping`),
pushing the work down into SQL:

* ``get`` is one ``SELECT … WHERE id = ? [AND tenant_id = ?]`` (the point read);
* ``page`` / ``count`` are keyset ``SELECT … ORDER BY id DESC LIMIT`` and
  ``COUNT(*)`` with the query's filters in the ``WHERE``;
* ``update`` / ``delete`` / ``patch`` / ``compare_and_set`` are conditional
  statements whose row count answers "was it there";
* ``insert_many`` is the engine's bulk path (``COPY`` on PostgreSQL,
  ``executemany`` on SQLite) inside a savepoint;
* ``append_audit`` is one ``INSERT`` for one entry, one ``executemany`` for a
  batch (the session answers ``chain_head`` from memory when it can);
* ``metric`` runs :mod:`crm_gateway_sql.analytics` (aggregates in SQL).

The keys and foreign keys are the schema's constraints: the session turns
their violations into ``Conflict`` / ``ValidationError``.  Any engine whose
session speaks SQLite or PostgreSQL SQL can reuse this store unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from crm_domain.entities import AuditEntry, OutboxMessage, OutboxStatus
from crm_domain.errors import Conflict
from crm_domain.pagination import Page, page_from_rows
from crm_domain.ports.analytics import MetricQuery, MetricRow
from crm_domain.queries import AuditQuery, ListQuery
from crm_domain.relations import AUDIT_KIND, restricting, still_referenced
from crm_domain.storage import ENTITIES, key_attributes

from crm_gateway_sql import schema
from crm_gateway_sql import statements as st
from crm_gateway_sql.analytics import compute
from crm_gateway_sql.errors import DuplicateKey, StillReferenced
from crm_gateway_sql.mapping import (
    RELATION_TABLES,
    audit_entry_from_row,
    chain_key,
    column_value,
    from_row,
    outbox_from_row,
    outbox_row,
    to_micros,
    to_row,
)
from crm_gateway_sql.session import SqlSession

if TYPE_CHECKING:
    from crm_domain.storage import TableStore

_savepoint_ids = itertools.count(1)


class _Table:
    """What the store needs to know about one table of the relations."""

    __slots__ = ("columns", "entity", "key_columns", "sa", "tenant_owned")

    def __init__(self, name: str, table: sa.Table) -> None:
        self.sa = table
        self.entity = ENTITIES[name]
        self.tenant_owned = st.is_tenant_table(table)
        self.columns = tuple(c.name for c in table.columns)
        #: The columns of the relations' primary key, in its order.
        self.key_columns = key_attributes(name)


_TABLES = {name: _Table(name, table) for name, table in RELATION_TABLES.items()}


def _key_where(t: _Table, key: Hashable, tenant: str | None) -> tuple[str | None, dict[str, Any]]:
    """The tenant scope and the column equalities selecting the row with ``key``."""
    equal = dict(zip(t.key_columns, key if isinstance(key, tuple) else (key,), strict=True))
    scope = equal.pop("tenant_id", tenant) if t.tenant_owned else None
    return scope, equal


def _count(rows: Sequence[Mapping[str, Any]]) -> int:
    return int(next(iter(rows[0].values())))


class SqlTableStore:
    """One unit of work's table store: statements run in ``session``'s transaction."""

    __slots__ = ("session", "tenant_id")

    def __init__(self, session: SqlSession, tenant_id: str | None) -> None:
        self.session = session
        #: The unit of work's location: a refused delete counts its references in it.
        self.tenant_id = tenant_id

    def check_open(self) -> None:
        """Nothing to check: a closed database refuses the next statement itself."""

    # -- rows ----------------------------------------------------------------

    async def get(self, table: str, key: Hashable, tenant: str | None = None) -> Any | None:
        """One ``SELECT`` by primary key (scoped to ``tenant`` when given)."""
        t = _TABLES[table]
        if isinstance(key, tuple):
            scope, equal = _key_where(t, key, tenant)
            if tenant is not None and scope != tenant:
                return None
            statement = st.select_where(t.sa, scope, equal, order_by=t.key_columns[-1])
        else:  # the point read: one cached statement shape
            statement = st.get(t.sa, tenant if t.tenant_owned else None, cast("str", key))
        rows = await self.session.fetch(statement)
        return from_row(t.entity, rows[0]) if rows else None

    async def find(self, table: str, equal: Mapping[str, Any]) -> list[Any]:
        """One ``SELECT … WHERE`` the attributes' columns equal ``equal``."""
        t = _TABLES[table]
        values = {c: column_value(v) for c, v in equal.items()}
        scope = values.pop("tenant_id", None) if t.tenant_owned else None
        statement = st.select_where(t.sa, scope, values, order_by=t.key_columns[-1])
        return [from_row(t.entity, r) for r in await self.session.fetch(statement)]

    async def page(self, table: str, tenant: str | None, query: ListQuery) -> Page[Any]:
        """One keyset page, filters and order in SQL."""
        t = _TABLES[table]
        rows = await self.session.fetch(st.list_page(t.sa, tenant, query))
        return page_from_rows([from_row(t.entity, r) for r in rows], query.limit)

    async def count(self, table: str, tenant: str | None, query: ListQuery) -> int:
        """One ``COUNT(*)`` with the query's filters."""
        return _count(await self.session.fetch(st.count(_TABLES[table].sa, tenant, query)))

    async def insert(self, table: str, row: Any) -> None:
        """One ``INSERT`` (the schema's keys refuse duplicates and dangling references)."""
        await self.session.execute(st.insert(_TABLES[table].sa, to_row(row)))

    async def insert_new(self, table: str, row: Any) -> bool:
        """``INSERT … ON CONFLICT DO NOTHING``: whether a row was added."""
        statement = st.insert_ignore(_TABLES[table].sa, to_row(row))
        return await self.session.execute(statement) == 1

    async def insert_many(self, table: str, rows: Sequence[Any]) -> None:
        """The engine's bulk insert (COPY on PostgreSQL, executemany on SQLite), all or nothing."""
        if not rows:
            return
        mapped = [to_row(r) for r in rows]
        # A savepoint makes the batch atomic without ending the unit of work.
        name = f"crm_bulk_{next(_savepoint_ids)}"
        await self.session.savepoint(name)
        try:
            await self.session.bulk_insert(_TABLES[table].sa, mapped)
        except BaseException:
            await self.session.rollback_to_savepoint(name)
            raise
        await self.session.release_savepoint(name)

    async def update(self, table: str, row: Any, tenant: str | None = None) -> bool:
        """One ``UPDATE … WHERE id = ? [AND tenant_id = ?]``: whether it matched."""
        t = _TABLES[table]
        values = to_row(row)
        if "id" in values:
            statement = st.update(t.sa, tenant if t.tenant_owned else None, values)
        else:
            keys = {c: values[c] for c in t.key_columns if c != "tenant_id"}
            rest = {c: values[c] for c in t.columns if c not in t.key_columns}
            scope = values["tenant_id"] if t.tenant_owned else None
            statement = st.update_columns(t.sa, scope, keys, rest)
        return await self.session.execute(statement) > 0

    async def patch(
        self, table: str, key: Hashable, changes: Mapping[str, Any], tenant: str | None = None
    ) -> bool:
        """``UPDATE … SET`` only the changed columns: whether the row was there."""
        t = _TABLES[table]
        values = {c: column_value(v) for c, v in changes.items()}
        scope, equal = _key_where(t, key, tenant)
        return await self.session.execute(st.update_columns(t.sa, scope, equal, values)) > 0

    async def delete(self, table: str, key: Hashable, tenant: str | None = None) -> bool:
        """One ``DELETE``; the schema's foreign keys restrict, cascade or clear references.

        A delete a ``restrict`` key refuses raises the ``Conflict`` of
        :func:`crm_domain.relations.still_referenced`, with one ``COUNT`` per
        restricting key (run only once the database has refused).
        """
        t = _TABLES[table]
        if isinstance(key, tuple):
            statement = st.delete_where(t.sa, *_key_where(t, key, tenant))
        else:
            statement = st.delete(t.sa, tenant if t.tenant_owned else None, str(key))
        try:
            changed = await self.session.execute(statement)
        except StillReferenced:
            raise await self._still_referenced(table, str(key)) from None
        return changed > 0

    async def _still_referenced(self, table: str, entity_id: str) -> Conflict:
        kinds: list[str] = []
        statements: list[st.Statement] = []
        for child, fk in restricting(table):
            child_table = RELATION_TABLES[child.name]
            # A location's rows are counted as that location's; others within
            # this unit of work's location (the referring rows share it).
            scope = entity_id if fk.column == "tenant_id" else self.tenant_id
            kinds.append(child.kind)
            statements.append(
                st.count_equal(
                    child_table,
                    scope if st.is_tenant_table(child_table) else None,
                    fk.column,
                    entity_id,
                )
            )
        if table == "locations":
            kinds.append(AUDIT_KIND)
            statements.append(st.count_equal(schema.hipaa_audit_log, None, "tenant_id", entity_id))
            answers = await self.session.fetch_as_tenant(entity_id, statements)
        else:
            answers = [await self.session.fetch(statement) for statement in statements]
        counts = [(kind, _count(rows)) for kind, rows in zip(kinds, answers, strict=True)]
        return still_referenced(table, entity_id, counts)

    async def compare_and_set(self, table: str, expected: Any, new: Any | None) -> bool:
        """A conditional ``UPDATE`` / ``DELETE`` on ``expected``'s non-null columns.

        Under concurrency the row lock serialises the writers; the loser's
        condition no longer matches, it changes nothing and gets ``False``.
        """
        t = _TABLES[table]
        old = to_row(expected)
        scope = old["tenant_id"] if t.tenant_owned else None
        held = {
            c: v for c, v in old.items() if v is not None and c != "tenant_id" and c in t.columns
        }
        if new is None:
            statement = st.delete_where(t.sa, scope, held)
        else:
            row = to_row(new)
            values = {c: row[c] for c in t.columns if c not in t.key_columns}
            statement = st.update_columns(t.sa, scope, held, values)
        return await self.session.execute(statement) == 1

    # -- audit chain -------------------------------------------------------------

    async def lock_chain(self, chain: str | None) -> None:
        """The session's chain lock (an advisory lock on PostgreSQL, the writer on SQLite)."""
        await self.session.lock_audit_chain(chain_key(chain))

    async def chain_head(self, chain: str | None) -> AuditEntry | None:
        """The session's head read (from memory on SQLite when nobody else wrote)."""
        return await self.session.audit_head(chain)

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """One ``INSERT`` for one entry, ``executemany`` for a batch (atomic on both engines)."""
        table = schema.hipaa_audit_log
        try:
            if len(entries) == 1:
                await self.session.execute(st.insert(table, to_row(entries[0])))
            else:
                await self.session.execute_many(st.insert_many(table), [to_row(e) for e in entries])
        except DuplicateKey:
            # Any other refusal (a trigger, a check) keeps the store's own reason.
            raise Conflict(_duplicate_message(entries)) from None
        self.session.audit_appended(entries[-1])

    async def audit_get(self, chain: str | None, entry_id: str) -> AuditEntry | None:
        """One entry of the chain."""
        rows = await self.session.fetch(st.audit_get(chain, entry_id))
        return audit_entry_from_row(rows[0]) if rows else None

    async def audit_page(self, chain: str | None, query: AuditQuery) -> Page[AuditEntry]:
        """One page of the chain's matching entries, newest id first.

        Scoped by ``tenant_id`` (``IS NULL`` for the system chain) rather than by
        ``chain``: the audit indexes lead with ``tenant_id``, so the newest page is
        a backward index scan instead of sorting the whole chain.
        """
        statement = st.list_page(
            schema.hipaa_audit_log, None, query, scope_column="tenant_id", scope_value=chain
        )
        rows = await self.session.fetch(statement)
        # An edited, undecodable row raises UndecodableEntry, named (not a decoding crash).
        return page_from_rows([audit_entry_from_row(r) for r in rows], query.limit)

    async def audit_count(self, chain: str | None, query: AuditQuery) -> int:
        """How many entries of the chain match."""
        statement = st.count(
            schema.hipaa_audit_log, None, query, scope_column="tenant_id", scope_value=chain
        )
        return _count(await self.session.fetch(statement))

    async def audit_chain(
        self, chain: str | None, after_sequence: int, limit: int
    ) -> Sequence[AuditEntry]:
        """The chain in sequence order, after ``after_sequence``."""
        rows = await self.session.fetch(st.audit_chain(chain, after_sequence, limit))
        return [audit_entry_from_row(r) for r in rows]

    # -- outbox ---------------------------------------------------------------------

    async def outbox_add(self, message: OutboxMessage) -> None:
        """One ``INSERT``; visible once the unit of work commits."""
        try:
            await self.session.execute(st.insert(schema.outbox, outbox_row(message)))
        except Conflict:
            event_id = message.event.id
            raise Conflict(f"an outbox message with id {event_id!r} already exists") from None

    async def outbox_claim(
        self, now: datetime, until: datetime, limit: int
    ) -> Sequence[OutboxMessage]:
        """One ``UPDATE … RETURNING`` over ``FOR UPDATE SKIP LOCKED`` rows (PostgreSQL)."""
        statement = st.outbox_claim(to_micros(now), to_micros(until), limit)
        return [outbox_from_row(r) for r in await self.session.fetch(statement)]

    async def outbox_complete(self, event_ids: Sequence[str]) -> bool:
        """One ``UPDATE``; whether every message was there."""
        changed = await self.session.execute(st.outbox_complete(event_ids))
        return changed == len(event_ids)

    async def outbox_fail(
        self, event_id: str, error: str, retry_at: datetime, *, dead: bool
    ) -> bool:
        """One ``UPDATE``; whether the message was there."""
        statement = st.outbox_fail(event_id, error, to_micros(retry_at), dead=dead)
        return await self.session.execute(statement) > 0

    async def outbox_list(self, status: OutboxStatus, limit: int) -> Sequence[OutboxMessage]:
        """Messages in one status, oldest event first."""
        rows = await self.session.fetch(st.outbox_by_status(status.value, limit))
        return [outbox_from_row(r) for r in rows]

    # -- analytics and the transaction -------------------------------------------------

    async def metric(self, tenant: str, query: MetricQuery) -> Sequence[MetricRow] | None:
        """Aggregated in SQL (see :mod:`crm_gateway_sql.analytics`)."""
        return await compute(self.session, tenant, query)

    async def commit(self) -> None:
        """Commit the session's transaction."""
        await self.session.commit()

    async def rollback(self) -> None:
        """Roll the session's transaction back."""
        await self.session.rollback()


def _duplicate_message(entries: Sequence[AuditEntry]) -> str:
    """Why an audit insert conflicted: under the chain lock only an id can be taken."""
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            return f"audit entry id {entry.id!r} appears twice in one batch"
        seen.add(entry.id)
    if len(entries) == 1:
        return f"an audit entry with id {entries[0].id!r} already exists"
    return "an audit entry with one of these ids already exists"


__all__ = ["SqlTableStore"]


if TYPE_CHECKING:  # mypy proves the class satisfies the storage port structurally

    def _is_store(store: SqlTableStore) -> TableStore:
        return store
