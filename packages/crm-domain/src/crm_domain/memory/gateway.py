"""The in-memory :class:`~crm_domain.ports.gateway.DatabaseGateway`.

It is the reference implementation of the gateway port: every other gateway
must behave like it (the conformance kit :mod:`crm_domain.testing` checks it).
The shared semantics:

**Tenancy.** Tenant-owned repositories (``ip_rules``, ``contacts``,
``touchpoints``, ``bookings``, ``tasks``, ``sms``, ``campaigns``,
``deliveries``, ``automations``, ``idempotency``, ``audit``, ``analytics``)
see only the rows of the unit of work's location: ``get``/``update``/
``delete`` of another location's id raise ``NotFound``; ``list``/``count`` see
only the bound location; adding an entity of another location raises
``PermissionDenied``; any use on a unit of work bound to no location raises
``PermissionDenied`` (except ``audit``, which then works on the system chain of
entries whose ``tenant_id`` is ``None``).  ``locations``, ``users``,
``memberships``, ``permissions``, ``sessions`` and ``webhook_receipts`` are
global.  The outbox accepts events of the bound location (or, unbound, events
with no location); ``claim``/``complete``/``fail``/``list_status`` are the
consumer's and need an unbound unit of work.

**Keys.** ``add`` raises ``Conflict`` on a duplicate id or unique key (see
:mod:`crm_domain.relations` for the list, and for what deleting a
referenced row does); a reference to a missing row raises ``ValidationError``
naming the column.

**Lists** filter with :func:`crm_domain.queries.matches`, are ordered by ``id``
descending, start after ``query.after_id`` and hold at most ``query.limit``
items; ``count`` ignores paging.

**Units of work** are read committed: changes are invisible to others until
``commit()``, which is atomic, and are discarded by ``rollback()`` or by leaving
the ``async with`` block without committing.  Commits are serialised by a
lock, and re-check keys against what others committed meanwhile.

**Audit** ``append`` takes the chain's lock until the unit of work ends (as a
row lock on the chain head would), then assigns ``sequence``, ``prev_hash``
and ``hash`` with :func:`crm_domain.audit_chain.chained`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast

import attrs

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
from crm_domain.memory._store import Store, Tx
from crm_domain.metrics import compute_metric
from crm_domain.pagination import Page, page_from_rows
from crm_domain.ports.analytics import MetricQuery, MetricRow
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
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
from crm_domain.relations import TABLES

E = TypeVar("E")
Q = TypeVar("Q", bound=ListQuery)

#: How long an audit append waits for another unit of work holding the same chain.
CHAIN_LOCK_TIMEOUT = 10.0


def _page(rows: list[Any], query: ListQuery) -> Page[Any]:
    """Order ``rows`` id-descending, skip to the cursor and cut one page."""
    rows.sort(key=lambda r: r.id, reverse=True)
    after = query.after_id
    if after is not None:
        rows = [r for r in rows if r.id < after]
    return page_from_rows(rows[: query.limit + 1], query.limit)


class _Repo(Generic[E, Q]):
    """CRUD over one table, scoped to the unit of work's location when tenant-owned."""

    def __init__(self, uow: InMemoryUnitOfWork, table: str) -> None:
        self._uow = uow
        self._table = TABLES[table]

    @property
    def _tx(self) -> Tx:
        return self._uow._active_tx()

    def _out(self, row: Any) -> Any:
        return copy.deepcopy(row) if self._table.mutable else row

    def _scope(self) -> str | None:
        """The bound location for tenant-owned tables (refusing an unbound unit of work)."""
        if not self._table.tenant_owned:
            return None
        return self._uow._require_tenant()

    def _visible(self, row: Any, tenant: str | None) -> bool:
        return tenant is None or row.tenant_id == tenant

    def _check_owner(self, entity: Any) -> None:
        tenant = self._scope()
        if tenant is not None and entity.tenant_id != tenant:
            raise PermissionDenied(f"this {self._table.noun} belongs to another location")

    async def add(self, entity: E) -> None:
        """Insert; ``Conflict`` on a duplicate id or unique key."""
        self._check_owner(entity)
        self._tx.insert(self._table.name, entity)

    async def get(self, entity_id: str) -> E:
        """The entity, or ``NotFound`` (also for another location's id)."""
        tenant = self._scope()
        row = self._tx.get(self._table.name, entity_id)
        if row is None or not self._visible(row, tenant):
            raise NotFound(f"{self._table.noun} {entity_id!r} not found")
        return cast("E", self._out(row))

    async def update(self, entity: E) -> None:
        """Replace the stored entity with the same id."""
        self._check_owner(entity)
        await self.get(cast("Any", entity).id)
        self._tx.update(self._table.name, entity)

    async def delete(self, entity_id: str) -> None:
        """Delete, applying the schema's on-delete rules."""
        await self.get(entity_id)
        self._tx.delete(self._table.name, entity_id)

    def _matching(self, query: ListQuery, extra: Callable[[Any], bool] | None = None) -> list[Any]:
        tenant = self._scope()
        return [
            row
            for row in self._tx.rows(self._table.name)
            if self._visible(row, tenant) and matches(query, row) and (extra is None or extra(row))
        ]

    async def list(self, query: Q) -> Page[E]:
        """One page of matching entities, newest id first."""
        page = _page(self._matching(query), query)
        return Page(tuple(self._out(r) for r in page.items), page.next_cursor)

    async def count(self, query: Q) -> int:
        """How many entities match (paging ignored)."""
        return len(self._matching(query))

    def _find(self, predicate: Callable[[Any], bool], what: str) -> E:
        tenant = self._scope()
        for row in self._tx.rows(self._table.name):
            if self._visible(row, tenant) and predicate(row):
                return cast("E", self._out(row))
        raise NotFound(f"{self._table.noun} with {what} not found")


