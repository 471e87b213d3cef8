"""AI wired into the services: warmness on events, SMS intent, task priority.

The in-library :class:`RuleOfThumbAI` stands in for ``crm-ai`` (crm_domain
must not import it); assertions are on the in-memory gateway's end state.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from crm_domain.bootstrap import bootstrap
from crm_domain.context import Context
from crm_domain.entities import (
    BookingStatus,
    DomainEvent,
    OutboxMessage,
    Role,
    SmsDirection,
    SmsIntent,
    SmsKind,
    SmsMessage,
    SmsStatus,
    TaskPriority,
    WebhookReceipt,
)
from crm_domain.errors import Conflict, PermissionDenied
from crm_domain.memory import RecordingSmsSender, RuleOfThumbAI
from crm_domain.ports.ai import AIProvider
from crm_domain.queries import SmsQuery, TaskQuery
from crm_domain.services import (
    CANCELLED_BY_SMS,
    AddTouchpoint,
    CreateBooking,
    CreateContact,
    CreateTask,
)

pytestmark = pytest.mark.anyio

CLINIC = "+61292000000"
PATIENT = "+61412345678"


class AiWorld:
    """The conftest's service world, rewired with the rule-of-thumb AI and an SMS sender."""

    def __init__(self, world: Any) -> None:
        self._world = world
        self.ai = RuleOfThumbAI()
        self.sender = RecordingSmsSender()
        # The services hold no state of their own: same gateway, clock and ids.
        world.services = bootstrap(
            world.gateway, clock=world.clock, ids=world.ids, ai=self.ai, sms_sender=self.sender
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._world, name)

    async def deliver(self, event: DomainEvent) -> None:
        """Hand one committed event to the domain's handlers, as a worker would."""
        message = OutboxMessage(event=event, available_at=self.clock.now())
        for handler in self.services.event_handlers().get(event.name, ()):
            await handler(message)

    async def book(self, contact_id: str, days: int = 2) -> str:
        starts = self.clock.now() + timedelta(days=days)
        booking = await self.services.bookings.create(
            self.ctx(),
            CreateBooking(
                contact_id=contact_id,
                service_type="MRI",
                starts_at=starts,
                ends_at=starts + timedelta(minutes=45),
            ),
        )
        return booking.id

    async def inbound(
        self, body: str, message_id: str | None = "m-1", sender: str = PATIENT
    ) -> SmsMessage:
        return await self.services.sms.receive_inbound(
            Context.system(self.sydney.id), sender, CLINIC, body, "clicksend", message_id
        )


@pytest.fixture
def ai_world(world: Any) -> AiWorld:
    return AiWorld(world)


async def _opted_in_contact(world: AiWorld) -> str:
    contact = await world.services.contacts.create(
        world.ctx(),
        CreateContact(first_name="Ada", phone=PATIENT, sms_opt_in=True, source="website"),
    )
    return contact.id


def test_rule_of_thumb_ai_satisfies_the_port() -> None:
    provider: AIProvider = RuleOfThumbAI()
    assert isinstance(provider, AIProvider)


# -- warmness on events ---------------------------------------------------------


async def test_touchpoint_event_rescores_warmness_once(ai_world: AiWorld) -> None:
    contacts = ai_world.services.contacts
    contact_id = await _opted_in_contact(ai_world)
    before = await contacts.get(ai_world.ctx(), contact_id)
    await contacts.add_touchpoint(
        ai_world.ctx(), AddTouchpoint(contact_id=contact_id, kind="form_submit", channel="web")
    )
    [event] = await ai_world.events("TouchpointAdded")
    await ai_world.deliver(event)

    after = await contacts.get(ai_world.ctx(), contact_id)
    assert after.warmness > before.warmness
    assert any("touchpoints" in reason for reason in after.warmness_reasons)
    assert after.warmness_reasons != before.warmness_reasons
    [changed] = await ai_world.events("ContactWarmnessChanged")
    assert changed.payload["previous_warmness"] == before.warmness
    assert changed.payload["warmness"] == after.warmness
    system = [e for e in await ai_world.audit() if e.user_id is None and e.action == "UPDATE"]
    assert [(e.resource_type, e.resource_id) for e in system] == [("contact", contact_id)]

    # Redelivered (at least once), even later when decay would move the score: no change.
    ai_world.clock.advance(timedelta(days=20))
    await ai_world.deliver(event)
    assert await contacts.get(ai_world.ctx(), contact_id) == after
    assert len(await ai_world.events("ContactWarmnessChanged")) == 1


