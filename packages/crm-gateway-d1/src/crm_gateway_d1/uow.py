"""The D1 table store: reads go to D1 at once, writes go in one batch at commit.

:class:`D1Store` is a :class:`~crm_domain.storage.TableStore`; the repositories
over it are the shared ones (:mod:`crm_domain.storage.repositories`).  D1 has
no ``BEGIN`` over its REST API (and refuses ``SAVEPOINT``): a batch is its
only transaction.  So a unit of work here

* **buffers** every write — entity changes as the SQL gateway's statements,
  outbox events and audit entries — and sends them as **one batch request** at
  :meth:`D1UnitOfWork.commit`, which D1 applies atomically: all or nothing;
* **reads immediately**, and overlays its own buffered writes on what D1
  returns, so it reads its own writes exactly as the in-memory reference does:
  ``get`` answers from the buffer first, ``list``/``count`` leave out rows the
  buffer changed and merge in the buffered versions that match (with
  :func:`crm_domain.queries.matches`, the reference filter semantics);
* checks keys when a write is made, like the reference gateway — a duplicate
  id or unique key raises ``Conflict``, a reference to a missing row
  ``ValidationError`` naming the column, deleting a referenced row applies the
  rules of :data:`crm_domain.relations.TABLES` (restrict / cascade / set null) —
  with **one** lookup request per write.  D1's own keys check the batch again
  at commit, so a unit of work that raced another one fails with ``Conflict``
  and writes nothing.

Isolation is therefore read committed, as on the other gateways.

**Audit chain.** The shared repository reads the chain head (or the last
buffered entry of that chain), links the entries with
:func:`crm_domain.audit_chain.chained`, and the store buffers their insert. The
hash is SHA-256 over a canonical encoding computed in Python, so it cannot be
produced by an ``INSERT … SELECT`` from the head inside the batch; instead the
batch relies on the table's ``UNIQUE (chain, sequence)``: if another unit of
work appended to the chain after our read, our sequence number is taken, D1
rejects the *whole* batch, and the unit of work re-reads the head, re-links its
entries and sends the batch again (up to :data:`CHAIN_RETRIES` times). Entries
are never updated or deleted, so "sequence *n* is free and *n − 1* had the hash
we read" proves the link is right. The entries ``append`` returned before such
a retry carry the superseded sequence/hashes; what is stored is always a valid
chain.

**Outbox consumer.**  ``claim`` leases messages in D1 at once (one atomic
``UPDATE … RETURNING``), so two consumers never hold the same message; a unit
of work that rolls back releases its leases.  ``complete`` and ``fail`` are
buffered like any write.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import sqlalchemy as sa
from crm_domain.entities import (
    AuditEntry,
    OutboxMessage,
    OutboxStatus,
)
from crm_domain.errors import Conflict, NotFound, Unavailable, ValidationError
from crm_domain.metrics import allowed_dimensions
from crm_domain.pagination import Page
from crm_domain.ports.analytics import MetricQuery, MetricRow
from crm_domain.queries import AuditQuery, ListQuery, matches
from crm_domain.relations import AUDIT_KIND, still_referenced
from crm_domain.relations import TABLES as RULES
from crm_domain.relations import Table as Rules
from crm_domain.storage import (
    ENTITIES,
    StoredUnitOfWork,
    failed,
    key_attributes,
    page_of,
    relink,
)
from crm_gateway_sql import analytics as sql_analytics
from crm_gateway_sql import mapping, schema
from crm_gateway_sql import statements as st
from crm_gateway_sql.statements import Statement

from crm_gateway_d1.client import D1Client, D1Conflict, D1Statement
from crm_gateway_d1.sql import chunked_insert, count_equal, select_equal, to_d1, unless_changed

if TYPE_CHECKING:
    from crm_domain.ports.gateway import UnitOfWork
    from crm_domain.storage import TableStore

#: How long an audit append waits for another unit of work of this process holding the chain.
CHAIN_LOCK_TIMEOUT = 10.0

#: How often a commit re-links its audit entries after losing a race for the chain head.
CHAIN_RETRIES = 5

#: Rows whose primary key is buffered as deleted.
DELETED: Any = object()

Key = tuple[Any, ...]


def _sa_table(name: str) -> sa.Table:
    return mapping.TABLES[ENTITIES[name]]


def _pk_columns(name: str) -> tuple[str, ...]:
    return tuple(c.name for c in _sa_table(name).primary_key.columns)


def key_of(name: str, entity: Any) -> Key:
    """The primary key of ``entity`` as a tuple of column values."""
    row = mapping.to_row(entity)
    return tuple(row[c] for c in _pk_columns(name))


def _unique_columns(unique_name: str) -> tuple[str, ...]:
    # The reference rules name a unique key by its columns ("tenant_id, cidr").
    return tuple(part.strip() for part in unique_name.split(","))


def _referencing(parent: str) -> list[tuple[Rules, Any]]:
    return [
        (table, fk)
        for table in RULES.values()
        if table.name in ENTITIES
        for fk in table.foreign_keys
        if fk.parent == parent
    ]


def _show(key: Key) -> str:
    return repr(key[0]) if len(key) == 1 else repr(key)


def _as_key(table: str, key: Hashable) -> Key:
    """A relations primary key as this module's key (the schema's primary key columns)."""
    if not isinstance(key, tuple):
        return (key,)
    values = dict(zip(key_attributes(table), key, strict=True))
    return tuple(values[c] for c in _pk_columns(table))


class ChainLocks:
    """One lock per audit chain, shared by a gateway's units of work.

    Held from a unit of work's first append to its end, so units of work of
    one process append to a chain one after the other instead of racing (the
    ``UNIQUE (chain, sequence)`` retry still covers other processes).
    """

    def __init__(self, timeout: float = CHAIN_LOCK_TIMEOUT) -> None:
        self.timeout = timeout
        self._locks: dict[str | None, anyio.Lock] = {}

    async def acquire(self, chain: str | None) -> None:
        """Take ``chain``'s lock, or raise ``Unavailable`` after the timeout."""
        lock = self._locks.setdefault(chain, anyio.Lock())
        with anyio.move_on_after(self.timeout):
            await lock.acquire()
            return
        raise Unavailable(
            "the audit chain is held by another unit of work "
            "(a unit of work waiting on another one of the same location?)"
        )

    def release(self, chain: str | None) -> None:
        """Give ``chain``'s lock back."""
        self._locks[chain].release()


