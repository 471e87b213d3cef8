"""WebhookService: booking events accepted in the request, applied by the worker, in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from crm_domain.context import Context
from crm_domain.entities import BookingStatus, OutboxMessage
from crm_domain.errors import ValidationError
from crm_domain.queries import BookingQuery, ContactQuery
from crm_domain.services import ExternalBookingEvent, LeadMessage, PersonDetails

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def event(event_id: str, status: str | None, minutes: int, **changes: Any) -> ExternalBookingEvent:
    base = ExternalBookingEvent(
        source="wix",
        event_id=event_id,
        external_id="wix-booking-1",
        status=status,
        starts_at=T0 + timedelta(days=3),
        ends_at=T0 + timedelta(days=3, minutes=45),
        service_type="MRI knee",
        occurred_at=T0 + timedelta(minutes=minutes),
        person=PersonDetails(first_name="Zoe", last_name="Lee", email="ZOE@example.com"),
    )
    return attrs.evolve(base, **changes)


async def run_worker(world: Any) -> None:
    for e in await world.events("ExternalBookingReceived"):
        message = OutboxMessage(event=e, available_at=world.clock.now())
        for handler in world.services.event_handlers().get(e.name, ()):
            await handler(message)


async def bookings(world: Any) -> list[Any]:
    return list((await world.services.bookings.list(world.ctx(), BookingQuery(limit=100))).items)


async def test_accept_then_apply_creates_contact_and_booking_once(world: Any) -> None:
    webhooks = world.services.webhooks
    system = Context.system(world.sydney.id)
    assert await webhooks.accept_booking(system, event("e1", "pending", 0)) is True
    assert await webhooks.accept_booking(system, event("e1", "pending", 0)) is False
    [received] = await world.events("ExternalBookingReceived")
    assert "zoe" not in str(received.payload).lower()  # no PHI in the outbox
    assert await bookings(world) == []  # the worker applies it
    await run_worker(world)
    [booking] = await bookings(world)
    assert (booking.external_id, booking.status, booking.source) == (
        "wix-booking-1",
        BookingStatus.PENDING,
        "wix",
    )
    contacts = await world.services.contacts.list(
        world.ctx(), ContactQuery(email="zoe@example.com")
    )
    [contact] = contacts.items
    assert (contact.first_name, contact.source.value, booking.contact_id) == (
        "Zoe",
        "wix",
        contact.id,
    )


async def test_an_older_event_never_overwrites_a_newer_state(world: Any) -> None:
    webhooks = world.services.webhooks
    system = Context.system(world.sydney.id)
    await webhooks.accept_booking(system, event("created", "pending", 0))
    await run_worker(world)
    # The cancellation (minute 10) arrives before the confirmation (minute 5).
    await webhooks.accept_booking(system, event("cancelled", "cancelled", 10))
    await webhooks.accept_booking(system, event("confirmed", "confirmed", 5))
    await run_worker(world)
    [booking] = await bookings(world)
    assert booking.status is BookingStatus.CANCELLED
    assert booking.external_updated_at == T0 + timedelta(minutes=10)


async def test_contact_matched_by_phone_when_no_email_and_missing_details_filled(
    world: Any,
) -> None:
    contact_id = await world.new_contact(phone="+61412345678")
    webhooks = world.services.webhooks
    system = Context.system(world.sydney.id)
    by_phone = event(
        "e1",
        None,
        0,
        person=PersonDetails(first_name="Ada", phone="0412 345 678", email=None),
    )
    await webhooks.accept_booking(system, by_phone)
    await run_worker(world)
    [booking] = await bookings(world)
    assert booking.contact_id == contact_id
    with pytest.raises(ValidationError, match="contact"):
        await webhooks.accept_booking(
            system, event("e2", None, 1, person=PersonDetails(first_name="Nobody"))
        )


async def test_lead_creates_then_updates_one_contact_with_touchpoints(world: Any) -> None:
    webhooks = world.services.webhooks
    system = Context.system(world.sydney.id)
    person = PersonDetails(first_name="Kim", phone="+61400111222")
    first, new = await webhooks.accept_lead(
        system, LeadMessage(source="manychat", event_id="m1", person=person, text="hi")
    )
    again, repeated = await webhooks.accept_lead(
        system, LeadMessage(source="manychat", event_id="m1", person=person, text="hi")
    )
    later, _ = await webhooks.accept_lead(
        system,
        LeadMessage(
            source="manychat",
            event_id="m2",
            person=attrs.evolve(person, email="kim@example.com"),
        ),
    )
    assert (new, repeated) == (True, False)
    assert first.id == again.id == later.id
    assert later.email == "kim@example.com"
    touchpoints = await world.services.contacts.list_touchpoints(world.ctx(), first.id)
    assert len(touchpoints.items) == 2
