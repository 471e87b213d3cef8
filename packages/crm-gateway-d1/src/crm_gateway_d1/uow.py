"""The D1 unit of work: reads go to D1 at once, writes go in one batch at commit.

D1 has no ``BEGIN`` over its REST API (and refuses ``SAVEPOINT``): a batch is
its only transaction.  So a unit of work here

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
  rules of :data:`crm_domain.memory.TABLES` (restrict / cascade / set null) —
  with **one** lookup request per write.  D1's own keys check the batch again
  at commit, so a unit of work that raced another one fails with ``Conflict``
  and writes nothing.

Isolation is therefore read committed, as on the other gateways.

**Audit chain.**  ``append`` reads the chain head (or the last buffered entry
of that chain), links the entry with :func:`crm_domain.audit_chain.chained`
and buffers its insert.  The hash is SHA-256 over a canonical encoding
computed in Python, so it cannot be produced by an ``INSERT … SELECT`` from
the head inside the batch; instead the batch relies on the table's
``UNIQUE (chain, sequence)``: if another unit of work appended to the chain
after our read, our sequence number is taken, D1 rejects the *whole* batch,
and the unit of work re-reads the head, re-links its entries and sends the
batch again (up to :data:`CHAIN_RETRIES` times).  Entries are never updated or
deleted, so "sequence *n* is free and *n − 1* had the hash we read" proves the
link is right.  The entries ``append`` returned before such a retry carry the
superseded sequence/hashes; what is stored is always a valid chain.

**Outbox consumer.**  ``claim`` leases messages in D1 at once (one atomic
``UPDATE … RETURNING``), so two consumers never hold the same message; a unit
of work that rolls back releases its leases.  ``complete`` and ``fail`` are
buffered like any write.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast

import anyio
import attrs
import sqlalchemy as sa
from crm_domain.audit_chain import chained
from crm_domain.entities import (
    AuditEntry,
    AutomationRule,
    Booking,
    CampaignDelivery,
    Contact,
    DomainEvent,
    EmailCampaign,
    IdempotencyRecord,
    IdempotencyState,
    IpRule,
    Location,
    Membership,
    OutboxMessage,
    OutboxStatus,
    Permission,
    Role,
    Session,
    SmsMessage,
    StaffUser,
    Task,
    Touchpoint,
    WebhookReceipt,
)
from crm_domain.entities.session import require_held, require_reservation
from crm_domain.errors import Conflict, NotFound, PermissionDenied, Unavailable, ValidationError
from crm_domain.metrics import allowed_dimensions, compute_metric
from crm_domain.pagination import Page, page_from_rows
from crm_domain.ports.analytics import MetricQuery, MetricRow
from crm_domain.queries import (
    AuditQuery,
    AutomationQuery,
    BookingQuery,
    CampaignQuery,
    ContactQuery,
    DeliveryQuery,
    IpRuleQuery,
    ListQuery,
    LocationQuery,
    MembershipQuery,
    SmsQuery,
    TaskQuery,
    TouchpointQuery,
    UserQuery,
    matches,
)
from crm_domain.relations import AUDIT_KIND, still_referenced
from crm_domain.relations import TABLES as RULES
from crm_domain.relations import Table as Rules
from crm_gateway_sql import analytics as sql_analytics
from crm_gateway_sql import mapping, schema
from crm_gateway_sql import statements as st
from crm_gateway_sql.statements import Statement

from crm_gateway_d1.client import D1Client, D1Conflict, D1Statement
from crm_gateway_d1.sql import chunked_insert, count_equal, select_equal, to_d1, unless_changed

if TYPE_CHECKING:
    from crm_domain.ports.gateway import UnitOfWork

E = TypeVar("E")
Q = TypeVar("Q", bound=ListQuery)

#: How long an audit append waits for another unit of work of this process holding the chain.
CHAIN_LOCK_TIMEOUT = 10.0

#: How often a commit re-links its audit entries after losing a race for the chain head.
CHAIN_RETRIES = 5

#: The entity stored in each table of the reference rules (the outbox is handled apart).
ENTITIES: dict[str, type[Any]] = {
    "locations": Location,
    "users": StaffUser,
    "memberships": Membership,
    "permissions": Permission,
    "sessions": Session,
    "webhook_receipts": WebhookReceipt,
    "ip_rules": IpRule,
    "contacts": Contact,
    "campaigns": EmailCampaign,
    "touchpoints": Touchpoint,
    "bookings": Booking,
    "tasks": Task,
    "sms": SmsMessage,
    "deliveries": CampaignDelivery,
    "automations": AutomationRule,
    "idempotency": IdempotencyRecord,
}

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


def _cut_page(rows: list[Any], query: ListQuery) -> Page[Any]:
    rows.sort(key=lambda r: r.id, reverse=True)
    after = query.after_id
    if after is not None:
        rows = [r for r in rows if r.id < after]
    return page_from_rows(rows[: query.limit + 1], query.limit)


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


class D1UnitOfWork:
    """One unit of work on D1 (see the module docstring for its semantics)."""

    def __init__(
        self,
        client: D1Client,
        tenant_id: str | None,
        chain_locks: ChainLocks | None = None,
    ) -> None:
        self.tenant_id = tenant_id
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
        self._locations = _Locations(self, "locations")
        self._users = _Users(self, "users")
        self._memberships = _Memberships(self, "memberships")
        self._permissions = _Permissions(self)
        self._sessions = _Sessions(self)
        self._webhook_receipts = _WebhookReceipts(self)
        self._ip_rules = _IpRules(self, "ip_rules")
        self._contacts = _Contacts(self, "contacts")
        self._touchpoints: _Repo[Touchpoint, TouchpointQuery] = _Repo(self, "touchpoints")
        self._bookings = _Bookings(self, "bookings")
        self._tasks: _Repo[Task, TaskQuery] = _Repo(self, "tasks")
        self._sms: _Repo[SmsMessage, SmsQuery] = _Repo(self, "sms")
        self._campaigns: _Repo[EmailCampaign, CampaignQuery] = _Repo(self, "campaigns")
        self._deliveries: _Repo[CampaignDelivery, DeliveryQuery] = _Repo(self, "deliveries")
        self._automations: _Repo[AutomationRule, AutomationQuery] = _Repo(self, "automations")
        self._idempotency = _Idempotency(self)
        self._audit_repo = _Audit(self)
        self._analytics = _Analytics(self)
        self._outbox_repo = _Outbox(self)

    # -- talking to D1 -------------------------------------------------------

    def _check_open(self) -> None:
        if self._client.closed:
            raise Unavailable("the D1 gateway is closed")

    async def fetch(self, statement: Statement) -> list[Mapping[str, Any]]:
        """Run one read now."""
        self._check_open()
        return list((await self._client.execute(to_d1(statement))).rows)

    async def fetch_all(self, statements: Sequence[Statement]) -> list[list[Mapping[str, Any]]]:
        """Run several reads in one request."""
        self._check_open()
        if not statements:
            return []
        results = await self._client.batch([to_d1(s) for s in statements])
        return [list(r.rows) for r in results]

    # -- the overlay -----------------------------------------------------------

    def _require_tenant(self) -> str:
        if self.tenant_id is None:
            raise PermissionDenied("this repository needs a unit of work bound to a location")
        return self.tenant_id

    def pending(self, name: str) -> dict[Key, Any]:
        """Buffered rows of one table (entity or :data:`DELETED`) by primary key."""
        return self._pending.get(name, {})

    def _entity(self, name: str, row: Mapping[str, Any]) -> Any:
        return mapping.from_row(ENTITIES[name], row)

    def _get_statement(self, name: str, key: Key) -> Statement:
        return select_equal(_sa_table(name), dict(zip(_pk_columns(name), key, strict=True)))

    async def get(self, name: str, key: Key) -> Any | None:
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

    async def find(self, name: str, equal: Mapping[str, Any]) -> list[Any]:
        """Rows whose columns equal ``equal`` (row values), buffered changes applied."""
        rows = await self.fetch(select_equal(_sa_table(name), equal))
        return self._overlay(name, rows, equal)

    async def page(self, name: str, tenant: str | None, query: ListQuery) -> Page[Any]:
        """One page of ``query`` over D1 and the buffer."""
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
        return _cut_page(merged, query)

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

    async def update(self, name: str, entity: Any) -> None:
        """Buffer a full-row update of an existing row."""
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

    async def delete(self, name: str, key: Key) -> None:
        """Buffer a delete, applying each referencing key's rule, all or nothing."""
        entity = await self.get(name, key)
        if entity is None:
            raise NotFound(f"{RULES[name].noun} {_show(key)} not found")
        saved = self.savepoint()
        try:
            await self._delete(name, key, entity)
        except BaseException:
            self.restore(saved)
            raise

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
                    (child.kind, None, len(await self.find(child.name, {fk.column: value})))
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

    async def chain_head(self, tenant_id: str | None) -> AuditEntry | None:
        """The last entry of a chain, buffered ones included."""
        for entry in reversed(self._audit):
            if entry.tenant_id == tenant_id:
                return entry
        rows = await self.fetch(st.audit_head(tenant_id))
        return mapping.from_row(AuditEntry, rows[0]) if rows else None

    async def _relink_audit(self) -> None:
        """Re-read each chain's head and re-link the buffered entries after it."""
        heads: dict[str | None, AuditEntry | None] = {}
        for chain in dict.fromkeys(e.tenant_id for e in self._audit):
            rows = await self.fetch(st.audit_head(chain))
            heads[chain] = mapping.from_row(AuditEntry, rows[0]) if rows else None
        relinked = []
        for entry in self._audit:
            stored = chained(entry, heads[entry.tenant_id])
            heads[entry.tenant_id] = stored
            relinked.append(stored)
        self._audit = relinked

    # -- commit ------------------------------------------------------------------

    def _batch(self) -> list[D1Statement]:
        statements = [w if isinstance(w, D1Statement) else to_d1(w) for w in self._writes]
        statements += [to_d1(w) for w in self._outbox_writes]
        audit_table = schema.hipaa_audit_log
        statements += chunked_insert(audit_table, [mapping.to_row(e) for e in self._audit])
        return statements

    async def commit(self) -> None:
        """Send every buffered write as one atomic batch (one request)."""
        self._check_open()
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
                    await self._relink_audit()
        except BaseException:
            await self.rollback()
            raise
        self._leases.clear()
        self._clear()

    async def lock_chain(self, chain: str | None) -> None:
        """Hold ``chain``'s in-process lock until this unit of work ends."""
        if chain not in self._held:
            await self._chain_locks.acquire(chain)
            self._held.append(chain)

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

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()

    # -- repositories ------------------------------------------------------------

    @property
    def locations(self) -> _Locations:
        """Locations (global)."""
        return self._locations

    @property
    def users(self) -> _Users:
        """Staff users (global)."""
        return self._users

    @property
    def memberships(self) -> _Memberships:
        """Memberships (global)."""
        return self._memberships

    @property
    def permissions(self) -> _Permissions:
        """Role grants (global)."""
        return self._permissions

    @property
    def sessions(self) -> _Sessions:
        """Sessions (global)."""
        return self._sessions

    @property
    def webhook_receipts(self) -> _WebhookReceipts:
        """Processed webhook events (global)."""
        return self._webhook_receipts

    @property
    def ip_rules(self) -> _IpRules:
        """The location's IP allowlist."""
        return self._ip_rules

    @property
    def contacts(self) -> _Contacts:
        """The location's contacts."""
        return self._contacts

    @property
    def touchpoints(self) -> _Repo[Touchpoint, TouchpointQuery]:
        """The location's touchpoints."""
        return self._touchpoints

    @property
    def bookings(self) -> _Bookings:
        """The location's bookings."""
        return self._bookings

    @property
    def tasks(self) -> _Repo[Task, TaskQuery]:
        """The location's tasks."""
        return self._tasks

    @property
    def sms(self) -> _Repo[SmsMessage, SmsQuery]:
        """The location's SMS messages."""
        return self._sms

    @property
    def campaigns(self) -> _Repo[EmailCampaign, CampaignQuery]:
        """The location's email campaigns."""
        return self._campaigns

    @property
    def deliveries(self) -> _Repo[CampaignDelivery, DeliveryQuery]:
        """The location's campaign deliveries."""
        return self._deliveries

    @property
    def automations(self) -> _Repo[AutomationRule, AutomationQuery]:
        """The location's automation rules."""
        return self._automations

    @property
    def idempotency(self) -> _Idempotency:
        """Stored idempotent answers of the location."""
        return self._idempotency

    @property
    def audit(self) -> _Audit:
        """The location's audit chain (the system chain when unbound)."""
        return self._audit_repo

    @property
    def analytics(self) -> _Analytics:
        """Report aggregates of the location."""
        return self._analytics

    @property
    def outbox(self) -> _Outbox:
        """The transactional outbox."""
        return self._outbox_repo


