"""Every repository of the port over a :class:`~crm_gateway_sql.session.SqlSession`.

They build statements (:mod:`crm_gateway_sql.statements`), map rows
(:mod:`crm_gateway_sql.mapping`) and apply the port's rules that are not
constraints — which unit of work may touch what, ``NotFound`` for a missing or
foreign id — exactly as :mod:`crm_domain.memory` does.  Any engine whose
session speaks SQLite or PostgreSQL SQL can reuse them unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa
from crm_domain.audit_chain import chained
from crm_domain.entities import (
    AuditEntry,
    Booking,
    Contact,
    DomainEvent,
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
    StaffUser,
    WebhookReceipt,
)
from crm_domain.entities.session import require_held, require_reservation
from crm_domain.errors import Conflict, NotFound, PermissionDenied, ValidationError
from crm_domain.pagination import Page, page_from_rows
from crm_domain.ports.analytics import MetricQuery, MetricRow
from crm_domain.queries import AuditQuery, IpRuleQuery, ListQuery
from crm_domain.relations import AUDIT_KIND, restricting, still_referenced
from crm_domain.relations import TABLES as RELATIONS

from crm_gateway_sql import schema
from crm_gateway_sql import statements as st
from crm_gateway_sql.analytics import compute
from crm_gateway_sql.errors import DuplicateKey, StillReferenced
from crm_gateway_sql.mapping import (
    RELATION_TABLES,
    audit_entry_from_row,
    chain_key,
    from_row,
    outbox_from_row,
    outbox_row,
    to_micros,
    to_row,
)
from crm_gateway_sql.session import SqlSession

if TYPE_CHECKING:
    from crm_gateway_sql.gateway import SqlUnitOfWork

E = TypeVar("E")
Q = TypeVar("Q", bound=ListQuery)

_savepoint_ids = itertools.count(1)


class _Base:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    @property
    def _session(self) -> SqlSession:
        return self._uow.session

    def _require_tenant(self) -> str:
        if self._uow.tenant_id is None:
            raise PermissionDenied("this repository needs a unit of work bound to a location")
        return self._uow.tenant_id


#: The collection of ``crm_domain.relations`` each repository's noun names.
_RELATION_OF_NOUN = {table.noun: table.name for table in RELATIONS.values()}


class CrudRepository(_Base, Generic[E, Q]):
    """add/get/update/delete/list/count over one table (scoped when tenant-owned)."""

    def __init__(self, uow: SqlUnitOfWork, entity: type[E], table: sa.Table, noun: str) -> None:
        super().__init__(uow)
        self._entity = entity
        self._table = table
        self._noun = noun
        self._tenant_owned = st.is_tenant_table(table)

    def _scope(self) -> str | None:
        return self._require_tenant() if self._tenant_owned else None

    def _check_owner(self, entity: Any) -> None:
        tenant = self._scope()
        if tenant is not None and entity.tenant_id != tenant:
            raise PermissionDenied(f"this {self._noun} belongs to another location")

    async def add(self, entity: E) -> None:
        """Insert; ``Conflict`` on a duplicate id or unique key."""
        self._check_owner(entity)
        await self._session.execute(st.insert(self._table, to_row(entity)))

    async def get(self, entity_id: str) -> E:
        """The entity, or ``NotFound`` (also for another location's id)."""
        rows = await self._session.fetch(st.get(self._table, self._scope(), entity_id))
        if not rows:
            raise NotFound(f"{self._noun} {entity_id!r} not found")
        return from_row(self._entity, rows[0])

    async def update(self, entity: E) -> None:
        """Replace the stored entity with the same id."""
        self._check_owner(entity)
        changed = await self._session.execute(st.update(self._table, self._scope(), to_row(entity)))
        if changed == 0:
            raise NotFound(f"{self._noun} {getattr(entity, 'id', '?')!r} not found")

    async def delete(self, entity_id: str) -> None:
        """Delete; foreign keys restrict, cascade or clear references.

        A delete a ``restrict`` key refuses raises the ``Conflict`` of
        :func:`crm_domain.relations.still_referenced`, with one ``COUNT`` per
        restricting key (run only once the database has refused).
        """
        try:
            changed = await self._session.execute(st.delete(self._table, self._scope(), entity_id))
        except StillReferenced:
            raise await self._still_referenced(entity_id) from None
        if changed == 0:
            raise NotFound(f"{self._noun} {entity_id!r} not found")

    async def _still_referenced(self, entity_id: str) -> Conflict:
        relation = _RELATION_OF_NOUN[self._noun]
        kinds: list[str] = []
        statements: list[st.Statement] = []
        for child, fk in restricting(relation):
            table = RELATION_TABLES[child.name]
            # A location's rows are counted as that location's; others within
            # this unit of work's location (the referring rows share it).
            scope = entity_id if fk.column == "tenant_id" else self._uow.tenant_id
            kinds.append(child.kind)
            statements.append(
                st.count_equal(
                    table, scope if st.is_tenant_table(table) else None, fk.column, entity_id
                )
            )
        if relation == "locations":
            kinds.append(AUDIT_KIND)
            statements.append(st.count_equal(schema.hipaa_audit_log, None, "tenant_id", entity_id))
            answers = await self._session.fetch_as_tenant(entity_id, statements)
        else:
            answers = [await self._session.fetch(statement) for statement in statements]
        counts = [
            (kind, int(next(iter(rows[0].values()))))
            for kind, rows in zip(kinds, answers, strict=True)
        ]
        return still_referenced(relation, entity_id, counts)

    async def list(self, query: Q) -> Page[E]:
        """One page of matching entities, newest id first."""
        rows = await self._session.fetch(st.list_page(self._table, self._scope(), query))
        items: list[Any] = [from_row(self._entity, r) for r in rows]
        return page_from_rows(items, query.limit)

    async def count(self, query: Q) -> int:
        """How many entities match (paging ignored)."""
        rows = await self._session.fetch(st.count(self._table, self._scope(), query))
        return int(next(iter(rows[0].values())))

    async def _find(self, column: str, value: Any, what: str) -> E:
        rows = await self._session.fetch(st.get_by(self._table, self._scope(), column, value))
        if not rows:
            raise NotFound(f"{self._noun} with {what} not found")
        return from_row(self._entity, rows[0])


class LocationRepository(CrudRepository[Location, Any]):
    """Locations (global)."""

    async def get_by_code(self, code: str) -> Location:
        """The location with this code."""
        return await self._find("code", code, f"code {code!r}")


class UserRepository(CrudRepository[StaffUser, Any]):
    """Staff users (global)."""

    async def get_by_email(self, email: str) -> StaffUser:
        """The user with this email (compared normalised: trimmed, lower-cased)."""
        return await self._find("email", email.strip().lower(), "this email")


class MembershipRepository(CrudRepository[Membership, Any]):
    """Memberships (global)."""

    async def for_user(self, user_id: str) -> Sequence[Membership]:
        """Every membership of the user, ordered by id."""
        statement = st.select_where(
            schema.user_permissions, None, {"user_id": user_id}, order_by="id_asc"
        )
        return [from_row(Membership, r) for r in await self._session.fetch(statement)]


class IpRuleRepository(CrudRepository[IpRule, IpRuleQuery]):
    """A location's IP allowlist."""

    async def active(self) -> Sequence[IpRule]:
        """The location's active rules, ordered by id."""
        statement = st.select_where(
            schema.ip_whitelist, self._require_tenant(), {"is_active": True}, order_by="id_asc"
        )
        return [from_row(IpRule, r) for r in await self._session.fetch(statement)]


class ContactRepository(CrudRepository[Contact, Any]):
    """A location's contacts, with the bulk-import fast path."""

    async def add_many(self, contacts: Sequence[Contact]) -> None:
        """Insert every contact or none (COPY on PostgreSQL, executemany on SQLite)."""
        tenant = self._require_tenant()
        rows = []
        for contact in contacts:
            if contact.tenant_id != tenant:
                raise PermissionDenied("this contact belongs to another location")
            rows.append(to_row(contact))
        if not rows:
            return
        # A savepoint makes the batch atomic without ending the unit of work.
        name = f"crm_bulk_{next(_savepoint_ids)}"
        await self._session.savepoint(name)
        try:
            await self._session.bulk_insert(schema.contacts, rows)
        except BaseException:
            await self._session.rollback_to_savepoint(name)
            raise
        await self._session.release_savepoint(name)


class BookingRepository(CrudRepository[Booking, Any]):
    """A location's bookings."""

    async def get_by_external_id(self, external_id: str) -> Booking:
        """The booking with the sender's id."""
        return await self._find("external_id", external_id, "this external id")


class PermissionRepository(_Base):
    """Role grants (global)."""

    async def add(self, permission: Permission) -> None:
        """Store a grant; ``Conflict`` if the role already has it."""
        await self._session.execute(st.insert(schema.permissions, to_row(permission)))

    async def remove(self, role: Role, resource: str, action: str) -> None:
        """Remove a grant; ``NotFound`` if absent."""
        role_value = Role(role).value
        changed = await self._session.execute(
            st.permission_remove(role_value, str(resource), str(action))
        )
        if changed == 0:
            raise NotFound(f"role {role_value} has no grant {resource}:{action}")

    async def for_roles(self, roles: Sequence[Role]) -> Sequence[Permission]:
        """Every grant of any of ``roles``, ordered by id."""
        wanted = sorted({Role(r).value for r in roles})
        if not wanted:
            return []
        rows = await self._session.fetch(st.permissions_for_roles(wanted))
        return [from_row(Permission, r) for r in rows]

    async def all(self) -> Sequence[Permission]:
        """Every grant, ordered by id."""
        rows = await self._session.fetch(st.select_all(schema.permissions))
        return [from_row(Permission, r) for r in rows]


class SessionRepository(_Base):
    """Server-side sessions (global)."""

    async def add(self, session: Session) -> None:
        """Store a new session."""
        await self._session.execute(st.insert(schema.sessions, to_row(session)))

    async def get(self, session_id: str) -> Session:
        """The session, or ``NotFound``."""
        rows = await self._session.fetch(st.get(schema.sessions, None, session_id))
        if not rows:
            raise NotFound(f"session {session_id!r} not found")
        return from_row(Session, rows[0])

    async def _set(self, session_id: str, column: str, when: datetime) -> None:
        statement = st.update_columns(
            schema.sessions, None, {"id": session_id}, {column: to_micros(when)}
        )
        if await self._session.execute(statement) == 0:
            raise NotFound(f"session {session_id!r} not found")

    async def touch(self, session_id: str, seen_at: datetime) -> None:
        """Record activity."""
        await self._set(session_id, "last_seen_at", seen_at)

    async def revoke(self, session_id: str, revoked_at: datetime) -> None:
        """End the session for good."""
        await self._set(session_id, "revoked_at", revoked_at)


class WebhookReceiptRepository(_Base):
    """Processed webhook events (global)."""

    async def record(self, receipt: WebhookReceipt) -> bool:
        """Store the receipt; ``False`` when (source, event_id) was seen before."""
        statement = st.insert_ignore(schema.processed_webhook_events, to_row(receipt))
        return await self._session.execute(statement) == 1


class IdempotencyRepository(_Base):
    """Stored idempotent answers of the location."""

    async def get(self, key: str, user_id: str) -> IdempotencyRecord | None:
        """The record for this key and user in the bound location, if any."""
        statement = st.select_where(
            schema.idempotency_keys,
            self._require_tenant(),
            {"key": key, "user_id": user_id},
            order_by="key",
        )
        rows = await self._session.fetch(statement)
        return from_row(IdempotencyRecord, rows[0]) if rows else None

    def _check_owner(self, reservation: IdempotencyRecord) -> str:
        tenant = self._require_tenant()
        if reservation.tenant_id != tenant:
            raise PermissionDenied("this idempotency record belongs to another location")
        return tenant

    @staticmethod
    def _held(record: IdempotencyRecord) -> dict[str, Any]:
        """The columns that identify exactly this pending reservation (compare-and-set)."""
        row = to_row(record)
        return {
            "user_id": row["user_id"],
            "key": row["key"],
            "state": IdempotencyState.PENDING.value,
            "created_at": row["created_at"],
            "request_fingerprint": row["request_fingerprint"],
        }

    async def reserve(
        self, reservation: IdempotencyRecord, *, stale_before: datetime | None = None
    ) -> None:
        """Store a pending reservation, or take over a stale one (see the port).

        The take-over is a conditional ``DELETE`` of exactly the stale row read
        (state and ``created_at`` included) followed by the insert: under
        concurrency the row lock serialises the deletes, the loser deletes
        nothing (or its insert hits the primary key) and gets ``Conflict``.
        """
        tenant = self._check_owner(reservation)
        require_reservation(reservation)
        stored = await self.get(reservation.key, reservation.user_id)
        if stored is not None:
            if not stored.is_stale(stale_before):
                raise Conflict("this idempotency key is already stored for this user")
            table = schema.idempotency_keys
            taken = await self._session.execute(st.delete_where(table, tenant, self._held(stored)))
            if taken != 1:
                raise Conflict("this idempotency key was taken over by another request")
        try:
            await self._session.execute(st.insert(schema.idempotency_keys, to_row(reservation)))
        except Conflict:
            raise Conflict("this idempotency key is already stored for this user") from None

    async def complete(
        self,
        reservation: IdempotencyRecord,
        *,
        status_code: int,
        response_body: str,
        completed_at: datetime,
    ) -> IdempotencyRecord:
        """Store the answer of a reservation that is still held (see the port)."""
        tenant = self._check_owner(reservation)
        done = reservation.completed(
            status_code=status_code, response_body=response_body, completed_at=completed_at
        )
        row = to_row(done)
        values = {c: row[c] for c in ("state", "status_code", "response_body", "completed_at")}
        statement = st.update_columns(
            schema.idempotency_keys, tenant, self._held(reservation), values
        )
        if await self._session.execute(statement) != 1:
            require_held(await self.get(reservation.key, reservation.user_id), reservation)
            raise Conflict("this Idempotency-Key reservation changed concurrently")
        return done

    async def release(self, reservation: IdempotencyRecord) -> None:
        """Delete a reservation that is still held (see the port)."""
        tenant = self._check_owner(reservation)
        statement = st.delete_where(schema.idempotency_keys, tenant, self._held(reservation))
        if await self._session.execute(statement) != 1:
            require_held(await self.get(reservation.key, reservation.user_id), reservation)
            raise Conflict("this Idempotency-Key reservation changed concurrently")


class AuditRepository(_Base):
    """The audit chain of the bound location (the system chain when unbound).

    Appending takes the chain's lock once, reads the chain's head once (the
    SQLite session answers from memory when no other connection has written
    since: :meth:`~crm_gateway_sql.sqlite.SqliteSession.audit_head`),
    computes every entry's sequence and hashes in Python
    (:func:`crm_domain.audit_chain.chained`) and writes them with one insert:
    a single-row ``INSERT`` for one entry, ``executemany`` for a batch.  Per
    entry that leaves the hash and one row of the insert, which is what makes
    the HTTP read audit's group commit pay off.
    """

    async def append(self, entry: AuditEntry) -> AuditEntry:
        """Append one entry under the chain's lock, assigning sequence and hashes."""
        return (await self.append_many((entry,)))[0]

    async def append_many(self, entries: Sequence[AuditEntry]) -> Sequence[AuditEntry]:
        """Append in order, all or nothing: one lock, one head read, one insert."""
        tenant_id = self._uow.tenant_id
        for entry in entries:
            if entry.tenant_id != tenant_id:
                raise PermissionDenied("an audit entry must belong to the unit of work's location")
        if not entries:
            return []
        # Grouping by chain is trivial here: the port refuses entries of any
        # chain but the unit of work's, so a batch is always one chain.
        session = self._session
        await session.lock_audit_chain(chain_key(tenant_id))
        previous = await session.audit_head(tenant_id)
        stored: list[AuditEntry] = []
        for entry in entries:
            previous = chained(entry, previous)
            stored.append(previous)
        table = schema.hipaa_audit_log
        try:
            if len(stored) == 1:
                await session.execute(st.insert(table, to_row(stored[0])))
            else:
                # All or nothing: execute_many is atomic on both engines.
                await session.execute_many(st.insert_many(table), [to_row(e) for e in stored])
        except DuplicateKey:
            # Any other refusal (a trigger, a check) keeps the store's own reason.
            raise Conflict(_duplicate_message(stored)) from None
        session.audit_appended(stored[-1])
        return stored

    async def get(self, entry_id: str) -> AuditEntry:
        """One entry of the bound chain."""
        rows = await self._session.fetch(st.audit_get(self._uow.tenant_id, entry_id))
        if not rows:
            raise NotFound(f"audit entry {entry_id!r} not found")
        return from_row(AuditEntry, rows[0])

    async def list(self, query: AuditQuery) -> Page[AuditEntry]:
        """One page of the bound chain's matching entries, newest id first.

        Scoped by ``tenant_id`` (``IS NULL`` for the system chain) rather than by
        ``chain``: the audit indexes lead with ``tenant_id``, so the newest page is
        a backward index scan instead of sorting the whole chain.
        """
        statement = st.list_page(
            schema.hipaa_audit_log,
            None,
            query,
            scope_column="tenant_id",
            scope_value=self._uow.tenant_id,
        )
        rows = await self._session.fetch(statement)
        return page_from_rows([from_row(AuditEntry, r) for r in rows], query.limit)

    async def count(self, query: AuditQuery) -> int:
        """How many entries of the bound chain match."""
        statement = st.count(
            schema.hipaa_audit_log,
            None,
            query,
            scope_column="tenant_id",
            scope_value=self._uow.tenant_id,
        )
        rows = await self._session.fetch(statement)
        return int(next(iter(rows[0].values())))

    async def chain(self, after_sequence: int = 0, limit: int = 1000) -> Sequence[AuditEntry]:
        """The bound chain in sequence order, after ``after_sequence``."""
        rows = await self._session.fetch(st.audit_chain(self._uow.tenant_id, after_sequence, limit))
        return [audit_entry_from_row(r) for r in rows]


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


class AnalyticsRepository(_Base):
    """Report aggregates of the bound location."""

    async def metric(self, query: MetricQuery) -> Sequence[MetricRow]:
        """Compute one metric (see :mod:`crm_gateway_sql.analytics`)."""
        return await compute(self._session, self._require_tenant(), query)


class OutboxRepository(_Base):
    """The transactional outbox."""

    def _consumer(self) -> None:
        if self._uow.tenant_id is not None:
            raise PermissionDenied("the outbox is consumed through a unit of work with no location")

    async def add(self, event: DomainEvent) -> None:
        """Queue an event of the bound location; visible once the unit of work commits."""
        if event.tenant_id != self._uow.tenant_id:
            raise PermissionDenied("an event must belong to the unit of work's location")
        message = OutboxMessage(event=event, available_at=event.occurred_at)
        try:
            await self._session.execute(st.insert(schema.outbox, outbox_row(message)))
        except Conflict:
            raise Conflict(f"an outbox message with id {event.id!r} already exists") from None

    async def claim(
        self, now: datetime, limit: int = 100, lease_seconds: float = 60.0
    ) -> Sequence[OutboxMessage]:
        """Lease due pending messages, oldest event first; skips ones another consumer holds."""
        self._consumer()
        until = now + timedelta(seconds=lease_seconds)
        statement = st.outbox_claim(to_micros(now), to_micros(until), limit)
        rows = await self._session.fetch(statement)
        messages = [outbox_from_row(r) for r in rows]
        return sorted(messages, key=lambda m: m.event.id)

    async def complete(self, event_ids: Sequence[str]) -> None:
        """Mark messages done."""
        self._consumer()
        wanted = sorted(set(event_ids))
        if not wanted:
            return
        changed = await self._session.execute(st.outbox_complete(wanted))
        if changed != len(wanted):
            raise NotFound("an outbox message to complete was not found")

    async def fail(
        self, event_id: str, error: str, retry_at: datetime, *, dead: bool = False
    ) -> None:
        """Record a failed attempt: pending again at ``retry_at``, or dead."""
        self._consumer()
        statement = st.outbox_fail(event_id, error, to_micros(retry_at), dead=dead)
        if await self._session.execute(statement) == 0:
            raise NotFound(f"outbox message {event_id!r} not found")

    async def list_status(self, status: str, limit: int = 100) -> Sequence[OutboxMessage]:
        """Messages in one status, oldest event first."""
        self._consumer()
        try:
            wanted = OutboxStatus(status)
        except ValueError:
            raise ValidationError("status", f"{status!r} is not an outbox status") from None
        rows = await self._session.fetch(st.outbox_by_status(wanted.value, limit))
        return [outbox_from_row(r) for r in rows]


__all__ = [
    "AnalyticsRepository",
    "AuditRepository",
    "BookingRepository",
    "ContactRepository",
    "CrudRepository",
    "IdempotencyRepository",
    "IpRuleRepository",
    "LocationRepository",
    "MembershipRepository",
    "OutboxRepository",
    "PermissionRepository",
    "SessionRepository",
    "UserRepository",
    "WebhookReceiptRepository",
]