class _Locations(_Repo[Location, LocationQuery]):
    async def get_by_code(self, code: str) -> Location:
        """The location with this code."""
        return self._find(lambda r: r.code == code, f"code {code!r}")


class _Users(_Repo[StaffUser, UserQuery]):
    async def get_by_email(self, email: str) -> StaffUser:
        """The user with this email (compared normalised: trimmed, lower-cased)."""
        wanted = email.strip().lower()
        return self._find(lambda r: r.email == wanted, "this email")


class _Memberships(_Repo[Membership, MembershipQuery]):
    async def for_user(self, user_id: str) -> Sequence[Membership]:
        """Every membership of the user, ordered by id."""
        rows = [r for r in self._tx.rows("memberships") if r.user_id == user_id]
        return sorted(rows, key=lambda r: r.id)


class _IpRules(_Repo[IpRule, IpRuleQuery]):
    async def active(self) -> Sequence[IpRule]:
        """The location's active rules, ordered by id."""
        return sorted(self._matching(IpRuleQuery(is_active=True)), key=lambda r: r.id)


class _Contacts(_Repo[Contact, ContactQuery]):
    async def add_many(self, contacts: Sequence[Contact]) -> None:
        """Insert all contacts or none."""
        saved = self._tx.savepoint()
        try:
            for contact in contacts:
                await self.add(contact)
        except BaseException:
            self._tx.restore(saved)
            raise


class _Bookings(_Repo[Booking, BookingQuery]):
    async def get_by_external_id(self, external_id: str) -> Booking:
        """The booking with the sender's id."""
        return self._find(lambda r: r.external_id == external_id, "this external id")


class _Permissions:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, permission: Permission) -> None:
        """Store a grant; ``Conflict`` if the role already has it."""
        self._uow._active_tx().insert("permissions", permission)

    async def remove(self, role: Role, resource: str, action: str) -> None:
        """Remove a grant; ``NotFound`` if absent."""
        tx = self._uow._active_tx()
        for row in tx.rows("permissions"):
            if (row.role.value, row.resource.value, row.action.value) == (
                Role(role).value,
                str(resource),
                str(action),
            ):
                tx.delete("permissions", row.id)
                return
        raise NotFound(f"role {Role(role).value} has no grant {resource}:{action}")

    async def for_roles(self, roles: Sequence[Role]) -> Sequence[Permission]:
        """Every grant of any of ``roles``, ordered by id."""
        wanted = {Role(r) for r in roles}
        rows = [r for r in self._uow._active_tx().rows("permissions") if r.role in wanted]
        return sorted(rows, key=lambda r: r.id)

    async def all(self) -> Sequence[Permission]:
        """Every grant, ordered by id."""
        return sorted(self._uow._active_tx().rows("permissions"), key=lambda r: r.id)