@attrs.define
class _Saved:
    pending: dict[str, dict[Key, Any]]
    inserted: dict[str, set[Key]]
    writes: int
    audit: int
    outbox: dict[str, OutboxMessage]
    outbox_writes: int


class D1Store:
    """One unit of work's :class:`~crm_domain.storage.TableStore` on D1 (see the module doc)."""

    def __init__(self, client: D1Client, chain_locks: ChainLocks | None = None) -> None:
        self._client = client
        self._chain_locks = chain_locks or ChainLocks()
        self._held: list[str | None] = []
        self._pending: dict[str, dict[Key, Any]] = {}
        self._inserted: dict[str, set[Key]] = {}
        self._writes: list[Statement | D1Statement] = []
        self._audit: list[AuditEntry] = []
        self._outbox: dict[str, OutboxMessage] = {}
        self._outbox_writes: list[Statement] = []
        self._leases: dict[str, int] = {}

    # -- talking to D1 -------------------------------------------------------

    def check_open(self) -> None:
        """``Unavailable`` once the gateway is closed."""
        if self._client.closed:
            raise Unavailable("the D1 gateway is closed")

    async def fetch(self, statement: Statement) -> list[Mapping[str, Any]]:
        """Run one read now."""
        self.check_open()
        return list((await self._client.execute(to_d1(statement))).rows)

    async def fetch_all(self, statements: Sequence[Statement]) -> list[list[Mapping[str, Any]]]:
        """Run several reads in one request."""
        self.check_open()
        if not statements:
            return []
        results = await self._client.batch([to_d1(s) for s in statements])
        return [list(r.rows) for r in results]

    # -- the overlay -----------------------------------------------------------

    def pending(self, name: str) -> dict[Key, Any]:
        """Buffered rows of one table (entity or :data:`DELETED`) by primary key."""
        return self._pending.get(name, {})

    def _entity(self, name: str, row: Mapping[str, Any]) -> Any:
        return mapping.from_row(ENTITIES[name], row)

    def _get_statement(self, name: str, key: Key) -> Statement:
        return select_equal(_sa_table(name), dict(zip(_pk_columns(name), key, strict=True)))

    async def get(self, table: str, key: Hashable, tenant: str | None = None) -> Any | None:
        """The row with this key (of ``tenant`` when given), or ``None``."""
        return await self._scoped(table, _as_key(table, key), tenant)

    async def _scoped(self, table: str, key: Key, tenant: str | None) -> Any | None:
        row = await self._get(table, key)
        if row is None or (tenant is not None and row.tenant_id != tenant):
            return None
        return copy.deepcopy(row) if RULES[table].mutable else row

    async def _get(self, name: str, key: Key) -> Any | None:
        """The row with this key as this unit of work sees it (unscoped), or ``None``."""
        pending = self.pending(name)
        if key in pending:
            row = pending[key]
            return None if row is DELETED else row
        rows = await self.fetch(self._get_statement(name, key))
        return self._entity(name, rows[0]) if rows else None

    def _overlay(
        self, name: str, committed: list[Mapping[str, Any]], equal: Mapping[str, Any]
    ) -> list[Any]:
        pending = self.pending(name)
        out = [
            e for e in (self._entity(name, r) for r in committed) if key_of(name, e) not in pending
        ]
        for entity in pending.values():
            if entity is DELETED:
                continue
            row = mapping.to_row(entity)
            if all(row[c] == v for c, v in equal.items()):
                out.append(entity)
        return out

    async def find(self, table: str, equal: Mapping[str, Any]) -> list[Any]:
        """Rows whose attributes equal ``equal``, buffered changes applied."""
        return await self._find(table, {c: mapping.column_value(v) for c, v in equal.items()})

    async def _find(self, name: str, equal: Mapping[str, Any]) -> list[Any]:
        """Rows whose columns equal ``equal`` (row values), buffered changes applied."""
        rows = await self.fetch(select_equal(_sa_table(name), equal))
        return self._overlay(name, rows, equal)

    async def page(self, name: str, tenant: str | None, query: ListQuery) -> Page[Any]:
        """One page of ``query`` over D1 and the buffer."""
        self.check_open()
        pending = self.pending(name)
        statement = st.list_page(_sa_table(name), tenant, query)
        if pending:
            # Rows the buffer replaces are dropped from D1's answer: ask for that many more.
            params = {**statement.params, "limit": query.limit + 1 + len(pending)}
            statement = attrs.evolve(statement, params=params)
        rows = await self.fetch(statement)
        merged = [
            e for e in (self._entity(name, r) for r in rows) if key_of(name, e) not in pending
        ]
        merged.extend(self._pending_matching(name, tenant, query))
        return page_of(merged, query)

    def _pending_matching(self, name: str, tenant: str | None, query: ListQuery) -> list[Any]:
        return [
            e
            for e in self.pending(name).values()
            if e is not DELETED and (tenant is None or e.tenant_id == tenant) and matches(query, e)
        ]

    async def count(self, name: str, tenant: str | None, query: ListQuery) -> int:
        """How many rows match ``query`` over D1 and the buffer."""
        table = _sa_table(name)
        replaced = [k for k in self.pending(name) if k not in self._inserted.get(name, set())]
        statements = [st.count(table, tenant, query)]
        statements += [self._get_statement(name, k) for k in replaced]
        answers = await self.fetch_all(statements)
        total = int(next(iter(answers[0][0].values())))
        for rows in answers[1:]:
            # A committed row the buffer changed: D1 counted its old version if it matched.
            if rows:
                old = self._entity(name, rows[0])
                if (tenant is None or old.tenant_id == tenant) and matches(query, old):
                    total -= 1
        return total + len(self._pending_matching(name, tenant, query))

    def _put(self, name: str, key: Key, entity: Any) -> None:
        if entity is not DELETED and RULES[name].mutable:
            entity = copy.deepcopy(entity)
        self._pending.setdefault(name, {})[key] = entity

    async def insert(self, name: str, entity: Any) -> None:
        """Buffer an insert after checking its keys (``Conflict``/``ValidationError``)."""
        key = key_of(name, entity)
        exists = await self._validate(name, entity, key)
        if exists:
            raise Conflict(f"a {RULES[name].noun} with id {_show(key)} already exists")
        if not self._was_committed(name, key):
            self._inserted.setdefault(name, set()).add(key)
        self._put(name, key, entity)
        self._writes.append(st.insert(_sa_table(name), mapping.to_row(entity)))

    def _was_committed(self, name: str, key: Key) -> bool:
        # A key buffered as deleted that we did not insert ourselves is a committed row.
        return key in self.pending(name) and key not in self._inserted.get(name, set())

    async def insert_many(self, name: str, entities: Sequence[Any]) -> None:
        """Buffer many inserts, checked in one request, as chunked multi-row statements."""
        keyed = [(key_of(name, e), e) for e in entities]
        checks = [self._lookups(name, e, k) for k, e in keyed]
        answers = await self.fetch_all([s for lookups in checks for _k, _x, s in lookups])
        saved = self.savepoint()
        try:
            at = 0
            for (key, entity), lookups in zip(keyed, checks, strict=True):
                mine = answers[at : at + len(lookups)]
                at += len(lookups)
                if self._judge(name, entity, key, lookups, mine):
                    raise Conflict(f"a {RULES[name].noun} with id {_show(key)} already exists")
                self._inserted.setdefault(name, set()).add(key)
                self._put(name, key, entity)
        except BaseException:
            self.restore(saved)
            raise
        self._writes.extend(chunked_insert(_sa_table(name), [mapping.to_row(e) for _k, e in keyed]))

    async def insert_new(self, table: str, row: Any) -> bool:
        """Buffer an insert unless the primary key is taken."""
        if await self._get(table, key_of(table, row)) is not None:
            return False
        await self.insert(table, row)
        return True

    async def update(self, table: str, row: Any, tenant: str | None = None) -> bool:
        """Buffer a full-row update of an existing row (of ``tenant`` when given)."""
        if await self._scoped(table, key_of(table, row), tenant) is None:
            return False
        await self._update(table, row)
        return True

    async def patch(
        self, table: str, key: Hashable, changes: Mapping[str, Any], tenant: str | None = None
    ) -> bool:
        """Buffer an update of some attributes (the whole row: a batch is atomic anyway)."""
        row = await self._scoped(table, _as_key(table, key), tenant)
        if row is None:
            return False
        await self._update(table, attrs.evolve(row, **changes))
        return True

    async def _update(self, name: str, entity: Any) -> None:
        key = key_of(name, entity)
        if not await self._validate(name, entity, key):
            raise NotFound(f"{RULES[name].noun} {_show(key)} not found")
        self._put(name, key, entity)
        row = mapping.to_row(entity)
        table = _sa_table(name)
        tenant = row.get("tenant_id") if st.is_tenant_table(table) else None
        if "id" in row:
            self._writes.append(st.update(table, tenant, row))
        else:
            pk = _pk_columns(name)
            values = {c: v for c, v in row.items() if c not in pk}
            self._writes.append(st.update_columns(table, None, {c: row[c] for c in pk}, values))

    def _lookups(self, name: str, entity: Any, key: Key) -> list[tuple[str, Any, Statement]]:
        """The D1 reads that checking ``entity``'s keys needs (checking buffered parents now)."""
        rules = RULES[name]
        row = mapping.to_row(entity)
        lookups: list[tuple[str, Any, Statement]] = []
        if key not in self.pending(name):
            lookups.append(("self", None, self._get_statement(name, key)))
        for unique in rules.uniques:
            if unique.key(entity) is None:
                continue
            equal = {c: row[c] for c in _unique_columns(unique.name)}
            lookups.append(("unique", (unique, equal), select_equal(_sa_table(name), equal)))
        for fk in rules.foreign_keys:
            ref = getattr(entity, fk.column)
            if ref is None:
                continue
            buffered = self.pending(fk.parent)
            if (ref,) in buffered:
                self._check_parent(fk, buffered[(ref,)], entity, ref)
                continue
            lookups.append(("fk", fk, self._get_statement(fk.parent, (ref,))))
        return lookups

    def _judge(
        self,
        name: str,
        entity: Any,
        key: Key,
        lookups: Sequence[tuple[str, Any, Statement]],
        answers: Sequence[list[Mapping[str, Any]]],
    ) -> bool:
        """Raise for a broken unique or foreign key; return whether ``key`` exists."""
        rules = RULES[name]
        pending = self.pending(name)
        exists = key in pending and pending[key] is not DELETED
        for (kind, extra, _s), rows in zip(lookups, answers, strict=True):
            if kind == "self":
                exists = exists or bool(rows)
            elif kind == "unique":
                unique, equal = extra
                for other in self._overlay(name, rows, equal):
                    if key_of(name, other) != key:
                        raise Conflict(f"a {rules.noun} with this {unique.name} already exists")
            else:
                parent = self._entity(extra.parent, rows[0]) if rows else None
                self._check_parent(extra, parent, entity, getattr(entity, extra.column))
        # Buffered rows can hold a unique key D1 does not know about yet.
        for unique in rules.uniques:
            value = unique.key(entity)
            if value is None:
                continue
            for other_key, other in pending.items():
                if other is not DELETED and other_key != key and unique.key(other) == value:
                    raise Conflict(f"a {rules.noun} with this {unique.name} already exists")
        return exists

    async def _validate(self, name: str, entity: Any, key: Key) -> bool:
        """Check unique and foreign keys with one request; return whether ``key`` exists."""
        lookups = self._lookups(name, entity, key)
        answers = await self.fetch_all([s for _k, _x, s in lookups])
        return self._judge(name, entity, key, lookups, answers)

    def _check_parent(self, fk: Any, parent: Any, entity: Any, ref: Any) -> None:
        if (
            parent is None
            or parent is DELETED
            or (fk.same_tenant and parent.tenant_id != entity.tenant_id)
        ):
            noun = RULES[fk.parent].noun
            where = " in this location" if fk.same_tenant else ""
            raise ValidationError(fk.column, f"no {noun} {ref!r}{where}")

    async def delete(self, table: str, key: Hashable, tenant: str | None = None) -> bool:
        """Buffer a delete, applying each referencing key's rule, all or nothing."""
        internal = _as_key(table, key)
        entity = await self._scoped(table, internal, tenant)
        if entity is None:
            return False
        saved = self.savepoint()
        try:
            await self._delete(table, internal, entity)
        except BaseException:
            self.restore(saved)
            raise
        return True

    async def compare_and_set(self, table: str, expected: Any, new: Any | None) -> bool:
        """Buffer a replace or delete of a row that still equals ``expected``.

        Checked now against what D1 holds, and again in the batch: the
        statement is conditional on ``expected``'s non-null columns and guarded
        by :func:`unless_changed`, so a row changed meanwhile fails the commit.
        """
        key = key_of(table, expected)
        if await self._get(table, key) != expected:
            return False
        sa_table = _sa_table(table)
        tenant = getattr(expected, "tenant_id", None) if st.is_tenant_table(sa_table) else None
        columns = [c.name for c in sa_table.columns]
        held = {
            c: v
            for c, v in mapping.to_row(expected).items()
            if v is not None and c != "tenant_id" and c in columns
        }
        guard = unless_changed(sa_table, dict(zip(_pk_columns(table), key, strict=True)))
        if new is None:
            self._put(table, key, DELETED)
            self._writes += [st.delete_where(sa_table, tenant, held), guard]
        else:
            row = mapping.to_row(new)
            values = {c: row[c] for c in columns if c not in _pk_columns(table)}
            self._put(table, key, new)
            self._writes += [st.update_columns(sa_table, tenant, held, values), guard]
        return True

    async def _delete(self, name: str, key: Key, entity: Any) -> None:
        children = _referencing(name)
        await self._refuse_if_referenced(
            name, key, [c for c in children if c[1].on_delete == "restrict"]
        )
        others = [(c, fk) for c, fk in children if fk.on_delete != "restrict"]
        answers = await self.fetch_all(
            [select_equal(_sa_table(c.name), {fk.column: key[0]}) for c, fk in others]
        )
        for (child, fk), rows in zip(others, answers, strict=True):
            for row in self._overlay(child.name, rows, {fk.column: key[0]}):
                child_key = key_of(child.name, row)
                if fk.on_delete == "cascade":
                    await self._delete(child.name, child_key, row)
                else:
                    cleared = attrs.evolve(row, **{fk.column: None})
                    self._put(child.name, child_key, cleared)
                    child_row = mapping.to_row(cleared)
                    table = _sa_table(child.name)
                    tenant = child_row.get("tenant_id") if st.is_tenant_table(table) else None
                    self._writes.append(st.update(table, tenant, child_row))
        table = _sa_table(name)
        tenant = getattr(entity, "tenant_id", None) if st.is_tenant_table(table) else None
        self._put(name, key, DELETED)
        self._writes.append(st.delete(table, tenant, str(key[0])))

    async def _refuse_if_referenced(
        self, name: str, key: Key, restrict: list[tuple[Rules, Any]]
    ) -> None:
        """Raise the relations' ``Conflict`` if rows still refer to ``key`` by a restrict key.

        One ``COUNT`` per restricting key, all in one request, over D1's rows
        the buffer does not replace, plus the buffered rows that refer.
        """
        value = key[0]
        # (kind, a COUNT to run or None, rows counted here already)
        plan: list[tuple[str, Statement | None, int]] = []
        for child, fk in restrict:
            pending = self.pending(child.name)
            count = count_equal(_sa_table(child.name), fk.column, value, excluding=list(pending))
            if count is None:  # a buffer too large for one statement: read the rows
                plan.append(
                    (child.kind, None, len(await self._find(child.name, {fk.column: value})))
                )
                continue
            buffered = sum(
                1
                for e in pending.values()
                if e is not DELETED and mapping.to_row(e)[fk.column] == value
            )
            plan.append((child.kind, count, buffered))
        if name == "locations":
            audit = st.count_equal(schema.hipaa_audit_log, None, "tenant_id", value)
            plan.append((AUDIT_KIND, audit, sum(1 for e in self._audit if e.tenant_id == value)))
        answers = iter(await self.fetch_all([c for _, c, _ in plan if c is not None]))
        counts = [
            (kind, extra + (0 if c is None else int(next(iter(next(answers)[0].values())))))
            for kind, c, extra in plan
        ]
        if any(n for _, n in counts):
            raise still_referenced(name, key, counts)

    def savepoint(self) -> _Saved:
        """A copy of the buffer to return to."""
        return _Saved(
            {n: dict(rows) for n, rows in self._pending.items()},
            {n: set(keys) for n, keys in self._inserted.items()},
            len(self._writes),
            len(self._audit),
            dict(self._outbox),
            len(self._outbox_writes),
        )

    def restore(self, saved: _Saved) -> None:
        """Return the buffer to a :meth:`savepoint`."""
        self._pending = saved.pending
        self._inserted = saved.inserted
        del self._writes[saved.writes :]
        del self._audit[saved.audit :]
        self._outbox = saved.outbox
        del self._outbox_writes[saved.outbox_writes :]

    # -- audit -------------------------------------------------------------------

    async def lock_chain(self, chain: str | None) -> None:
        """Hold ``chain``'s in-process lock until this unit of work ends."""
        self.check_open()
        if chain not in self._held:
            await self._chain_locks.acquire(chain)
            self._held.append(chain)

    async def chain_head(self, chain: str | None) -> AuditEntry | None:
        """The last entry of a chain, buffered ones included."""
        for entry in reversed(self._audit):
            if entry.tenant_id == chain:
                return entry
        return await self._committed_head(chain)

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Buffer linked entries after checking their ids and location (one request)."""
        tenant = entries[0].tenant_id
        lookups = [select_equal(schema.hipaa_audit_log, {"id": e.id}) for e in entries]
        buffered_location = None if tenant is None else self.pending("locations").get((tenant,))
        if tenant is not None and buffered_location is None:
            lookups.append(select_equal(schema.locations, {"id": tenant}))
        answers = await self.fetch_all(lookups)
        if tenant is not None:
            known = (
                bool(answers[-1]) if buffered_location is None else buffered_location is not DELETED
            )
            if not known:
                raise ValidationError("tenant_id", f"no location {tenant!r}")
        taken = {e.id for e in self._audit}
        for entry, rows in zip(entries, answers, strict=False):
            if rows or entry.id in taken:
                raise Conflict(f"an audit entry with id {entry.id!r} already exists")
            taken.add(entry.id)
        self._audit.extend(entries)

    def _buffered(self, chain: str | None) -> list[AuditEntry]:
        return [e for e in self._audit if e.tenant_id == chain]

    async def audit_get(self, chain: str | None, entry_id: str) -> AuditEntry | None:
        """One entry of the chain."""
        for entry in self._buffered(chain):
            if entry.id == entry_id:
                return entry
        rows = await self.fetch(st.audit_get(chain, entry_id))
        return mapping.audit_entry_from_row(rows[0]) if rows else None

    async def audit_page(self, chain: str | None, query: AuditQuery) -> Page[AuditEntry]:
        """One page of the chain's matching entries, newest id first."""
        # Scoped by tenant_id (NULL for the system chain), not by chain: the
        # audit indexes lead with tenant_id, so the newest page is an index scan.
        statement = st.list_page(
            schema.hipaa_audit_log, None, query, scope_column="tenant_id", scope_value=chain
        )
        rows = await self.fetch(statement)
        # An edited, undecodable row raises UndecodableEntry, named (not a decoding crash).
        entries = [mapping.audit_entry_from_row(r) for r in rows]
        entries += [e for e in self._buffered(chain) if matches(query, e)]
        return page_of(entries, query)

    async def audit_count(self, chain: str | None, query: AuditQuery) -> int:
        """How many entries of the chain match."""
        statement = st.count(
            schema.hipaa_audit_log, None, query, scope_column="tenant_id", scope_value=chain
        )
        rows = await self.fetch(statement)
        committed = int(next(iter(rows[0].values())))
        return committed + sum(1 for e in self._buffered(chain) if matches(query, e))

    async def audit_chain(
        self, chain: str | None, after_sequence: int, limit: int
    ) -> Sequence[AuditEntry]:
        """The chain in sequence order, after ``after_sequence``."""
        rows = await self.fetch(st.audit_chain(chain, after_sequence, limit))
        # An edited, undecodable row raises UndecodableEntry (verification reports it).
        entries = [mapping.audit_entry_from_row(r) for r in rows]
        entries += [e for e in self._buffered(chain) if e.sequence > after_sequence]
        return entries[:limit]

    async def _committed_head(self, chain: str | None) -> AuditEntry | None:
        rows = await self.fetch(st.audit_head(chain))
        return mapping.audit_entry_from_row(rows[0]) if rows else None

    # -- outbox ------------------------------------------------------------------

    async def outbox_add(self, message: OutboxMessage) -> None:
        """Queue a message; sent with the commit's batch."""
        event_id = message.event.id
        if event_id in self._outbox or await self.fetch(
            select_equal(schema.outbox, {"event_id": event_id})
        ):
            raise Conflict(f"an outbox message with id {event_id!r} already exists")
        self._outbox[event_id] = message
        self._outbox_writes.append(st.insert(schema.outbox, mapping.outbox_row(message)))

    async def outbox_claim(
        self, now: datetime, until: datetime, limit: int
    ) -> Sequence[OutboxMessage]:
        """Lease due pending messages in D1 now (one atomic ``UPDATE … RETURNING``)."""
        lease = mapping.to_micros(until)
        rows = await self.fetch(st.outbox_claim(mapping.to_micros(now), lease, limit))
        claimed = [mapping.outbox_from_row(r) for r in rows]
        for message in claimed:
            self._leases[message.event.id] = lease
            self._outbox[message.event.id] = message
        return claimed

    async def _outbox_get(self, event_id: str) -> OutboxMessage | None:
        if event_id in self._outbox:
            return self._outbox[event_id]
        rows = await self.fetch(select_equal(schema.outbox, {"event_id": event_id}))
        return mapping.outbox_from_row(rows[0]) if rows else None

    def _outbox_buffer(self, message: OutboxMessage) -> None:
        self._outbox[message.event.id] = message
        row = mapping.outbox_row(message)
        values = {
            c: row[c] for c in ("status", "attempts", "available_at", "claimed_until", "last_error")
        }
        self._outbox_writes.append(
            st.update_columns(schema.outbox, None, {"event_id": message.event.id}, values)
        )

    async def outbox_complete(self, event_ids: Sequence[str]) -> bool:
        """Buffer marking messages done (none when one is missing)."""
        found = [await self._outbox_get(event_id) for event_id in event_ids]
        messages = [m for m in found if m is not None]
        if len(messages) != len(found):
            return False
        for message in messages:
            self._outbox_buffer(attrs.evolve(message, status=OutboxStatus.DONE))
        return True

    async def outbox_fail(
        self, event_id: str, error: str, retry_at: datetime, *, dead: bool
    ) -> bool:
        """Buffer a failed attempt: pending again at ``retry_at``, or dead."""
        message = await self._outbox_get(event_id)
        if message is None:
            return False
        self._outbox_buffer(failed(message, error, retry_at, dead=dead))
        return True

    async def outbox_list(self, status: OutboxStatus, limit: int) -> Sequence[OutboxMessage]:
        """Messages in one status, oldest event first, buffered changes applied."""
        statement = st.outbox_by_status(status.value, limit + len(self._outbox))
        messages = {
            m.event.id: m for m in (mapping.outbox_from_row(r) for r in await self.fetch(statement))
        }
        messages.update(self._outbox)
        chosen = [m for m in messages.values() if m.status is status]
        return sorted(chosen, key=lambda m: m.event.id)[:limit]

    # -- analytics -----------------------------------------------------------------

    async def metric(self, tenant: str, query: MetricQuery) -> Sequence[MetricRow] | None:
        """The SQL gateway's metric select run on D1, unless the buffer changes its tables.

        One request, one narrow row per counted record, grouped by the SQL
        gateway's ``aggregate``, so the numbers are the SQL gateway's.  When
        this unit of work has buffered changes to the tables a report reads,
        ``None``: the repository reads the rows (overlaid) and computes it.
        """
        if any(self.pending(n) for n in ("contacts", "bookings", "sms", "tasks")):
            return None
        for dimension in query.dimensions:
            if dimension not in allowed_dimensions(query.metric):
                raise ValidationError(
                    "dimensions",
                    f"{query.metric.value} cannot be grouped by {dimension.value}",
                )
        records = await self.fetch(sql_analytics.metric_records(tenant, query))
        return sql_analytics.aggregate(query, tenant, records)

    # -- commit ------------------------------------------------------------------

    def _batch(self) -> list[D1Statement]:
        statements = [w if isinstance(w, D1Statement) else to_d1(w) for w in self._writes]
        statements += [to_d1(w) for w in self._outbox_writes]
        audit_table = schema.hipaa_audit_log
        statements += chunked_insert(audit_table, [mapping.to_row(e) for e in self._audit])
        return statements

    async def commit(self) -> None:
        """Send every buffered write as one atomic batch (one request)."""
        self.check_open()
        try:
            for attempt in range(CHAIN_RETRIES + 1):
                batch = self._batch()
                if not batch:
                    break
                try:
                    await self._client.batch(batch)
                    break
                except D1Conflict as exc:
                    race = "hipaa_audit_log.chain" in exc.message and bool(self._audit)
                    if not race or attempt == CHAIN_RETRIES:
                        raise
                    self._audit = await relink(self._audit, self._committed_head)
        except BaseException:
            await self.rollback()
            raise
        self._leases.clear()
        self._clear()

    def _clear(self) -> None:
        while self._held:
            self._chain_locks.release(self._held.pop())
        self._pending = {}
        self._inserted = {}
        self._writes = []
        self._audit = []
        self._outbox = {}
        self._outbox_writes = []

    async def rollback(self) -> None:
        """Discard the buffer and release outbox leases taken by this unit of work."""
        self._clear()
        leases, self._leases = self._leases, {}
        if leases and not self._client.closed:
            await self._client.batch(
                [to_d1(_release(event_id, until)) for event_id, until in leases.items()]
            )


