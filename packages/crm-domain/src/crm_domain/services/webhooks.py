"""Bookings and leads pushed by other systems (Wix Bookings, ManyChat).

A booking webhook is taken in two steps, so the sender gets its 200 at once
and a redelivery or a crash loses nothing and applies nothing twice:

1. :meth:`WebhookService.accept_booking` — in the request, in one unit of work:
   the receipt ``(source, event id)`` is recorded (a duplicate stops here: the
   store's unique key decides), the person is matched to a contact of the
   location by email, then phone, or created, and an ``ExternalBookingReceived``
   event is put in the outbox.  The event carries ids, times, status and the
   service name — no name, email or phone (outbox payloads hold no PHI and may
   be published to a queue).
2. :meth:`WebhookService.apply_booking` — in the worker, for that event: the
   booking is created or moved through :meth:`BookingService.upsert_external`
   with the sender's event time, so an older event delivered late never
   overwrites a newer state.

Both act as the location's system user on the contact's behalf and are audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import (
    Action,
    Booking,
    Channel,
    Contact,
    ContactSource,
    Resource,
    Touchpoint,
    TouchpointKind,
    WebhookReceipt,
)
from crm_domain.errors import ValidationError
from crm_domain.policies.rbac import Authorizer
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.queries import ContactQuery
from crm_domain.services._base import Call, ServiceBase
from crm_domain.services._touchpoints import add_touchpoint
from crm_domain.services.bookings import BookingService
from crm_domain.services.commands import UpsertExternalBooking
from crm_domain.services.contacts import _facts as _contact_facts
from crm_domain.services.events import EventName
from crm_domain.values import parse_email, parse_phone

#: The outbox event of an accepted booking webhook, applied by the worker.
EXTERNAL_BOOKING_RECEIVED = "ExternalBookingReceived"


@attrs.frozen(slots=True, kw_only=True)
class PersonDetails:
    """Who a sender says made the booking or sent the message."""

    first_name: str = ""
    last_name: str = ""
    email: str | None = None
    phone: str | None = None


@attrs.frozen(slots=True, kw_only=True)
class ExternalBookingEvent:
    """One booking event from another system, as its adapter read it."""

    source: str
    event_id: str
    external_id: str
    #: ``pending``, ``confirmed`` or ``cancelled``; ``None`` keeps the booking's status.
    status: str | None
    starts_at: datetime
    ends_at: datetime
    service_type: str
    occurred_at: datetime
    person: PersonDetails
    contact_source: ContactSource = ContactSource.WIX


@attrs.frozen(slots=True, kw_only=True)
class LeadMessage:
    """A lead's message or sign-up from a chat platform (ManyChat)."""

    source: str
    event_id: str | None
    person: PersonDetails
    text: str | None = None
    contact_source: ContactSource = ContactSource.MANYCHAT