class _Sessions:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, session: Session) -> None:
        """Store a new session."""
        self._uow._active_tx().insert("sessions", session)

    async def get(self, session_id: str) -> Session:
        """The session, or ``NotFound``."""
        row = self._uow._active_tx().get("sessions", session_id)
        if row is None:
            raise NotFound(f"session {session_id!r} not found")
        return cast("Session", row)

    async def touch(self, session_id: str, seen_at: datetime) -> None:
        """Record activity."""
        session = await self.get(session_id)
        self._uow._active_tx().update("sessions", attrs.evolve(session, last_seen_at=seen_at))

    async def revoke(self, session_id: str, revoked_at: datetime) -> None:
        """End the session for good."""
        session = await self.get(session_id)
        self._uow._active_tx().update("sessions", attrs.evolve(session, revoked_at=revoked_at))


class _WebhookReceipts:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def record(self, receipt: WebhookReceipt) -> bool:
        """Store the receipt; ``False`` when (source, event_id) was seen before."""
        tx = self._uow._active_tx()
        if tx.get("webhook_receipts", (receipt.source, receipt.event_id)) is not None:
            return False
        tx.insert("webhook_receipts", receipt)
        return True


class _Idempotency:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def get(self, key: str, user_id: str) -> IdempotencyRecord | None:
        """The record for this key and user in the bound location, if any."""
        tenant = self._uow._require_tenant()
        row = self._uow._active_tx().get("idempotency", (tenant, key, user_id))
        return cast("IdempotencyRecord | None", row)

    def _held(self, reservation: IdempotencyRecord) -> tuple[Tx, tuple[str, str, str]]:
        tenant = self._uow._require_tenant()
        if reservation.tenant_id != tenant:
            raise PermissionDenied("this idempotency record belongs to another location")
        return self._uow._active_tx(), (tenant, reservation.key, reservation.user_id)

    async def reserve(
        self, reservation: IdempotencyRecord, *, stale_before: datetime | None = None
    ) -> None:
        """Store a pending reservation, or take over a stale one (see the port)."""
        tx, key = self._held(reservation)
        require_reservation(reservation)
        stored = cast("IdempotencyRecord | None", tx.get("idempotency", key))
        if stored is None:
            tx.insert("idempotency", reservation)
        elif stored.is_stale(stale_before):
            tx.expect("idempotency", key, stored)
            tx.update("idempotency", reservation)
        else:
            raise Conflict("this idempotency key is already stored for this user")

    async def complete(
        self,
        reservation: IdempotencyRecord,
        *,
        status_code: int,
        response_body: str,
        completed_at: datetime,
    ) -> IdempotencyRecord:
        """Store the answer of a reservation that is still held (see the port)."""
        tx, key = self._held(reservation)
        stored = require_held(tx.get("idempotency", key), reservation)
        done = stored.completed(
            status_code=status_code, response_body=response_body, completed_at=completed_at
        )
        tx.expect("idempotency", key, stored)
        tx.update("idempotency", done)
        return done

    async def release(self, reservation: IdempotencyRecord) -> None:
        """Delete a reservation that is still held (see the port)."""
        tx, key = self._held(reservation)
        stored = require_held(tx.get("idempotency", key), reservation)
        tx.expect("idempotency", key, stored)
        tx.delete("idempotency", key)