def _show(key: Key) -> str:
    return repr(key[0]) if len(key) == 1 else repr(key)


# --- repositories -----------------------------------------------------------------


class _Repo(Generic[E, Q]):
    """CRUD over one table, scoped to the unit of work's location when tenant-owned."""

    def __init__(self, uow: D1UnitOfWork, name: str) -> None:
        self._uow = uow
        self._name = name
        self._rules = RULES[name]

    def _scope(self) -> str | None:
        if not self._rules.tenant_owned:
            return None
        return self._uow._require_tenant()

    def _visible(self, entity: Any, tenant: str | None) -> bool:
        return tenant is None or entity.tenant_id == tenant

    def _check_owner(self, entity: Any) -> None:
        tenant = self._scope()
        if tenant is not None and entity.tenant_id != tenant:
            raise PermissionDenied(f"this {self._rules.noun} belongs to another location")

    async def add(self, entity: E) -> None:
        """Insert; ``Conflict`` on a duplicate id or unique key."""
        self._uow._check_open()
        self._check_owner(entity)
        await self._uow.insert(self._name, entity)

    async def get(self, entity_id: str) -> E:
        """The entity, or ``NotFound`` (also for another location's id)."""
        self._uow._check_open()
        tenant = self._scope()
        entity = await self._uow.get(self._name, (entity_id,))
        if entity is None or not self._visible(entity, tenant):
            raise NotFound(f"{self._rules.noun} {entity_id!r} not found")
        return cast("E", copy.deepcopy(entity) if self._rules.mutable else entity)

    async def update(self, entity: E) -> None:
        """Replace the stored entity with the same id."""
        self._check_owner(entity)
        await self.get(cast("Any", entity).id)
        await self._uow.update(self._name, entity)

    async def delete(self, entity_id: str) -> None:
        """Delete, applying the reference rules' on-delete actions."""
        await self.get(entity_id)
        await self._uow.delete(self._name, (entity_id,))

    async def list(self, query: Q) -> Page[E]:
        """One page of matching entities, newest id first."""
        self._uow._check_open()
        return await self._uow.page(self._name, self._scope(), query)

    async def count(self, query: Q) -> int:
        """How many entities match (paging ignored)."""
        self._uow._check_open()
        return await self._uow.count(self._name, self._scope(), query)

    async def _find_one(self, equal: Mapping[str, Any], what: str) -> E:
        tenant = self._scope()
        for entity in await self._uow.find(self._name, equal):
            if self._visible(entity, tenant):
                return cast("E", entity)
        raise NotFound(f"{self._rules.noun} with {what} not found")