def _release(event_id: str, until: int) -> Statement:
    """Give back a lease this unit of work took (its rollback)."""
    t = schema.outbox
    key = ("d1_outbox_release",)

    def build() -> sa.Executable:
        return (
            t.update()
            .where(
                t.c.event_id == sa.bindparam("k_id"), t.c.claimed_until == sa.bindparam("k_until")
            )
            .values(claimed_until=None, attempts=t.c.attempts - 1)
        )

    return Statement(key, st.cached(key, build), {"k_id": event_id, "k_until": until}, True)


class D1UnitOfWork(StoredUnitOfWork):
    """One unit of work on D1: the shared repositories over a :class:`D1Store`."""

    def __init__(
        self,
        client: D1Client,
        tenant_id: str | None,
        chain_locks: ChainLocks | None = None,
    ) -> None:
        super().__init__(D1Store(client, chain_locks), tenant_id)


__all__ = [
    "CHAIN_LOCK_TIMEOUT",
    "CHAIN_RETRIES",
    "DELETED",
    "ENTITIES",
    "ChainLocks",
    "D1Store",
    "D1UnitOfWork",
    "key_of",
]


if TYPE_CHECKING:  # mypy proves the classes satisfy the ports structurally

    def _is_uow(uow: D1UnitOfWork) -> UnitOfWork:
        return uow

    def _is_store(store: D1Store) -> TableStore:
        return store
