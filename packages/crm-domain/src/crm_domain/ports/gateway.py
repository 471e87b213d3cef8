"""The DatabaseGateway port: the single point of access to storage.

A gateway hands out units of work.  A unit of work is bound to one location
(``tenant_id``) or to none: tenant-owned repositories scope every read and write
to that location *inside the gateway*, so a service cannot forget the filter.
Using a tenant-owned repository on a unit of work bound to no tenant raises
:class:`~crm_domain.errors.PermissionDenied`.

A unit of work rolls back unless ``commit()`` is called; data changes, outbox
events and audit entries made through it commit together or not at all.

Every method may raise :class:`~crm_domain.errors.Unavailable` when the backend
is down.  Lists are newest first (``id`` descending) with keyset cursors, and
return at most ``query.limit`` items.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, TypeVar, runtime_checkable

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
    LocationQuery,
    MembershipQuery,
    SmsQuery,
    SuppressionQuery,
    TaskQuery,
    TouchpointQuery,
    UserQuery,
)

E = TypeVar("E")
Q_contra = TypeVar("Q_contra", contravariant=True)


class Repository(Protocol[E, Q_contra]):
    """CRUD shared by every entity repository.

    ``add`` raises ``Conflict`` on a duplicate id or unique key; ``get``,
    ``update`` and ``delete`` raise ``NotFound`` for an unknown id — including an
    id that belongs to another location.
    """

    async def add(self, entity: E) -> None:
        """Insert a new entity."""
        ...

    async def get(self, entity_id: str) -> E:
        """Return the entity with this id."""
        ...

    async def update(self, entity: E) -> None:
        """Replace the stored entity that has ``entity.id``."""
        ...

    async def delete(self, entity_id: str) -> None:
        """Remove the entity with this id."""
        ...

    async def list(self, query: Q_contra) -> Page[E]:
        """Return one page of entities matching ``query``."""
        ...

    async def count(self, query: Q_contra) -> int:
        """Count the entities matching ``query``'s filters (its paging is ignored)."""
        ...


class LocationRepository(Repository[Location, LocationQuery], Protocol):
    """Locations (global)."""

    async def get_by_code(self, code: str) -> Location:
        """Return the location with this code, or raise ``NotFound``."""
        ...


class UserRepository(Repository[StaffUser, UserQuery], Protocol):
    """Staff users (global)."""

    async def get_by_email(self, email: str) -> StaffUser:
        """Return the user with this (normalised) email, or raise ``NotFound``."""
        ...


class MembershipRepository(Repository[Membership, MembershipQuery], Protocol):
    """Memberships (global): unique per (user, location)."""

    async def for_user(self, user_id: str) -> Sequence[Membership]:
        """All memberships of a user, active or not."""
        ...


class PermissionRepository(Protocol):
    """Role grants (global); unique per (role, resource, action)."""

    async def add(self, permission: Permission) -> None:
        """Store a grant; ``Conflict`` if that role already has it."""
        ...

    async def remove(self, role: Role, resource: str, action: str) -> None:
        """Remove a grant; ``NotFound`` if absent."""
        ...

    async def for_roles(self, roles: Sequence[Role]) -> Sequence[Permission]:
        """Every grant of any of ``roles``."""
        ...

    async def all(self) -> Sequence[Permission]:
        """Every grant."""
        ...


class SessionRepository(Protocol):
    """Server-side sessions (global)."""

    async def add(self, session: Session) -> None:
        """Store a new session."""
        ...

    async def get(self, session_id: str) -> Session:
        """Return the session, or raise ``NotFound``."""
        ...

    async def touch(self, session_id: str, seen_at: datetime) -> None:
        """Record activity (idle timeout restarts)."""
        ...

    async def revoke(self, session_id: str, revoked_at: datetime) -> None:
        """End the session for good (logout)."""
        ...


class WebhookReceiptRepository(Protocol):
    """Webhook events already processed (global)."""

    async def record(self, receipt: WebhookReceipt) -> bool:
        """Store the receipt; return ``False`` if (source, event_id) was already recorded."""
        ...


class IpRuleRepository(Repository[IpRule, IpRuleQuery], Protocol):
    """A location's IP allowlist (tenant-owned); unique per (location, cidr)."""

    async def active(self) -> Sequence[IpRule]:
        """Every active rule of the unit of work's location."""
        ...


class ContactRepository(Repository[Contact, ContactQuery], Protocol):
    """Contacts (tenant-owned)."""

    async def add_many(self, contacts: Sequence[Contact]) -> None:
        """Insert many contacts at once (bulk import); all or nothing."""
        ...

    async def replace_if_unchanged(self, expected: Contact, new: Contact) -> bool:
        """Store ``new`` only if the stored contact still equals ``expected``.

        For a change computed outside the write (warmness from a model): one
        made meanwhile — a consent withdrawn by STOP — is never overwritten.
        ``False`` (nothing changed) when the contact changed since it was read.
        """
        ...