class _Locations(_Repo[Location, LocationQuery]):
    async def get_by_code(self, code: str) -> Location:
        """The location with this code."""
        return await self._find_one({"code": code}, f"code {code!r}")


class _Users(_Repo[StaffUser, UserQuery]):
    async def get_by_email(self, email: str) -> StaffUser:
        """The user with this email (compared normalised: trimmed, lower-cased)."""
        return await self._find_one({"email": email.strip().lower()}, "this email")


class _Memberships(_Repo[Membership, MembershipQuery]):
    async def for_user(self, user_id: str) -> Sequence[Membership]:
        """Every membership of the user, ordered by id."""
        rows = await self._uow.find("memberships", {"user_id": user_id})
        return sorted(rows, key=lambda r: r.id)


class _IpRules(_Repo[IpRule, IpRuleQuery]):
    async def active(self) -> Sequence[IpRule]:
        """The location's active rules, ordered by id."""
        tenant = self._uow._require_tenant()
        rows = await self._uow.find("ip_rules", {"tenant_id": tenant, "is_active": 1})
        return sorted((r for r in rows if r.is_active), key=lambda r: r.id)


class _Contacts(_Repo[Contact, ContactQuery]):
    async def add_many(self, contacts: Sequence[Contact]) -> None:
        """Insert all contacts or none (chunked statements, one batch at commit)."""
        for contact in contacts:
            self._check_owner(contact)
        await self._uow.insert_many("contacts", contacts)