async def test_booking_events_rescore_and_unchanged_score_emits_nothing(
    ai_world: AiWorld,
) -> None:
    contact_id = await _opted_in_contact(ai_world)
    await ai_world.book(contact_id)
    [created] = await ai_world.events("BookingCreated")
    await ai_world.deliver(created)
    contact = await ai_world.services.contacts.get(ai_world.ctx(), contact_id)
    assert any("booking pending" in r for r in contact.warmness_reasons)
    assert len(await ai_world.events("ContactWarmnessChanged")) == 1
    # Another event that leaves the score where it is updates nothing and emits nothing.
    await ai_world.services.contacts.rescore_warmness(
        Context.system(ai_world.sydney.id), contact_id, event_id="manual-1"
    )
    assert len(await ai_world.events("ContactWarmnessChanged")) == 1


async def test_unavailable_ai_stores_nothing_and_the_event_can_be_retried(
    ai_world: AiWorld,
) -> None:
    contact_id = await _opted_in_contact(ai_world)
    before = await ai_world.services.contacts.get(ai_world.ctx(), contact_id)
    await ai_world.services.contacts.add_touchpoint(
        ai_world.ctx(), AddTouchpoint(contact_id=contact_id, kind="call_inbound")
    )
    [event] = await ai_world.events("TouchpointAdded")
    ai_world.ai.down = True
    with pytest.raises(Exception, match="down"):
        await ai_world.deliver(event)
    assert await ai_world.services.contacts.get(ai_world.ctx(), contact_id) == before
    ai_world.ai.down = False
    await ai_world.deliver(event)  # the receipt was rolled back with the failure
    after = await ai_world.services.contacts.get(ai_world.ctx(), contact_id)
    assert after.warmness > before.warmness


# -- SMS intent -----------------------------------------------------------------


async def test_stop_clears_sms_opt_in(ai_world: AiWorld) -> None:
    contact_id = await _opted_in_contact(ai_world)
    ai_world.clock.advance(timedelta(minutes=5))
    message = await ai_world.inbound("STOP")
    contact = await ai_world.services.contacts.get(ai_world.ctx(), contact_id)
    assert not contact.sms_opt_in
    assert contact.consent_updated_at == ai_world.clock.now()
    assert (message.intent, message.direction, message.status) == (
        SmsIntent.OPT_OUT,
        SmsDirection.INBOUND,
        SmsStatus.RECEIVED,
    )
    assert message.contact_id == contact_id
    names = await ai_world.event_names()
    assert "SmsReceived" in names
    updated = await ai_world.events("ContactUpdated")
    assert updated[-1].payload["changed"] == ["sms_opt_in"]
    # Sending to them now is refused.
    with pytest.raises(Conflict, match="sms_opt_in"):
        await ai_world.services.sms.send(
            ai_world.ctx(), contact_id, "hi", kind=SmsKind.TRANSACTIONAL, from_number=CLINIC
        )


async def test_opt_out_is_never_missed_even_when_the_ai_is_down(ai_world: AiWorld) -> None:
    contact_id = await _opted_in_contact(ai_world)
    ai_world.ai.down = True
    message = await ai_world.inbound("Unsubscribe")
    assert message.intent is SmsIntent.OPT_OUT
    contact = await ai_world.services.contacts.get(ai_world.ctx(), contact_id)
    assert not contact.sms_opt_in


async def test_yes_confirms_the_next_booking(ai_world: AiWorld) -> None:
    contact_id = await _opted_in_contact(ai_world)
    later = await ai_world.book(contact_id, days=5)
    sooner = await ai_world.book(contact_id, days=2)
    message = await ai_world.inbound("yes see you then")
    assert (message.intent, message.booking_id) == (SmsIntent.CONFIRM, sooner)
    bookings = ai_world.services.bookings
    assert (await bookings.get(ai_world.ctx(), sooner)).status is BookingStatus.CONFIRMED
    assert (await bookings.get(ai_world.ctx(), later)).status is BookingStatus.PENDING
    assert [e.aggregate_id for e in await ai_world.events("BookingConfirmed")] == [sooner]
    entries = [e for e in await ai_world.audit() if e.resource_type == "sms"]
    assert len(entries) == 1  # one audit entry for the whole reply
    assert "confirmed" in (entries[0].detail or "")


async def test_cancel_cancels_the_next_booking(ai_world: AiWorld) -> None:
    contact_id = await _opted_in_contact(ai_world)
    booking_id = await ai_world.book(contact_id)
    await ai_world.inbound("Sorry, I can't make it, please cancel")
    booking = await ai_world.services.bookings.get(ai_world.ctx(), booking_id)
    assert booking.status is BookingStatus.CANCELLED
    assert booking.cancellation_reason == CANCELLED_BY_SMS