class TouchpointRepository(Repository[Touchpoint, TouchpointQuery], Protocol):
    """Touchpoints (tenant-owned)."""


class BookingRepository(Repository[Booking, BookingQuery], Protocol):
    """Bookings (tenant-owned); ``external_id`` unique per location when set."""

    async def get_by_external_id(self, external_id: str) -> Booking:
        """Return the booking with the sender's id, or raise ``NotFound``."""
        ...


class TaskRepository(Repository[Task, TaskQuery], Protocol):
    """Tasks (tenant-owned)."""


class SmsRepository(Repository[SmsMessage, SmsQuery], Protocol):
    """SMS messages (tenant-owned)."""


class CampaignRepository(Repository[EmailCampaign, CampaignQuery], Protocol):
    """Email campaigns (tenant-owned)."""


class DeliveryRepository(Repository[CampaignDelivery, DeliveryQuery], Protocol):
    """Campaign deliveries (tenant-owned); unique per (campaign, contact)."""

    async def replace_if_unchanged(self, expected: CampaignDelivery, new: CampaignDelivery) -> bool:
        """Store ``new`` only if the stored delivery still equals ``expected``.

        The claim of a delivery by one of several sending workers: of two that
        read the same pending delivery, at most one makes the change (the other
        gets ``False``, or ``Conflict`` at commit).
        """
        ...


class AutomationRepository(Repository[AutomationRule, AutomationQuery], Protocol):
    """Automation rules (tenant-owned)."""


class SuppressionRepository(Repository[Suppression, SuppressionQuery], Protocol):
    """A location's suppression list (tenant-owned); unique per (location, channel, address)."""

    async def find_address(
        self, channel: SuppressionChannel | str, address: str
    ) -> Suppression | None:
        """The suppression of ``address`` (normalised as stored) on ``channel``, or ``None``."""
        ...


class IdempotencyRepository(Protocol):
    """``Idempotency-Key`` reservations and stored answers (tenant-owned).

    The key space is (location, user, key).  A POST reserves its key in a
    unit of work of its own that commits *before* the create runs, so the
    store's unique (tenant, user, key) lets exactly one of several concurrent
    first uses win; then it either completes the reservation with its answer
    or, when the create certainly did not happen, releases it.  A
    reservation nobody completed or released stays pending (the create may
    have committed): only ``reserve(..., stale_before=...)`` can take it over.

    ``complete`` and ``release`` take the reservation as ``reserve`` stored it
    and act only while exactly that reservation is stored: a reservation that
    was taken over in the meantime (its ``created_at`` differs) is ``Conflict``.
    Records of another location are invisible (``get``) or refused
    (``PermissionDenied``).
    """

    async def get(self, key: str, user_id: str) -> IdempotencyRecord | None:
        """Return the record (pending or completed) for this key and user, if any."""
        ...

    async def reserve(
        self, reservation: IdempotencyRecord, *, stale_before: datetime | None = None
    ) -> None:
        """Store a ``PENDING`` reservation; ``Conflict`` if the key is taken for that user.

        With ``stale_before``, a stored reservation that is still pending and
        was created before it is replaced by ``reservation`` (a take-over);
        the replacement is conditional on the stale one being unchanged at
        commit, so two concurrent take-overs cannot both win (the loser gets
        ``Conflict``, here or at commit).  A completed record is never
        replaced.  A record that is not pending is a ``ValidationError``.
        """
        ...

    async def complete(
        self,
        reservation: IdempotencyRecord,
        *,
        status_code: int,
        response_body: str,
        completed_at: datetime,
    ) -> IdempotencyRecord:
        """Store the answer of ``reservation`` and return the completed record.

        ``NotFound`` if no record has the key; ``Conflict`` if the stored one is
        not this pending reservation (completed already, or taken over).
        """
        ...

    async def release(self, reservation: IdempotencyRecord) -> None:
        """Delete ``reservation`` so the key can be used again.

        For a create that certainly did not happen (it was refused).
        ``NotFound`` if no record has the key; ``Conflict`` if the stored one is
        not this pending reservation — a completed answer is never forgotten.
        """
        ...