class _Bookings(_Repo[Booking, BookingQuery]):
    async def get_by_external_id(self, external_id: str) -> Booking:
        """The booking with the sender's id."""
        tenant = self._uow._require_tenant()
        return await self._find_one(
            {"tenant_id": tenant, "external_id": external_id}, "this external id"
        )


class _Permissions:
    def __init__(self, uow: D1UnitOfWork) -> None:
        self._uow = uow

    async def add(self, permission: Permission) -> None:
        """Store a grant; ``Conflict`` if the role already has it."""
        await self._uow.insert("permissions", permission)

    async def remove(self, role: Role, resource: str, action: str) -> None:
        """Remove a grant; ``NotFound`` if absent."""
        wanted = {"role": Role(role).value, "resource": str(resource), "action": str(action)}
        rows = await self._uow.find("permissions", wanted)
        if not rows:
            raise NotFound(f"role {Role(role).value} has no grant {resource}:{action}")
        await self._uow.delete("permissions", (rows[0].id,))

    async def for_roles(self, roles: Sequence[Role]) -> Sequence[Permission]:
        """Every grant of any of ``roles``, ordered by id."""
        wanted = {Role(r) for r in roles}
        return [p for p in await self.all() if p.role in wanted]

    async def all(self) -> Sequence[Permission]:
        """Every grant, ordered by id."""
        rows = await self._uow.fetch(st.select_all(schema.permissions))
        found = self._uow._overlay("permissions", rows, {})
        return sorted(found, key=lambda r: r.id)