class _Audit:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def append(self, entry: AuditEntry) -> AuditEntry:
        """Append to the entry's chain, assigning sequence and hashes."""
        uow = self._uow
        tx = uow._active_tx()
        if entry.tenant_id != uow.tenant_id:
            raise PermissionDenied("an audit entry must belong to the unit of work's location")
        if entry.tenant_id is not None and tx.get("locations", entry.tenant_id) is None:
            raise ValidationError("tenant_id", f"no location {entry.tenant_id!r}")
        if entry.id in tx.store.audit_by_id or any(e.id == entry.id for e in tx.audit):
            raise Conflict(f"an audit entry with id {entry.id!r} already exists")
        await tx.lock_chain(entry.tenant_id, uow.chain_lock_timeout)
        stored = chained(entry, tx.chain_head(entry.tenant_id))
        tx.audit.append(stored)
        return stored

    async def append_many(self, entries: Sequence[AuditEntry]) -> Sequence[AuditEntry]:
        """Append in order, all or nothing."""
        tx = self._uow._active_tx()
        saved = tx.savepoint()
        try:
            return [await self.append(e) for e in entries]
        except BaseException:
            tx.restore(saved)
            raise

    def _entries(self) -> list[AuditEntry]:
        return self._uow._active_tx().chain_entries(self._uow.tenant_id)

    async def get(self, entry_id: str) -> AuditEntry:
        """One entry of the bound chain."""
        for entry in self._entries():
            if entry.id == entry_id:
                return entry
        raise NotFound(f"audit entry {entry_id!r} not found")

    async def list(self, query: AuditQuery) -> Page[AuditEntry]:
        """One page of the bound chain's matching entries, newest id first."""
        return _page([e for e in self._entries() if matches(query, e)], query)

    async def count(self, query: AuditQuery) -> int:
        """How many entries of the bound chain match."""
        return sum(1 for e in self._entries() if matches(query, e))

    async def chain(self, after_sequence: int = 0, limit: int = 1000) -> Sequence[AuditEntry]:
        """The bound chain in sequence order, after ``after_sequence``."""
        return [e for e in self._entries() if e.sequence > after_sequence][:limit]


class _Analytics:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def metric(self, query: MetricQuery) -> Sequence[MetricRow]:
        """Compute ``query`` over the bound location (see :mod:`crm_domain.metrics`)."""
        tenant = self._uow._require_tenant()
        tx = self._uow._active_tx()

        def mine(table: str) -> list[Any]:
            return [r for r in tx.rows(table) if r.tenant_id == tenant]

        return compute_metric(
            query,
            tenant_id=tenant,
            contacts=mine("contacts"),
            bookings=mine("bookings"),
            sms=mine("sms"),
            tasks=mine("tasks"),
        )


class _Outbox:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    def _consumer_tx(self) -> Tx:
        if self._uow.tenant_id is not None:
            raise PermissionDenied("the outbox is consumed through a unit of work with no location")
        return self._uow._active_tx()

    async def add(self, event: DomainEvent) -> None:
        """Queue an event of the bound location; visible once the unit of work commits."""
        if event.tenant_id != self._uow.tenant_id:
            raise PermissionDenied("an event must belong to the unit of work's location")
        message = OutboxMessage(event=event, available_at=event.occurred_at)
        self._uow._active_tx().insert("outbox", message)

    def _messages(self, tx: Tx, status: OutboxStatus) -> list[OutboxMessage]:
        rows = [m for m in tx.rows("outbox") if m.status is status]
        return sorted(rows, key=lambda m: m.event.id)

    async def claim(
        self, now: datetime, limit: int = 100, lease_seconds: float = 60.0
    ) -> Sequence[OutboxMessage]:
        """Lease due pending messages, oldest event first; skips ones another uow holds."""
        tx = self._consumer_tx()
        claimed: list[OutboxMessage] = []
        for message in self._messages(tx, OutboxStatus.PENDING):
            if len(claimed) >= limit:
                break
            owner = tx.store.claimed_by.get(message.event.id)
            if owner is not None and owner is not tx:
                continue
            if message.available_at > now:
                continue
            if message.claimed_until is not None and message.claimed_until >= now:
                continue
            leased = attrs.evolve(
                message,
                attempts=message.attempts + 1,
                claimed_until=now + timedelta(seconds=lease_seconds),
            )
            tx.update("outbox", leased)
            tx.store.claimed_by[message.event.id] = tx
            claimed.append(copy.deepcopy(leased))
        return claimed

    def _get(self, tx: Tx, event_id: str) -> OutboxMessage:
        row = tx.get("outbox", event_id)
        if row is None:
            raise NotFound(f"outbox message {event_id!r} not found")
        return cast("OutboxMessage", row)

    async def complete(self, event_ids: Sequence[str]) -> None:
        """Mark messages done."""
        tx = self._consumer_tx()
        for event_id in event_ids:
            message = self._get(tx, event_id)
            tx.update("outbox", attrs.evolve(message, status=OutboxStatus.DONE))

    async def fail(
        self, event_id: str, error: str, retry_at: datetime, *, dead: bool = False
    ) -> None:
        """Record a failed attempt: pending again at ``retry_at``, or dead."""
        tx = self._consumer_tx()
        message = self._get(tx, event_id)
        tx.update(
            "outbox",
            attrs.evolve(
                message,
                status=OutboxStatus.DEAD if dead else OutboxStatus.PENDING,
                available_at=retry_at,
                claimed_until=None,
                last_error=error,
            ),
        )

    async def list_status(self, status: str, limit: int = 100) -> Sequence[OutboxMessage]:
        """Messages in one status, oldest event first."""
        tx = self._consumer_tx()
        try:
            wanted = OutboxStatus(status)
        except ValueError:
            raise ValidationError("status", f"{status!r} is not an outbox status") from None
        return [copy.deepcopy(m) for m in self._messages(tx, wanted)[:limit]]