class AuditRepository(Protocol):
    """The audit trail: append-only — there is deliberately no update or delete.

    ``append`` assigns ``sequence`` (1, 2, … per chain), ``prev_hash`` and
    ``hash`` using :mod:`crm_domain.audit_chain`; the chain of an entry is its
    ``tenant_id`` (``None`` is the system chain).  An entry whose ``tenant_id``
    differs from a tenant-bound unit of work's location is refused with
    ``PermissionDenied``.
    """

    async def append(self, entry: AuditEntry) -> AuditEntry:
        """Append one entry and return it as stored (with sequence and hashes)."""
        ...

    async def append_many(self, entries: Sequence[AuditEntry]) -> Sequence[AuditEntry]:
        """Append entries in order, as ``append`` would one by one."""
        ...

    async def get(self, entry_id: str) -> AuditEntry:
        """Return one entry of the bound location, or raise ``NotFound``."""
        ...

    async def list(self, query: AuditQuery) -> Page[AuditEntry]:
        """One page of the bound location's entries, newest first."""
        ...

    async def count(self, query: AuditQuery) -> int:
        """Count matching entries of the bound location."""
        ...

    async def chain(self, after_sequence: int = 0, limit: int = 1000) -> Sequence[AuditEntry]:
        """Entries of the bound chain (``None`` tenant: the system chain) in sequence order."""
        ...


class AnalyticsRepository(Protocol):
    """Aggregates for reports (tenant-owned, read-only)."""

    async def metric(self, query: MetricQuery) -> Sequence[MetricRow]:
        """Compute one metric grouped by the query's dimensions, rows sorted by keys."""
        ...


class OutboxRepository(Protocol):
    """The transactional outbox.

    ``add`` joins the unit of work (its event's ``tenant_id`` must be the bound
    location, or ``None`` on an unbound unit of work).  The consumer side works
    on a unit of work bound to no tenant and commits after each call.
    """

    async def add(self, event: DomainEvent) -> None:
        """Queue an event; it becomes visible only when the unit of work commits."""
        ...

    async def claim(
        self, now: datetime, limit: int = 100, lease_seconds: float = 60.0
    ) -> Sequence[OutboxMessage]:
        """Lease up to ``limit`` pending messages whose time has come, oldest event first."""
        ...

    async def complete(self, event_ids: Sequence[str]) -> None:
        """Mark claimed messages done."""
        ...

    async def fail(
        self, event_id: str, error: str, retry_at: datetime, *, dead: bool = False
    ) -> None:
        """Record a failed attempt; retry at ``retry_at``, or move to dead letter."""
        ...

    async def list_status(self, status: str, limit: int = 100) -> Sequence[OutboxMessage]:
        """Messages in one status (``pending``, ``done``, ``dead``), oldest event first."""
        ...


@runtime_checkable
class UnitOfWork(Protocol):
    """One transaction over every repository. Rolls back unless committed."""

    tenant_id: str | None

    @property
    def locations(self) -> LocationRepository: ...
    @property
    def users(self) -> UserRepository: ...
    @property
    def memberships(self) -> MembershipRepository: ...
    @property
    def permissions(self) -> PermissionRepository: ...
    @property
    def sessions(self) -> SessionRepository: ...
    @property
    def webhook_receipts(self) -> WebhookReceiptRepository: ...
    @property
    def ip_rules(self) -> IpRuleRepository: ...
    @property
    def contacts(self) -> ContactRepository: ...
    @property
    def touchpoints(self) -> TouchpointRepository: ...
    @property
    def bookings(self) -> BookingRepository: ...
    @property
    def tasks(self) -> TaskRepository: ...
    @property
    def sms(self) -> SmsRepository: ...
    @property
    def campaigns(self) -> CampaignRepository: ...
    @property
    def deliveries(self) -> DeliveryRepository: ...
    @property
    def automations(self) -> AutomationRepository: ...
    @property
    def suppressions(self) -> SuppressionRepository: ...
    @property
    def idempotency(self) -> IdempotencyRepository: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def analytics(self) -> AnalyticsRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...

    async def commit(self) -> None:
        """Make every change of this unit of work durable, atomically."""
        ...

    async def rollback(self) -> None:
        """Discard every change (also done on exit without commit)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class DatabaseGateway(Protocol):
    """The storage port. Found by URL scheme through the ``crm.gateways`` entry points."""

    def unit_of_work(self, tenant_id: str | None = None) -> UnitOfWork:
        """Open a unit of work bound to ``tenant_id`` (or to no location)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


__all__ = [
    "AnalyticsRepository",
    "AuditRepository",
    "AutomationRepository",
    "BookingRepository",
    "CampaignRepository",
    "ContactRepository",
    "DatabaseGateway",
    "DeliveryRepository",
    "IdempotencyRepository",
    "IpRuleRepository",
    "LocationRepository",
    "MembershipRepository",
    "OutboxRepository",
    "PermissionRepository",
    "Repository",
    "SessionRepository",
    "SmsRepository",
    "SupportsMigrations",
    "SuppressionRepository",
    "TaskRepository",
    "TouchpointRepository",
    "UnitOfWork",
    "UserRepository",
    "WebhookReceiptRepository",
]


@runtime_checkable
class SupportsMigrations(Protocol):
    """A gateway that can bring its store's schema up to date (``crm db upgrade``)."""

    async def migrate(self) -> None:
        """Apply every pending schema migration; safe to run again."""
        ...