class _Sessions:
    def __init__(self, uow: D1UnitOfWork) -> None:
        self._uow = uow

    async def add(self, session: Session) -> None:
        """Store a new session."""
        await self._uow.insert("sessions", session)

    async def get(self, session_id: str) -> Session:
        """The session, or ``NotFound``."""
        row = await self._uow.get("sessions", (session_id,))
        if row is None:
            raise NotFound(f"session {session_id!r} not found")
        return cast("Session", row)

    async def touch(self, session_id: str, seen_at: datetime) -> None:
        """Record activity."""
        session = await self.get(session_id)
        await self._uow.update("sessions", attrs.evolve(session, last_seen_at=seen_at))

    async def revoke(self, session_id: str, revoked_at: datetime) -> None:
        """End the session for good."""
        session = await self.get(session_id)
        await self._uow.update("sessions", attrs.evolve(session, revoked_at=revoked_at))


class _WebhookReceipts:
    def __init__(self, uow: D1UnitOfWork) -> None:
        self._uow = uow

    async def record(self, receipt: WebhookReceipt) -> bool:
        """Store the receipt; ``False`` when (source, event_id) was seen before."""
        if await self._uow.get("webhook_receipts", (receipt.source, receipt.event_id)):
            return False
        await self._uow.insert("webhook_receipts", receipt)
        return True


class _Idempotency:
    def __init__(self, uow: D1UnitOfWork) -> None:
        self._uow = uow

    async def get(self, key: str, user_id: str) -> IdempotencyRecord | None:
        """The record for this key and user in the bound location, if any."""
        tenant = self._uow._require_tenant()
        found = await self._uow.get("idempotency", _idem_key(tenant, key, user_id))
        return cast("IdempotencyRecord | None", found)

    def _check_owner(self, reservation: IdempotencyRecord) -> tuple[str, Key]:
        tenant = self._uow._require_tenant()
        if reservation.tenant_id != tenant:
            raise PermissionDenied("this idempotency record belongs to another location")
        return tenant, _idem_key(tenant, reservation.key, reservation.user_id)

    def _buffer(self, key: Key, entity: Any, *statements: Statement) -> None:
        self._uow._put("idempotency", key, entity)
        self._uow._writes.extend(statements)

    async def reserve(
        self, reservation: IdempotencyRecord, *, stale_before: datetime | None = None
    ) -> None:
        """Store a pending reservation, or take over a stale one (see the port).

        The take-over buffers a ``DELETE`` of exactly the stale row read (state
        and ``created_at`` included) and the insert: if another request took it
        over first, the delete matches nothing, the insert hits the primary
        key and D1 rejects the batch (``Conflict`` at commit).
        """
        tenant, key = self._check_owner(reservation)
        require_reservation(reservation)
        stored = await self.get(reservation.key, reservation.user_id)
        if stored is None:
            await self._uow.insert("idempotency", reservation)
            return
        if not stored.is_stale(stale_before):
            raise Conflict("this idempotency key is already stored for this user")
        table = schema.idempotency_keys
        self._buffer(
            key,
            reservation,
            st.delete_where(table, tenant, _held(stored)),
            st.insert(table, mapping.to_row(reservation)),
        )

    async def complete(
        self,
        reservation: IdempotencyRecord,
        *,
        status_code: int,
        response_body: str,
        completed_at: datetime,
    ) -> IdempotencyRecord:
        """Store the answer of a reservation that is still held (see the port).

        Checked now against what D1 holds, and again in the batch: the update
        is conditional on the reservation and guarded by :func:`unless_changed`.
        """
        tenant, key = self._check_owner(reservation)
        stored = require_held(await self.get(reservation.key, reservation.user_id), reservation)
        done = stored.completed(
            status_code=status_code, response_body=response_body, completed_at=completed_at
        )
        row = mapping.to_row(done)
        values = {c: row[c] for c in ("state", "status_code", "response_body", "completed_at")}
        table = schema.idempotency_keys
        self._buffer(
            key,
            done,
            st.update_columns(table, tenant, _held(reservation), values),
            unless_changed(table, dict(zip(_pk_columns("idempotency"), key, strict=True))),
        )
        return done

    async def release(self, reservation: IdempotencyRecord) -> None:
        """Delete a reservation that is still held (checked now and in the batch)."""
        tenant, key = self._check_owner(reservation)
        require_held(await self.get(reservation.key, reservation.user_id), reservation)
        table = schema.idempotency_keys
        self._buffer(
            key,
            DELETED,
            st.delete_where(table, tenant, _held(reservation)),
            unless_changed(table, dict(zip(_pk_columns("idempotency"), key, strict=True))),
        )


