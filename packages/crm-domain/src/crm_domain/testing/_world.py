"""Test data for the conformance kit: two locations and factories for every entity.

Factories return *unsaved* entities with valid defaults that keyword
overrides replace; ``save`` stores entities (parents first, since SQL gateways
enforce foreign keys) in one committed unit of work.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import attrs

from crm_domain.clock import UlidFactory
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
    Permission,
    Role,
    Session,
    SmsMessage,
    StaffUser,
    Suppression,
    Task,
    Touchpoint,
    WebhookReceipt,
)
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork

#: A fixed instant with microseconds, so truncation shows up.
BASE_TIME = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)
#: Non-UTC offsets used to check that gateways keep the instant, not the wall time.
PLUS_1030 = timezone(timedelta(hours=10, minutes=30))
MINUS_0330 = timezone(-timedelta(hours=3, minutes=30))

#: Mixed scripts: accents, emoji (outside the BMP), right-to-left Hebrew and Arabic.
UNICODE_SAMPLE = "Zoë 🦄 שלום مرحبا ñ "


def fill(length: int, sample: str = UNICODE_SAMPLE) -> str:
    """A string of exactly ``length`` characters (code points) cycling ``sample``."""
    return "".join(itertools.islice(itertools.cycle(sample), length))


_ENTITY_REPOSITORY: dict[type[Any], str] = {
    Location: "locations",
    StaffUser: "users",
    Membership: "memberships",
    Permission: "permissions",
    Session: "sessions",
    IpRule: "ip_rules",
    Contact: "contacts",
    Touchpoint: "touchpoints",
    Booking: "bookings",
    Task: "tasks",
    SmsMessage: "sms",
    EmailCampaign: "campaigns",
    CampaignDelivery: "deliveries",
    AutomationRule: "automations",
    Suppression: "suppressions",
}


async def add_entity(uow: UnitOfWork, entity: Any) -> None:
    """Add any entity through its repository on ``uow``."""
    if isinstance(entity, AuditEntry):
        await uow.audit.append(entity)
    elif isinstance(entity, DomainEvent):
        await uow.outbox.add(entity)
    elif isinstance(entity, IdempotencyRecord):
        # Stored the only way the port allows: reserved, then completed if it has an answer.
        reservation = attrs.evolve(
            entity,
            state=IdempotencyState.PENDING,
            status_code=None,
            response_body=None,
            completed_at=None,
        )
        await uow.idempotency.reserve(reservation)
        if not entity.pending:
            assert entity.status_code is not None and entity.response_body is not None
            assert entity.completed_at is not None
            await uow.idempotency.complete(
                reservation,
                status_code=entity.status_code,
                response_body=entity.response_body,
                completed_at=entity.completed_at,
            )
    elif isinstance(entity, WebhookReceipt):
        await uow.webhook_receipts.record(entity)
    else:
        await getattr(uow, _ENTITY_REPOSITORY[type(entity)]).add(entity)


def repository_of(uow: UnitOfWork, name: str) -> Any:
    """``uow.<name>``, typed loosely for the table-driven tests."""
    return getattr(uow, name)


class World:
    """Two locations (``a`` and ``b``) in a fresh gateway, and entity factories."""

    def __init__(self, gateway: DatabaseGateway) -> None:
        self.gateway = gateway
        self._ids = UlidFactory()
        self._serial = itertools.count(1)
        self.now = BASE_TIME
        self.a = self.location(code="kit-a", name="Kit A", timezone="Australia/Sydney")
        self.b = self.location(code="kit-b", name="Kit B", timezone="Europe/London")

    async def setup(self) -> World:
        """Store the two locations."""
        await self.save(None, self.a, self.b)
        return self

    # -- plumbing ---------------------------------------------------------

    def new_id(self) -> str:
        """A fresh, time-sortable id (later ids sort higher)."""
        return self._ids.new_id()

    def serial(self) -> int:
        """A number unique within this world (for unique emails, codes, cidrs)."""
        return next(self._serial)

    def at(self, **delta: float) -> datetime:
        """``BASE_TIME`` moved by ``timedelta(**delta)``."""
        return self.now + timedelta(**delta)

    async def save(self, tenant_id: str | None, *entities: Any) -> None:
        """Add ``entities`` in order in one unit of work bound to ``tenant_id``, and commit."""
        async with self.gateway.unit_of_work(tenant_id) as uow:
            for entity in entities:
                await add_entity(uow, entity)
            await uow.commit()

    async def save_all(self, tenant_id: str | None, entities: Sequence[Any]) -> None:
        """:meth:`save` for a sequence."""
        await self.save(tenant_id, *entities)

    # -- global entities -------------------------------------------------

    def location(self, **overrides: Any) -> Location:
        """An active location in UTC+10 with a unique code."""
        n = self.serial()
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "code": f"loc-{n}",
            "name": f"Location {n}",
            "timezone": "Australia/Sydney",
            "created_at": self.now,
        }
        fields.update(overrides)
        return Location(**fields)

    def user(self, **overrides: Any) -> StaffUser:
        """An active staff user with a unique email."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "email": f"staff{self.serial()}@kit.example",
            "name": "Staff Member",
            "created_at": self.now,
        }
        fields.update(overrides)
        return StaffUser(**fields)

    def membership(self, user_id: str, location_id: str, **overrides: Any) -> Membership:
        """A receptionist membership."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "user_id": user_id,
            "location_id": location_id,
            "role": Role.RECEPTIONIST,
            "created_at": self.now,
        }
        fields.update(overrides)
        return Membership(**fields)

    def permission(self, role: Role, resource: str, action: str) -> Permission:
        """A grant."""
        return Permission(
            id=self.new_id(), role=role, resource=resource, action=action, created_at=self.now
        )

    def session(self, user_id: str, **overrides: Any) -> Session:
        """A live session expiring in an hour."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "user_id": user_id,
            "created_at": self.now,
            "last_seen_at": self.now,
            "expires_at": self.at(hours=1),
        }
        fields.update(overrides)
        return Session(**fields)

    # -- tenant-owned entities ------------------------------------------

    def ip_rule(self, tenant_id: str, **overrides: Any) -> IpRule:
        """An active IPv4 /32 rule with a unique address."""
        n = self.serial()
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "cidr": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}/32",
            "created_at": self.now,
            "created_by": "kit",
        }
        fields.update(overrides)
        return IpRule(**fields)

    def contact(self, tenant_id: str, **overrides: Any) -> Contact:
        """A new contact with an email."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "first_name": "Pat",
            "last_name": "Kit",
            "email": f"pat{self.serial()}@kit.example",
            "created_at": self.now,
            "updated_at": self.now,
        }
        fields.update(overrides)
        return Contact(**fields)

    def touchpoint(self, tenant_id: str, contact_id: str, **overrides: Any) -> Touchpoint:
        """A note touchpoint."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "contact_id": contact_id,
            "kind": "note",
            "occurred_at": self.now,
            "created_at": self.now,
        }
        fields.update(overrides)
        return Touchpoint(**fields)

    def booking(self, tenant_id: str, contact_id: str, **overrides: Any) -> Booking:
        """A pending one-hour MRI booking tomorrow."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "contact_id": contact_id,
            "service_type": "mri",
            "starts_at": self.at(days=1),
            "ends_at": self.at(days=1, hours=1),
            "created_at": self.now,
            "updated_at": self.now,
        }
        fields.update(overrides)
        return Booking(**fields)

    def task(self, tenant_id: str, **overrides: Any) -> Task:
        """An open task."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "title": "Call back",
            "created_at": self.now,
            "updated_at": self.now,
        }
        fields.update(overrides)
        return Task(**fields)

    def sms(self, tenant_id: str, **overrides: Any) -> SmsMessage:
        """An outbound queued SMS."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "direction": "outbound",
            "from_number": "+61298765432",
            "to_number": "+61412345001",
            "body": "See you tomorrow",
            "status": "queued",
            "created_at": self.now,
        }
        fields.update(overrides)
        return SmsMessage(**fields)

    def campaign(self, tenant_id: str, **overrides: Any) -> EmailCampaign:
        """A draft campaign."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "name": "Spring check-up",
            "subject": "Time for a scan?",
            "body_html": "<p>Hello</p>",
            "body_text": "Hello",
            "created_at": self.now,
            "updated_at": self.now,
        }
        fields.update(overrides)
        return EmailCampaign(**fields)

    def delivery(
        self, tenant_id: str, campaign_id: str, contact_id: str, **overrides: Any
    ) -> CampaignDelivery:
        """A pending delivery."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "campaign_id": campaign_id,
            "contact_id": contact_id,
            "email": f"to{self.serial()}@kit.example",
            "created_at": self.now,
        }
        fields.update(overrides)
        return CampaignDelivery(**fields)

    def automation(self, tenant_id: str, **overrides: Any) -> AutomationRule:
        """An enabled rule triggered by ``ContactCreated``."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "name": "Welcome",
            "trigger": "ContactCreated",
            "created_at": self.now,
            "updated_at": self.now,
        }
        fields.update(overrides)
        return AutomationRule(**fields)

    def suppression(self, tenant_id: str, **overrides: Any) -> Suppression:
        """An SMS opt-out of a unique Australian mobile number."""
        n = self.serial()
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "channel": "sms",
            "address": f"+614{n % 100_000_000:08d}",
            "reason": "opt_out",
            "created_at": self.now,
            "created_by": "system",
        }
        fields.update(overrides)
        return Suppression(**fields)

    def idempotency(self, tenant_id: str, **overrides: Any) -> IdempotencyRecord:
        """A stored 201 answer (see :meth:`reservation` for a pending one)."""
        fields: dict[str, Any] = {
            "tenant_id": tenant_id,
            "key": f"key-{self.serial()}",
            "user_id": "user-1",
            "request_fingerprint": "f" * 64,
            "state": IdempotencyState.COMPLETED,
            "status_code": 201,
            "response_body": '{"id": "x"}',
            "created_at": self.now,
            "completed_at": self.now,
        }
        fields.update(overrides)
        return IdempotencyRecord(**fields)

    def reservation(self, tenant_id: str, **overrides: Any) -> IdempotencyRecord:
        """A pending ``Idempotency-Key`` reservation (no answer yet)."""
        fields: dict[str, Any] = {
            "state": IdempotencyState.PENDING,
            "status_code": None,
            "response_body": None,
            "completed_at": None,
        }
        fields.update(overrides)
        return self.idempotency(tenant_id, **fields)

    def audit(self, tenant_id: str | None, **overrides: Any) -> AuditEntry:
        """A successful READ of a contact."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "action": "READ",
            "resource_type": "contact",
            "occurred_at": self.now,
        }
        fields.update(overrides)
        return AuditEntry(**fields)

    def event(self, tenant_id: str | None, **overrides: Any) -> DomainEvent:
        """A ``ContactCreated`` event."""
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "tenant_id": tenant_id,
            "name": "ContactCreated",
            "aggregate_type": "contact",
            "aggregate_id": "c-1",
            "payload": {"source": "website"},
            "occurred_at": self.now,
        }
        fields.update(overrides)
        return DomainEvent(**fields)

    def receipt(self, **overrides: Any) -> WebhookReceipt:
        """A Wix webhook receipt."""
        fields: dict[str, Any] = {
            "source": "wix",
            "event_id": f"evt-{self.serial()}",
            "received_at": self.now,
        }
        fields.update(overrides)
        return WebhookReceipt(**fields)


def evolve(entity: Any, **changes: Any) -> Any:
    """``attrs.evolve`` typed loosely for the table-driven tests."""
    return attrs.evolve(entity, **changes)


#: A birthday used by the contact edge case (a date, not a datetime).
LEAP_DAY = date(1964, 2, 29)
