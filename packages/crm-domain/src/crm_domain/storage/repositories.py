"""Every repository of the gateway port, written once over a :class:`TableStore`.

:class:`StoredUnitOfWork` is a complete
:class:`~crm_domain.ports.gateway.UnitOfWork` given a table store: the
in-memory, SQL, D1 and object-store gateways all hand theirs to it.  The
rules every gateway shares live here:

**Tenancy.** Tenant-owned repositories (``ip_rules``, ``contacts``,
``touchpoints``, ``bookings``, ``tasks``, ``sms``, ``campaigns``,
``deliveries``, ``automations``, ``suppressions``, ``idempotency``, ``audit``, ``analytics``)
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
naming the column.  The store enforces them.

**Lists** filter with :func:`crm_domain.queries.matches`, are ordered by ``id``
descending, start after ``query.after_id`` and hold at most ``query.limit``
items; ``count`` ignores paging.

**Audit** ``append`` takes the chain's lock until the unit of work ends (as a
row lock on the chain head would), reads the head once, assigns ``sequence``,
``prev_hash`` and ``hash`` with :func:`crm_domain.audit_chain.chained` and
stores a whole batch with one :meth:`TableStore.append_audit`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast

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
    Suppression,
    SuppressionChannel,
    Task,
    Touchpoint,
    WebhookReceipt,
)
from crm_domain.entities.session import require_held, require_reservation
from crm_domain.errors import Conflict, NotFound, PermissionDenied, ValidationError
from crm_domain.metrics import compute_metric
from crm_domain.pagination import Page
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
    SuppressionQuery,
    TaskQuery,
    TouchpointQuery,
    UserQuery,
)
from crm_domain.relations import TABLES
from crm_domain.storage.store import TableStore

if TYPE_CHECKING:
    from crm_domain.ports.gateway import UnitOfWork

E = TypeVar("E")
Q = TypeVar("Q", bound=ListQuery)


class _Part:
    """What every repository holds: the unit of work (its store and its location)."""

    __slots__ = ("_store", "_uow")

    def __init__(self, uow: StoredUnitOfWork) -> None:
        self._uow = uow
        self._store = uow.store

    def _require_tenant(self) -> str:
        if self._uow.tenant_id is None:
            raise PermissionDenied("this repository needs a unit of work bound to a location")
        return self._uow.tenant_id


class TableRepository(_Part, Generic[E, Q]):
    """add/get/update/delete/list/count over one table, scoped when tenant-owned."""

    __slots__ = ("_name", "_table")

    def __init__(self, uow: StoredUnitOfWork, table: str) -> None:
        super().__init__(uow)
        self._table = TABLES[table]
        self._name = table

    def _scope(self) -> str | None:
        """The bound location for tenant-owned tables (refusing an unbound unit of work)."""
        if not self._table.tenant_owned:
            return None
        return self._require_tenant()

    def _check_owner(self, entity: Any) -> str | None:
        tenant = self._scope()
        if tenant is not None and entity.tenant_id != tenant:
            raise PermissionDenied(f"this {self._table.noun} belongs to another location")
        return tenant

    async def add(self, entity: E) -> None:
        """Insert; ``Conflict`` on a duplicate id or unique key."""
        self._check_owner(entity)
        await self._store.insert(self._name, entity)

    async def get(self, entity_id: str) -> E:
        """The entity, or ``NotFound`` (also for another location's id)."""
        row = await self._store.get(self._name, entity_id, self._scope())
        if row is None:
            raise NotFound(f"{self._table.noun} {entity_id!r} not found")
        return cast("E", row)

    async def update(self, entity: E) -> None:
        """Replace the stored entity with the same id."""
        tenant = self._check_owner(entity)
        if not await self._store.update(self._name, entity, tenant):
            raise NotFound(f"{self._table.noun} {cast('Any', entity).id!r} not found")

    async def replace_if_unchanged(self, expected: E, new: E) -> bool:
        """Replace ``expected`` by ``new`` only if the stored row still equals ``expected``.

        ``False`` when another unit of work changed it first; a race that both
        read the same row is settled by the store (the loser gets ``False`` here
        or ``Conflict`` at commit), so at most one of them makes the change.
        """
        self._check_owner(expected)
        self._check_owner(new)
        return await self._store.compare_and_set(self._name, expected, new)

    async def delete(self, entity_id: str) -> None:
        """Delete, applying the relations' on-delete rules."""
        if not await self._store.delete(self._name, entity_id, self._scope()):
            raise NotFound(f"{self._table.noun} {entity_id!r} not found")

    async def list(self, query: Q) -> Page[E]:
        """One page of matching entities, newest id first."""
        return await self._store.page(self._name, self._scope(), query)

    async def count(self, query: Q) -> int:
        """How many entities match (paging ignored)."""
        return await self._store.count(self._name, self._scope(), query)

    async def _find(self, equal: Mapping[str, Any], what: str) -> Sequence[Any]:
        tenant = self._scope()
        if tenant is not None:
            equal = {"tenant_id": tenant, **equal}
        return sorted(await self._store.find(self._name, equal), key=lambda r: r.id)

    async def _find_one(self, equal: Mapping[str, Any], what: str) -> E:
        for row in await self._find(equal, what):
            return cast("E", row)
        raise NotFound(f"{self._table.noun} with {what} not found")


class LocationRepository(TableRepository[Location, LocationQuery]):
    """Locations (global)."""

    async def get_by_code(self, code: str) -> Location:
        """The location with this code."""
        return await self._find_one({"code": code}, f"code {code!r}")


class UserRepository(TableRepository[StaffUser, UserQuery]):
    """Staff users (global)."""

    async def get_by_email(self, email: str) -> StaffUser:
        """The user with this email (compared normalised: trimmed, lower-cased)."""
        return await self._find_one({"email": email.strip().lower()}, "this email")


class MembershipRepository(TableRepository[Membership, MembershipQuery]):
    """Memberships (global)."""

    async def for_user(self, user_id: str) -> Sequence[Membership]:
        """Every membership of the user, ordered by id."""
        return await self._find({"user_id": user_id}, "this user")


class IpRuleRepository(TableRepository[IpRule, IpRuleQuery]):
    """A location's IP allowlist."""

    async def active(self) -> Sequence[IpRule]:
        """The location's active rules, ordered by id."""
        return await self._find({"is_active": True}, "active")


class ContactRepository(TableRepository[Contact, ContactQuery]):
    """A location's contacts, with the bulk path."""

    async def add_many(self, contacts: Sequence[Contact]) -> None:
        """Insert every contact or none (the store's bulk insert)."""
        tenant = self._require_tenant()
        for contact in contacts:  # one comparison per row: this is the bulk-import hot path
            if contact.tenant_id != tenant:
                raise PermissionDenied("this contact belongs to another location")
        if contacts:
            await self._store.insert_many(self._name, contacts)


class BookingRepository(TableRepository[Booking, BookingQuery]):
    """A location's bookings."""

    async def get_by_external_id(self, external_id: str) -> Booking:
        """The booking with the sender's id."""
        return await self._find_one({"external_id": external_id}, "this external id")


class SuppressionRepository(TableRepository[Suppression, SuppressionQuery]):
    """A location's suppression list."""

    async def find_address(
        self, channel: SuppressionChannel | str, address: str
    ) -> Suppression | None:
        """The location's suppression of ``address`` (as stored) on ``channel``, or ``None``."""
        rows = await self._find(
            {"channel": SuppressionChannel(channel), "address": address}, "this address"
        )
        return cast("Suppression | None", rows[0] if rows else None)


class PermissionRepository(_Part):
    """Role grants (global)."""

    async def add(self, permission: Permission) -> None:
        """Store a grant; ``Conflict`` if the role already has it."""
        await self._store.insert("permissions", permission)

    async def remove(self, role: Role, resource: str, action: str) -> None:
        """Remove a grant; ``NotFound`` if absent."""
        wanted = Role(role)
        for row in await self._store.find("permissions", {"role": wanted}):
            if (row.resource.value, row.action.value) == (str(resource), str(action)):
                await self._store.delete("permissions", row.id)
                return
        raise NotFound(f"role {wanted.value} has no grant {resource}:{action}")

    async def for_roles(self, roles: Sequence[Role]) -> Sequence[Permission]:
        """Every grant of any of ``roles``, ordered by id."""
        wanted = {Role(r) for r in roles}
        return [p for p in await self.all() if p.role in wanted]

    async def all(self) -> Sequence[Permission]:
        """Every grant, ordered by id."""
        return sorted(await self._store.find("permissions", {}), key=lambda r: r.id)


class SessionRepository(_Part):
    """Server-side sessions (global)."""

    async def add(self, session: Session) -> None:
        """Store a new session."""
        await self._store.insert("sessions", session)

    async def get(self, session_id: str) -> Session:
        """The session, or ``NotFound``."""
        row = await self._store.get("sessions", session_id)
        if row is None:
            raise NotFound(f"session {session_id!r} not found")
        return cast("Session", row)

    async def _set(self, session_id: str, changes: Mapping[str, datetime]) -> None:
        # Only the one column (a SQL store sets just it): a touch racing a revoke
        # must not bring the session back.
        if not await self._store.patch("sessions", session_id, changes):
            raise NotFound(f"session {session_id!r} not found")

    async def touch(self, session_id: str, seen_at: datetime) -> None:
        """Record activity."""
        await self._set(session_id, {"last_seen_at": seen_at})

    async def revoke(self, session_id: str, revoked_at: datetime) -> None:
        """End the session for good."""
        await self._set(session_id, {"revoked_at": revoked_at})


class WebhookReceiptRepository(_Part):
    """Processed webhook events (global)."""

    async def record(self, receipt: WebhookReceipt) -> bool:
        """Store the receipt; ``False`` when (source, event_id) was seen before."""
        return await self._store.insert_new("webhook_receipts", receipt)


class IdempotencyRepository(_Part):
    """Stored idempotent answers of the location (see the port for the protocol)."""

    async def get(self, key: str, user_id: str) -> IdempotencyRecord | None:
        """The record for this key and user in the bound location, if any."""
        tenant = self._require_tenant()
        row = await self._store.get("idempotency", (tenant, key, user_id))
        return cast("IdempotencyRecord | None", row)

    def _check_owner(self, reservation: IdempotencyRecord) -> None:
        if reservation.tenant_id != self._require_tenant():
            raise PermissionDenied("this idempotency record belongs to another location")

    async def reserve(
        self, reservation: IdempotencyRecord, *, stale_before: datetime | None = None
    ) -> None:
        """Store a pending reservation, or take over a stale one.

        The take-over is a compare-and-set on exactly the stale record read:
        of two requests taking it over at once, one gets ``Conflict``.
        """
        self._check_owner(reservation)
        require_reservation(reservation)
        stored = await self.get(reservation.key, reservation.user_id)
        if stored is None:
            try:
                await self._store.insert("idempotency", reservation)
            except Conflict:
                raise Conflict("this idempotency key is already stored for this user") from None
        elif not stored.is_stale(stale_before):
            raise Conflict("this idempotency key is already stored for this user")
        elif not await self._store.compare_and_set("idempotency", stored, reservation):
            raise Conflict("this idempotency key was taken over by another request")

    async def _changed(self, reservation: IdempotencyRecord) -> Conflict:
        """Why a compare-and-set on ``reservation`` failed (``require_held``'s words)."""
        require_held(await self.get(reservation.key, reservation.user_id), reservation)
        return Conflict("this Idempotency-Key reservation changed concurrently")

    async def complete(
        self,
        reservation: IdempotencyRecord,
        *,
        status_code: int,
        response_body: str,
        completed_at: datetime,
    ) -> IdempotencyRecord:
        """Store the answer of a reservation that is still held."""
        self._check_owner(reservation)
        done = reservation.completed(
            status_code=status_code, response_body=response_body, completed_at=completed_at
        )
        if not reservation.pending or not await self._store.compare_and_set(
            "idempotency", reservation, done
        ):
            raise await self._changed(reservation)
        return done

    async def release(self, reservation: IdempotencyRecord) -> None:
        """Delete a reservation that is still held."""
        self._check_owner(reservation)
        if not reservation.pending or not await self._store.compare_and_set(
            "idempotency", reservation, None
        ):
            raise await self._changed(reservation)


class AuditRepository(_Part):
    """The audit chain of the bound location (the system chain when unbound)."""

    async def append(self, entry: AuditEntry) -> AuditEntry:
        """Append one entry under the chain's lock, assigning sequence and hashes."""
        return (await self.append_many((entry,)))[0]

    async def append_many(self, entries: Sequence[AuditEntry]) -> Sequence[AuditEntry]:
        """Append in order, all or nothing: one lock, one head read, one store call."""
        chain = self._uow.tenant_id
        for entry in entries:
            if entry.tenant_id != chain:
                raise PermissionDenied("an audit entry must belong to the unit of work's location")
        if not entries:
            self._store.check_open()
            return []
        await self._store.lock_chain(chain)
        previous = await self._store.chain_head(chain)
        stored: list[AuditEntry] = []
        for entry in entries:
            previous = chained(entry, previous)
            stored.append(previous)
        await self._store.append_audit(stored)
        return stored

    async def get(self, entry_id: str) -> AuditEntry:
        """One entry of the bound chain."""
        entry = await self._store.audit_get(self._uow.tenant_id, entry_id)
        if entry is None:
            raise NotFound(f"audit entry {entry_id!r} not found")
        return entry

    async def list(self, query: AuditQuery) -> Page[AuditEntry]:
        """One page of the bound chain's matching entries, newest id first."""
        return await self._store.audit_page(self._uow.tenant_id, query)

    async def count(self, query: AuditQuery) -> int:
        """How many entries of the bound chain match."""
        return await self._store.audit_count(self._uow.tenant_id, query)

    async def chain(self, after_sequence: int = 0, limit: int = 1000) -> Sequence[AuditEntry]:
        """The bound chain in sequence order, after ``after_sequence``."""
        return await self._store.audit_chain(self._uow.tenant_id, after_sequence, limit)


class AnalyticsRepository(_Part):
    """Report aggregates of the bound location."""

    async def metric(self, query: MetricQuery) -> Sequence[MetricRow]:
        """Compute one metric: the store's pushdown, else :mod:`crm_domain.metrics` over rows."""
        tenant = self._require_tenant()
        pushed = await self._store.metric(tenant, query)
        if pushed is not None:
            return pushed
        mine = {"tenant_id": tenant}
        return compute_metric(
            query,
            tenant_id=tenant,
            contacts=await self._store.find("contacts", mine),
            bookings=await self._store.find("bookings", mine),
            sms=await self._store.find("sms", mine),
            tasks=await self._store.find("tasks", mine),
        )


class OutboxRepository(_Part):
    """The transactional outbox."""

    def _consumer(self) -> None:
        if self._uow.tenant_id is not None:
            raise PermissionDenied("the outbox is consumed through a unit of work with no location")
        self._store.check_open()

    async def add(self, event: DomainEvent) -> None:
        """Queue an event of the bound location; visible once the unit of work commits."""
        if event.tenant_id != self._uow.tenant_id:
            raise PermissionDenied("an event must belong to the unit of work's location")
        message = OutboxMessage(event=event, available_at=event.occurred_at)
        await self._store.outbox_add(message)

    async def claim(
        self, now: datetime, limit: int = 100, lease_seconds: float = 60.0
    ) -> Sequence[OutboxMessage]:
        """Lease due pending messages, oldest event first; skips ones another consumer holds."""
        self._consumer()
        until = now + timedelta(seconds=lease_seconds)
        claimed = await self._store.outbox_claim(now, until, limit)
        return sorted(claimed, key=lambda m: m.event.id)

    async def complete(self, event_ids: Sequence[str]) -> None:
        """Mark messages done."""
        self._consumer()
        wanted = sorted(set(event_ids))
        if wanted and not await self._store.outbox_complete(wanted):
            raise NotFound("an outbox message to complete was not found")

    async def fail(
        self, event_id: str, error: str, retry_at: datetime, *, dead: bool = False
    ) -> None:
        """Record a failed attempt: pending again at ``retry_at``, or dead."""
        self._consumer()
        if not await self._store.outbox_fail(event_id, error, retry_at, dead=dead):
            raise NotFound(f"outbox message {event_id!r} not found")

    async def list_status(self, status: str, limit: int = 100) -> Sequence[OutboxMessage]:
        """Messages in one status, oldest event first."""
        self._consumer()
        try:
            wanted = OutboxStatus(status)
        except ValueError:
            raise ValidationError("status", f"{status!r} is not an outbox status") from None
        return await self._store.outbox_list(wanted, limit)


class StoredUnitOfWork:
    """A :class:`~crm_domain.ports.gateway.UnitOfWork` over one :class:`TableStore`.

    Repositories are made on first use: a request touches two or three of the
    twenty, and building all of them was a measurable share of a point read.
    """

    def __init__(self, store: TableStore, tenant_id: str | None) -> None:
        self.tenant_id = tenant_id
        self.store = store

    @functools.cached_property
    def locations(self) -> LocationRepository:
        """Locations (global)."""
        return LocationRepository(self, "locations")

    @functools.cached_property
    def users(self) -> UserRepository:
        """Staff users (global)."""
        return UserRepository(self, "users")

    @functools.cached_property
    def memberships(self) -> MembershipRepository:
        """Memberships (global)."""
        return MembershipRepository(self, "memberships")

    @functools.cached_property
    def permissions(self) -> PermissionRepository:
        """Role grants (global)."""
        return PermissionRepository(self)

    @functools.cached_property
    def sessions(self) -> SessionRepository:
        """Sessions (global)."""
        return SessionRepository(self)

    @functools.cached_property
    def webhook_receipts(self) -> WebhookReceiptRepository:
        """Processed webhook events (global)."""
        return WebhookReceiptRepository(self)

    @functools.cached_property
    def ip_rules(self) -> IpRuleRepository:
        """The location's IP allowlist."""
        return IpRuleRepository(self, "ip_rules")

    @functools.cached_property
    def contacts(self) -> ContactRepository:
        """The location's contacts."""
        return ContactRepository(self, "contacts")

    @functools.cached_property
    def touchpoints(self) -> TableRepository[Touchpoint, TouchpointQuery]:
        """The location's touchpoints."""
        return TableRepository(self, "touchpoints")

    @functools.cached_property
    def bookings(self) -> BookingRepository:
        """The location's bookings."""
        return BookingRepository(self, "bookings")

    @functools.cached_property
    def tasks(self) -> TableRepository[Task, TaskQuery]:
        """The location's tasks."""
        return TableRepository(self, "tasks")

    @functools.cached_property
    def sms(self) -> TableRepository[SmsMessage, SmsQuery]:
        """The location's SMS messages."""
        return TableRepository(self, "sms")

    @functools.cached_property
    def campaigns(self) -> TableRepository[EmailCampaign, CampaignQuery]:
        """The location's email campaigns."""
        return TableRepository(self, "campaigns")

    @functools.cached_property
    def deliveries(self) -> TableRepository[CampaignDelivery, DeliveryQuery]:
        """The location's campaign deliveries."""
        return TableRepository(self, "deliveries")

    @functools.cached_property
    def automations(self) -> TableRepository[AutomationRule, AutomationQuery]:
        """The location's automation rules."""
        return TableRepository(self, "automations")

    @functools.cached_property
    def suppressions(self) -> SuppressionRepository:
        """The location's suppression list."""
        return SuppressionRepository(self, "suppressions")

    @functools.cached_property
    def idempotency(self) -> IdempotencyRepository:
        """Stored idempotent answers of the location."""
        return IdempotencyRepository(self)

    @functools.cached_property
    def audit(self) -> AuditRepository:
        """The location's audit chain (the system chain when unbound)."""
        return AuditRepository(self)

    @functools.cached_property
    def analytics(self) -> AnalyticsRepository:
        """Report aggregates of the location."""
        return AnalyticsRepository(self)

    @functools.cached_property
    def outbox(self) -> OutboxRepository:
        """The transactional outbox."""
        return OutboxRepository(self)

    async def commit(self) -> None:
        """Make every change durable, atomically (``Conflict`` and none on a race)."""
        await self.store.commit()

    async def rollback(self) -> None:
        """Discard every change."""
        await self.store.rollback()

    async def __aenter__(self) -> Self:
        self.store.check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()


__all__ = [
    "AnalyticsRepository",
    "AuditRepository",
    "BookingRepository",
    "ContactRepository",
    "IdempotencyRepository",
    "IpRuleRepository",
    "LocationRepository",
    "MembershipRepository",
    "OutboxRepository",
    "PermissionRepository",
    "SessionRepository",
    "StoredUnitOfWork",
    "SuppressionRepository",
    "TableRepository",
    "UserRepository",
    "WebhookReceiptRepository",
]


if TYPE_CHECKING:  # mypy proves the class satisfies the port structurally

    def _is_uow(uow: StoredUnitOfWork) -> UnitOfWork:
        return uow