def _held(record: IdempotencyRecord) -> dict[str, Any]:
    """The columns that identify exactly this pending reservation (compare-and-set)."""
    row = mapping.to_row(record)
    held = ("user_id", "key", "request_fingerprint", "created_at")
    return {**{c: row[c] for c in held}, "state": IdempotencyState.PENDING.value}


def _idem_key(tenant: str, key: str, user_id: str) -> Key:
    values = {"tenant_id": tenant, "key": key, "user_id": user_id}
    return tuple(values[c] for c in _pk_columns("idempotency"))


class _Audit:
    def __init__(self, uow: D1UnitOfWork) -> None:
        self._uow = uow

    async def append(self, entry: AuditEntry) -> AuditEntry:
        """Append to the entry's chain, assigning sequence and hashes (see the module doc)."""
        uow = self._uow
        uow._check_open()
        if entry.tenant_id != uow.tenant_id:
            raise PermissionDenied("an audit entry must belong to the unit of work's location")
        lookups = [select_equal(schema.hipaa_audit_log, {"id": entry.id})]
        tenant = entry.tenant_id
        buffered_location = None if tenant is None else uow.pending("locations").get((tenant,))
        if tenant is not None and buffered_location is None:
            lookups.append(select_equal(schema.locations, {"id": tenant}))
        answers = await uow.fetch_all(lookups)
        if tenant is not None:
            known = (
                bool(answers[1]) if buffered_location is None else buffered_location is not DELETED
            )
            if not known:
                raise ValidationError("tenant_id", f"no location {tenant!r}")
        if answers[0] or any(e.id == entry.id for e in uow._audit):
            raise Conflict(f"an audit entry with id {entry.id!r} already exists")
        await uow.lock_chain(entry.tenant_id)
        stored = chained(entry, await uow.chain_head(entry.tenant_id))
        uow._audit.append(stored)
        return stored

    async def append_many(self, entries: Sequence[AuditEntry]) -> Sequence[AuditEntry]:
        """Append in order, all or nothing."""
        saved = self._uow.savepoint()
        try:
            return [await self.append(e) for e in entries]
        except BaseException:
            self._uow.restore(saved)
            raise

    def _buffered(self) -> list[AuditEntry]:
        return [e for e in self._uow._audit if e.tenant_id == self._uow.tenant_id]

    async def get(self, entry_id: str) -> AuditEntry:
        """One entry of the bound chain."""
        for entry in self._buffered():
            if entry.id == entry_id:
                return entry
        rows = await self._uow.fetch(st.audit_get(self._uow.tenant_id, entry_id))
        if not rows:
            raise NotFound(f"audit entry {entry_id!r} not found")
        return mapping.from_row(AuditEntry, rows[0])

    async def list(self, query: AuditQuery) -> Page[AuditEntry]:
        """One page of the bound chain's matching entries, newest id first."""
        # Scoped by tenant_id (NULL for the system chain), not by chain: the
        # audit indexes lead with tenant_id, so the newest page is an index scan.
        statement = st.list_page(
            schema.hipaa_audit_log,
            None,
            query,
            scope_column="tenant_id",
            scope_value=self._uow.tenant_id,
        )
        rows = await self._uow.fetch(statement)
        entries = [mapping.from_row(AuditEntry, r) for r in rows]
        entries += [e for e in self._buffered() if matches(query, e)]
        return _cut_page(entries, query)

    async def count(self, query: AuditQuery) -> int:
        """How many entries of the bound chain match."""
        statement = st.count(
            schema.hipaa_audit_log,
            None,
            query,
            scope_column="tenant_id",
            scope_value=self._uow.tenant_id,
        )
        rows = await self._uow.fetch(statement)
        committed = int(next(iter(rows[0].values())))
        return committed + sum(1 for e in self._buffered() if matches(query, e))

    async def chain(self, after_sequence: int = 0, limit: int = 1000) -> Sequence[AuditEntry]:
        """The bound chain in sequence order, after ``after_sequence``."""
        rows = await self._uow.fetch(st.audit_chain(self._uow.tenant_id, after_sequence, limit))
        # An edited, undecodable row raises UndecodableEntry (verification reports it).
        entries = [mapping.audit_entry_from_row(r) for r in rows]
        entries += [e for e in self._buffered() if e.sequence > after_sequence]
        return entries[:limit]