class InMemoryUnitOfWork:
    """One transaction over the in-memory store; rolls back unless committed."""

    def __init__(self, gateway: InMemoryGateway, tenant_id: str | None) -> None:
        self.tenant_id = tenant_id
        self.chain_lock_timeout = gateway.chain_lock_timeout
        self._gateway = gateway
        self._tx = Tx(gateway._store)
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
        self._audit = _Audit(self)
        self._analytics = _Analytics(self)
        self._outbox = _Outbox(self)

    # -- helpers used by the repositories ---------------------------------

    def _active_tx(self) -> Tx:
        if self._gateway._store.closed:
            raise Unavailable("the in-memory gateway is closed")
        return self._tx

    def _require_tenant(self) -> str:
        if self.tenant_id is None:
            raise PermissionDenied("this repository needs a unit of work bound to a location")
        return self.tenant_id

    # -- repositories -----------------------------------------------------

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
        return self._audit

    @property
    def analytics(self) -> _Analytics:
        """Report aggregates of the location."""
        return self._analytics

    @property
    def outbox(self) -> _Outbox:
        """The transactional outbox."""
        return self._outbox

    # -- transaction ------------------------------------------------------

    async def commit(self) -> None:
        """Apply every pending change at once, or raise ``Conflict`` and apply none."""
        tx = self._active_tx()
        async with self._gateway._store.commit_lock:
            try:
                tx.check_commit()
            except BaseException:
                tx.clear()
                raise
            tx.apply()

    async def rollback(self) -> None:
        """Discard every pending change."""
        self._tx.clear()

    async def __aenter__(self) -> Self:
        self._active_tx()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()


class InMemoryGateway:
    """A :class:`~crm_domain.ports.gateway.DatabaseGateway` that keeps everything in memory.

    Used by the unit tests, the examples and ``CRM_DATABASE_URL=memory://``.
    Data lives as long as the object; nothing is shared between instances.
    """

    def __init__(self, *, chain_lock_timeout: float = CHAIN_LOCK_TIMEOUT) -> None:
        self._store = Store()
        self.chain_lock_timeout = chain_lock_timeout

    def unit_of_work(self, tenant_id: str | None = None) -> InMemoryUnitOfWork:
        """Open a unit of work bound to ``tenant_id`` (or to no location)."""
        if self._store.closed:
            raise Unavailable("the in-memory gateway is closed")
        return InMemoryUnitOfWork(self, tenant_id)

    async def migrate(self) -> None:
        """Nothing to migrate: the in-memory schema is always current."""

    async def close(self) -> None:
        """Refuse further use (data is dropped with the object)."""
        self._store.closed = True


def create_gateway(url: str = "memory://", **options: Any) -> InMemoryGateway:
    """Entry-point factory for ``memory://`` (group ``crm.gateways``, name ``memory``)."""
    if not url.lower().startswith("memory://"):
        raise ValidationError("CRM_DATABASE_URL", f"not a memory:// URL: {url!r}")
    timeout = options.pop("chain_lock_timeout", CHAIN_LOCK_TIMEOUT)
    if options:
        raise ValidationError("options", f"unknown options {sorted(options)}")
    return InMemoryGateway(chain_lock_timeout=float(timeout))


__all__ = ["CHAIN_LOCK_TIMEOUT", "InMemoryGateway", "InMemoryUnitOfWork", "create_gateway"]


if TYPE_CHECKING:  # mypy proves the classes satisfy the ports structurally

    def _is_gateway(gateway: InMemoryGateway) -> DatabaseGateway:
        return gateway

    def _is_uow(uow: InMemoryUnitOfWork) -> UnitOfWork:
        return uow