class WebhookService:
    """Takes in what other systems push; see the module docstring."""

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
        bookings: BookingService,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)
        self._bookings = bookings

    async def accept_booking(self, ctx: Context, event: ExternalBookingEvent) -> bool:
        """Record the receipt, match or create the contact, queue the event.

        ``False`` (and nothing changed) when this event was accepted before.
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.BOOKINGS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="webhook",
            resource_id=f"{event.source}:{event.event_id}"[:255],
            write=True,
        ) as call:
            now = base.clock.now()
            if not await _first_delivery(call, event.source, event.event_id, ctx.tenant_id, now):
                call.detail = "duplicate delivery"
                return False
            contact = await self._contact_for(
                call, ctx.tenant_id, event.person, event.contact_source
            )
            await call.emit(
                EXTERNAL_BOOKING_RECEIVED,
                "booking",
                event.external_id,
                {
                    "source": event.source,
                    "event_id": event.event_id,
                    "external_id": event.external_id,
                    "contact_id": contact.id,
                    "status": event.status,
                    "starts_at": event.starts_at.isoformat(),
                    "ends_at": event.ends_at.isoformat(),
                    "service_type": event.service_type,
                    "occurred_at": event.occurred_at.isoformat(),
                },
            )
            call.detail = f"{event.source} booking {event.external_id} for contact {contact.id}"
            return True

    async def apply_booking(self, ctx: Context, payload: dict[str, Any]) -> Booking:
        """Create or move the booking an ``ExternalBookingReceived`` event describes."""
        command = UpsertExternalBooking(
            external_id=str(payload["external_id"]),
            contact_id=str(payload["contact_id"]),
            service_type=str(payload["service_type"]),
            starts_at=datetime.fromisoformat(str(payload["starts_at"])),
            ends_at=datetime.fromisoformat(str(payload["ends_at"])),
            status=None if payload.get("status") is None else str(payload["status"]),
            source=str(payload["source"]),
            occurred_at=datetime.fromisoformat(str(payload["occurred_at"])),
        )
        return await self._bookings.upsert_external(ctx, command)

    async def accept_lead(self, ctx: Context, lead: LeadMessage) -> tuple[Contact, bool]:
        """Create or update the lead's contact and add a chat touchpoint.

        Returns the contact and whether this delivery was new (a repeated
        ``event_id`` changes nothing).
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="contact",
            write=True,
        ) as call:
            now = base.clock.now()
            repeated = lead.event_id is not None and not await _first_delivery(
                call, lead.source, lead.event_id, ctx.tenant_id, now
            )
            if repeated:
                contact = await self._existing(call, lead.person)
                if contact is None:
                    raise ValidationError("id", "repeated event for an unknown contact")
                call.resource_id = contact.id
                call.detail = "duplicate delivery"
                return contact, False
            contact = await self._contact_for(call, ctx.tenant_id, lead.person, lead.contact_source)
            call.resource_id = contact.id
            touchpoint = Touchpoint(
                id=base.ids.new_id(),
                tenant_id=ctx.tenant_id,
                contact_id=contact.id,
                kind=TouchpointKind.CHAT_MESSAGE,
                channel=Channel.SOCIAL,
                occurred_at=now,
                metadata={"source": lead.source, "has_text": bool(lead.text)},
                created_at=now,
            )
            await add_touchpoint(call, touchpoint)
            call.detail = f"{lead.source} lead, touchpoint {touchpoint.id}"
            return contact, True

    # -- helpers --------------------------------------------------------------

    @staticmethod
    async def _existing(call: Call, person: PersonDetails) -> Contact | None:
        uow = call.uow
        if person.email:
            email = parse_email(person.email)
            page = await uow.contacts.list(ContactQuery(email=email, limit=1))
            if page.items:
                return page.items[0]
        if person.phone:
            phone = parse_phone(person.phone)
            page = await uow.contacts.list(ContactQuery(phone=phone, limit=1))
            if page.items:
                return page.items[0]
        return None

    async def _contact_for(
        self, call: Call, tenant_id: str, person: PersonDetails, source: ContactSource
    ) -> Contact:
        """The contact with this email (else phone), completed with what it lacked, or a new one."""
        base = self._base
        now = base.clock.now()
        email = None if not person.email else parse_email(person.email)
        phone = None if not person.phone else parse_phone(person.phone)
        if email is None and phone is None:
            raise ValidationError("contact", "an email or a phone number is required")
        existing = await self._existing(call, person)
        if existing is not None:
            filled = attrs.evolve(
                existing,
                email=existing.email or email,
                phone=existing.phone or phone,
                last_name=existing.last_name or person.last_name.strip()[:100],
            )
            if filled != existing:
                filled = attrs.evolve(filled, updated_at=now)
                await call.uow.contacts.update(filled)
                await call.emit(
                    EventName.CONTACT_UPDATED,
                    "contact",
                    filled.id,
                    {**_contact_facts(filled), "changed": ["email", "phone", "last_name"]},
                )
            return filled
        contact = Contact(
            id=base.ids.new_id(),
            tenant_id=tenant_id,
            first_name=person.first_name.strip()[:100] or "Unknown",
            last_name=person.last_name.strip()[:100],
            email=email,
            phone=phone,
            source=source,
            created_at=now,
            updated_at=now,
        )
        await call.uow.contacts.add(contact)
        await call.emit(EventName.CONTACT_CREATED, "contact", contact.id, _contact_facts(contact))
        return contact


async def _first_delivery(
    call: Call, source: str, event_id: str, tenant_id: str, now: datetime
) -> bool:
    """Record the receipt of ``(source, event_id)``; ``False`` when it was recorded before.

    The store's unique key decides, so of two concurrent deliveries one wins.
    """
    receipt = WebhookReceipt(
        source=source[:50], event_id=event_id, tenant_id=tenant_id, received_at=now
    )
    return await call.uow.webhook_receipts.record(receipt)


__all__ = [
    "EXTERNAL_BOOKING_RECEIVED",
    "ExternalBookingEvent",
    "LeadMessage",
    "PersonDetails",
    "WebhookService",
]