class _Analytics:
    def __init__(self, uow: D1UnitOfWork) -> None:
        self._uow = uow

    async def metric(self, query: MetricQuery) -> Sequence[MetricRow]:
        """Compute ``query`` over the bound location.

        Usually the SQL gateway's own metric select runs on D1 (one request,
        one narrow row per counted record) and its ``aggregate`` groups the
        records, so the numbers are the SQL gateway's.  When this unit of work
        has buffered changes to the tables a report reads, the location's rows
        are read and overlaid instead and the reference rules compute the
        report, so it includes those changes.
        """
        uow = self._uow
        tenant = uow._require_tenant()
        names = ("contacts", "bookings", "sms", "tasks")
        if not any(uow.pending(n) for n in names):
            for dimension in query.dimensions:
                if dimension not in allowed_dimensions(query.metric):
                    raise ValidationError(
                        "dimensions",
                        f"{query.metric.value} cannot be grouped by {dimension.value}",
                    )
            records = await uow.fetch(sql_analytics.metric_records(tenant, query))
            return sql_analytics.aggregate(query, tenant, records)
        answers = await uow.fetch_all(
            [select_equal(_sa_table(n), {"tenant_id": tenant}) for n in names]
        )
        rows = {
            n: uow._overlay(n, committed, {"tenant_id": tenant})
            for n, committed in zip(names, answers, strict=True)
        }
        return compute_metric(
            query,
            tenant_id=tenant,
            contacts=rows["contacts"],
            bookings=rows["bookings"],
            sms=rows["sms"],
            tasks=rows["tasks"],
        )


def _claim(now: int, until: int, limit: int) -> Statement:
    """Lease due pending messages and count the attempt, oldest event first."""
    t = schema.outbox
    key = ("d1_outbox_claim",)

    def build() -> sa.Executable:
        due = (
            sa.select(t.c.event_id)
            .where(
                t.c.status == "pending",
                t.c.available_at <= sa.bindparam("k_now"),
                sa.or_(t.c.claimed_until.is_(None), t.c.claimed_until < sa.bindparam("k_now")),
            )
            .order_by(t.c.event_id)
            .limit(sa.bindparam("limit", type_=sa.Integer))
            .scalar_subquery()
        )
        return (
            t.update()
            .where(t.c.event_id.in_(due))
            .values(
                claimed_until=sa.bindparam("v_until", type_=sa.BigInteger),
                attempts=t.c.attempts + 1,
            )
            .returning(*t.c)
        )

    return Statement(
        key, st.cached(key, build), {"k_now": now, "v_until": until, "limit": limit}, True
    )


def _by_status(status: str, limit: int) -> Statement:
    """Messages in one status, oldest event (lowest id) first."""
    t = schema.outbox
    key = ("d1_outbox_by_status",)

    def build() -> sa.Executable:
        return (
            sa.select(t)
            .where(t.c.status == sa.bindparam("k_status"))
            .order_by(t.c.event_id)
            .limit(sa.bindparam("limit", type_=sa.Integer))
        )

    return Statement(key, st.cached(key, build), {"k_status": status, "limit": limit})


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