async def test_reschedule_creates_a_reception_task_with_the_proposed_time(
    ai_world: AiWorld,
) -> None:
    contact_id = await _opted_in_contact(ai_world)
    booking_id = await ai_world.book(contact_id)
    message = await ai_world.inbound("can we do thursday 3pm instead")
    assert message.intent is SmsIntent.RESCHEDULE
    [task] = (await ai_world.services.tasks.list(ai_world.ctx(), TaskQuery())).items
    assert (task.contact_id, task.booking_id) == (contact_id, booking_id)
    # Monday 2 March 2026, 20:00 in Sydney: "thursday 3pm" is the 5th, 15:00 local.
    assert task.title.endswith("proposes Thu 05 Mar 15:00")
    assert "Proposed time: 2026-03-05T15:00:00+11:00" in (task.description or "")
    assert task.priority is TaskPriority.HIGH  # from the AI: a booking is at stake
    # The booking itself is left to reception.
    booking = await ai_world.services.bookings.get(ai_world.ctx(), booking_id)
    assert booking.status is BookingStatus.PENDING


async def test_replayed_provider_message_id_stores_nothing_new(ai_world: AiWorld) -> None:
    contact_id = await _opted_in_contact(ai_world)
    await ai_world.book(contact_id)
    first = await ai_world.inbound("Do I need to fast before the scan?", message_id="cs-42")
    names = await ai_world.event_names()
    again = await ai_world.inbound("Do I need to fast before the scan?", message_id="cs-42")
    assert again == first
    assert await ai_world.event_names() == names
    page = await ai_world.services.sms.list(ai_world.ctx(), SmsQuery())
    assert [m.id for m in page.items] == [first.id]
    tasks = await ai_world.services.tasks.list(ai_world.ctx(), TaskQuery())
    assert len(tasks.items) == 1


async def test_unknown_sender_is_stored_and_handed_to_reception(ai_world: AiWorld) -> None:
    message = await ai_world.inbound("who is this?", sender="+61499999999")
    assert message.contact_id is None
    [task] = (await ai_world.services.tasks.list(ai_world.ctx(), TaskQuery())).items
    assert "unknown number" in task.title


async def test_sms_rbac_and_send(ai_world: AiWorld) -> None:
    contact_id = await _opted_in_contact(ai_world)
    messages = ai_world.services.sms
    with pytest.raises(PermissionDenied):
        await messages.list(ai_world.ctx(Role.READONLY))
    with pytest.raises(PermissionDenied):
        await messages.send(
            ai_world.ctx(Role.DOCTOR), contact_id, "hi", kind="transactional", from_number=CLINIC
        )
    queued = await messages.send(
        ai_world.ctx(Role.RECEPTIONIST),
        contact_id,
        "See you soon",
        kind=SmsKind.TRANSACTIONAL,
        from_number=CLINIC,
    )
    assert queued.status is SmsStatus.QUEUED
    assert ai_world.sender.sent == []  # the worker sends it, not the request
    for event in await ai_world.events("SmsQueued"):
        await ai_world.deliver(event)
    assert [s.to for s in ai_world.sender.sent] == [PATIENT]
    sent = await messages.get(ai_world.ctx(Role.DOCTOR), queued.id)
    assert sent.status is SmsStatus.SENT


# -- task priority --------------------------------------------------------------


async def test_task_without_priority_gets_one_from_the_ai(ai_world: AiWorld) -> None:
    tasks = ai_world.services.tasks
    urgent = await tasks.create(ai_world.ctx(), CreateTask(title="URGENT: call the referrer"))
    assert urgent.priority is TaskPriority.URGENT
    given = await tasks.create(ai_world.ctx(), CreateTask(title="URGENT", priority="low"))
    assert given.priority is TaskPriority.LOW
    ai_world.ai.down = True
    fallback = await tasks.create(ai_world.ctx(), CreateTask(title="URGENT again"))
    assert fallback.priority is TaskPriority.NORMAL


async def test_a_delivery_in_flight_elsewhere_is_refused_not_acted_on_twice(
    ai_world: AiWorld,
) -> None:
    contact_id = await _opted_in_contact(ai_world)
    booking_id = await ai_world.book(contact_id)
    # Another worker has claimed this message id but not committed its message yet.
    async with ai_world.gateway.unit_of_work(ai_world.sydney.id) as uow:
        await uow.webhook_receipts.record(
            WebhookReceipt(
                source="sms:clicksend",
                event_id="cs-77",
                tenant_id=ai_world.sydney.id,
                received_at=ai_world.clock.now(),
            )
        )
        await uow.commit()
    with pytest.raises(Conflict, match="already being processed"):
        await ai_world.inbound("please cancel", message_id="cs-77")
    booking = await ai_world.services.bookings.get(ai_world.ctx(), booking_id)
    assert booking.status is BookingStatus.PENDING
    page = await ai_world.services.sms.list(ai_world.ctx(), SmsQuery())
    assert page.items == ()