class _Outbox:
    def __init__(self, uow: D1UnitOfWork) -> None:
        self._uow = uow

    def _consumer(self) -> D1UnitOfWork:
        if self._uow.tenant_id is not None:
            raise PermissionDenied("the outbox is consumed through a unit of work with no location")
        self._uow._check_open()
        return self._uow

    async def add(self, event: DomainEvent) -> None:
        """Queue an event of the bound location; sent with the commit's batch."""
        uow = self._uow
        uow._check_open()
        if event.tenant_id != uow.tenant_id:
            raise PermissionDenied("an event must belong to the unit of work's location")
        if event.id in uow._outbox or await uow.fetch(
            select_equal(schema.outbox, {"event_id": event.id})
        ):
            raise Conflict(f"an outbox message with id {event.id!r} already exists")
        message = OutboxMessage(event=event, available_at=event.occurred_at)
        uow._outbox[event.id] = message
        uow._outbox_writes.append(st.insert(schema.outbox, mapping.outbox_row(message)))

    async def claim(
        self, now: datetime, limit: int = 100, lease_seconds: float = 60.0
    ) -> Sequence[OutboxMessage]:
        """Lease due pending messages in D1 now, oldest event first."""
        uow = self._consumer()
        until = mapping.to_micros(now + timedelta(seconds=lease_seconds))
        rows = await uow.fetch(_claim(mapping.to_micros(now), until, limit))
        claimed = sorted((mapping.outbox_from_row(r) for r in rows), key=lambda m: m.event.id)
        for message in claimed:
            uow._leases[message.event.id] = until
            uow._outbox[message.event.id] = message
        return claimed

    async def _get(self, event_id: str) -> OutboxMessage:
        uow = self._uow
        if event_id in uow._outbox:
            return uow._outbox[event_id]
        rows = await uow.fetch(select_equal(schema.outbox, {"event_id": event_id}))
        if not rows:
            raise NotFound(f"outbox message {event_id!r} not found")
        return mapping.outbox_from_row(rows[0])

    def _buffer(self, message: OutboxMessage) -> None:
        uow = self._uow
        uow._outbox[message.event.id] = message
        row = mapping.outbox_row(message)
        values = {
            c: row[c] for c in ("status", "attempts", "available_at", "claimed_until", "last_error")
        }
        uow._outbox_writes.append(
            st.update_columns(schema.outbox, None, {"event_id": message.event.id}, values)
        )

    async def complete(self, event_ids: Sequence[str]) -> None:
        """Mark messages done."""
        self._consumer()
        for event_id in event_ids:
            message = await self._get(event_id)
            self._buffer(attrs.evolve(message, status=OutboxStatus.DONE))

    async def fail(
        self, event_id: str, error: str, retry_at: datetime, *, dead: bool = False
    ) -> None:
        """Record a failed attempt: pending again at ``retry_at``, or dead."""
        self._consumer()
        message = await self._get(event_id)
        self._buffer(
            attrs.evolve(
                message,
                status=OutboxStatus.DEAD if dead else OutboxStatus.PENDING,
                available_at=retry_at,
                claimed_until=None,
                last_error=error,
            )
        )

    async def list_status(self, status: str, limit: int = 100) -> Sequence[OutboxMessage]:
        """Messages in one status, oldest event first."""
        uow = self._consumer()
        try:
            wanted = OutboxStatus(status)
        except ValueError:
            raise ValidationError("status", f"{status!r} is not an outbox status") from None
        statement = _by_status(wanted.value, limit + len(uow._outbox))
        messages = {
            m.event.id: m for m in (mapping.outbox_from_row(r) for r in await uow.fetch(statement))
        }
        messages.update(uow._outbox)
        chosen = [m for m in messages.values() if m.status is wanted]
        return sorted(chosen, key=lambda m: m.event.id)[:limit]


__all__ = [
    "CHAIN_LOCK_TIMEOUT",
    "CHAIN_RETRIES",
    "DELETED",
    "ENTITIES",
    "ChainLocks",
    "D1UnitOfWork",
    "key_of",
]


if TYPE_CHECKING:  # mypy proves the class satisfies the port structurally

    def _is_uow(uow: D1UnitOfWork) -> UnitOfWork:
        return uow
