"""Booking reminders and no-show follow-ups, driven by the outbox and an injectable clock.

A small relay loop here does what the worker does — claim what is due at the
clock's ``now``, hand it to the domain's handlers, complete it — on the
in-memory gateway; the SMS go to :class:`RecordingSmsSender`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from crm_domain.entities import BookingStatus, OutboxMessage, SmsIntent, SmsKind
from crm_domain.memory import RecordingSmsSender
from crm_domain.policies.reminders import (
    due_reminders,
    follow_up_due,
    move_out_of_quiet_hours,
    reminder_times,
)
from crm_domain.queries import TaskQuery
from crm_domain.services import (
    REMINDER_REPLY_HINT,
    CancelBooking,
    CreateBooking,
    CreateContact,
    RescheduleBooking,
    UpdateContact,
)

pytestmark = pytest.mark.anyio

SYDNEY = ZoneInfo("Australia/Sydney")
CLINIC = "+61292000000"
PATIENT = "+61412345678"


def local(*args: int) -> datetime:
    """A Sydney wall-clock time as an aware UTC datetime."""
    return datetime(*args, tzinfo=SYDNEY).astimezone(UTC)  # type: ignore[misc]


# -- the timing policy -----------------------------------------------------------


def test_reminders_are_the_day_before_same_local_time_and_two_hours_before() -> None:
    times = reminder_times(local(2026, 3, 4, 10, 0), "Australia/Sydney")
    assert times == {"24h": local(2026, 3, 3, 10, 0), "2h": local(2026, 3, 4, 8, 0)}


def test_the_day_before_keeps_the_local_time_across_a_dst_change() -> None:
    # Sydney leaves daylight time on Sun 5 Apr 2026 at 03:00: the day before is 25 h earlier.
    start = local(2026, 4, 5, 10, 0)
    day_before = reminder_times(start, "Australia/Sydney")["24h"]
    assert day_before.astimezone(SYDNEY).replace(tzinfo=None) == datetime(2026, 4, 4, 10, 0)
    assert start - day_before == timedelta(hours=25)


def test_a_reminder_in_quiet_hours_moves_to_the_evening_before() -> None:
    # 09:00 scan: T-2 h is 07:00 → 20:00 the evening before; 22:30 → 20:00 the same evening.
    assert reminder_times(local(2026, 3, 4, 9, 0), "Australia/Sydney")["2h"] == local(
        2026, 3, 3, 20, 0
    )
    assert move_out_of_quiet_hours(local(2026, 3, 3, 22, 30), "Australia/Sydney") == local(
        2026, 3, 3, 20, 0
    )
    assert move_out_of_quiet_hours(local(2026, 3, 3, 12, 0), "Australia/Sydney") == local(
        2026, 3, 3, 12, 0
    )


def test_reminders_already_due_are_not_scheduled() -> None:
    start = local(2026, 3, 4, 10, 0)
    assert set(due_reminders(start, "Australia/Sydney", local(2026, 3, 3, 12, 0))) == {"2h"}
    assert due_reminders(start, "Australia/Sydney", local(2026, 3, 4, 9, 0)) == {}


def test_a_no_show_is_followed_up_at_nine_the_next_local_morning() -> None:
    # 23:30 UTC on 3 Mar is 10:30 on 4 Mar in Sydney: the next morning is 5 Mar.
    assert follow_up_due(datetime(2026, 3, 3, 23, 30, tzinfo=UTC), "Australia/Sydney") == local(
        2026, 3, 5, 9, 0
    )


# -- the use cases through the outbox --------------------------------------------


class Reminders:
    """The world wired with an SMS sender and the sydney number, and a relay step."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.sender = RecordingSmsSender("clicksend")
        self.services = world.wire_sms(self.sender, {"sydney": CLINIC})

    async def relay_until(self, when: datetime) -> list[str]:
        """Set the clock to ``when`` and relay everything due; return the event names handled."""
        self.world.clock.set(when)
        return list(await self.world.relay())

    async def redeliver(self, name: str) -> None:
        """Hand every done event of ``name`` to its handlers again (at-least-once delivery)."""
        async with self.world.gateway.unit_of_work(None) as uow:
            done = [m for m in await uow.outbox.list_status("done", 1000) if m.event.name == name]
        assert done, f"no {name} event was delivered"
        for message in done:
            again = OutboxMessage(event=message.event, available_at=message.available_at)
            for handler in self.services.event_handlers().get(name, ()):
                await handler(again)

    async def book(self, starts_at: datetime, *, sms_opt_in: bool = True) -> tuple[str, str]:
        ctx = self.world.ctx()
        contact = await self.services.contacts.create(
            ctx, CreateContact(first_name="Ada", phone="0412 345 678", sms_opt_in=sms_opt_in)
        )
        booking = await self.services.bookings.create(
            ctx,
            CreateBooking(
                contact_id=contact.id,
                service_type="mri",
                starts_at=starts_at,
                ends_at=starts_at + timedelta(minutes=45),
            ),
        )
        return contact.id, booking.id

    async def tasks(self) -> list[Any]:
        page = await self.services.tasks.list(self.world.ctx(), TaskQuery(limit=100))
        return list(page.items)


@pytest.fixture
def reminders(world: Any) -> Reminders:
    return Reminders(world)


async def test_a_booking_sends_both_reminders_at_their_local_times_once(
    reminders: Reminders,
) -> None:
    # Booked at 20:00 on 2 Mar (Sydney) for 10:00 on 4 Mar.
    _, booking_id = await reminders.book(local(2026, 3, 4, 10, 0))
    scheduled = await reminders.world.events("BookingReminderDue")
    assert sorted(e.occurred_at for e in scheduled) == [
        local(2026, 3, 3, 10, 0),
        local(2026, 3, 4, 8, 0),
    ]
    await reminders.relay_until(local(2026, 3, 3, 9, 59))
    assert reminders.sender.sent == []
    await reminders.relay_until(local(2026, 3, 3, 10, 0))
    [first] = reminders.sender.sent
    assert (first.to, first.sender) == (PATIENT, CLINIC)
    assert "Wed 04 Mar at 10:00" in first.body
    assert first.body.endswith(REMINDER_REPLY_HINT)
    await reminders.relay_until(local(2026, 3, 4, 8, 0))
    assert len(reminders.sender.sent) == 2
    # Redelivered after a crash: no second SMS, no second queued message.
    await reminders.redeliver("BookingReminderDue")
    await reminders.relay_until(local(2026, 3, 4, 8, 5))
    assert len(reminders.sender.sent) == 2
    sms = await reminders.world.events()
    assert sms == []  # everything handled
    audit = await reminders.world.audit()
    queued = [e for e in audit if e.detail and e.detail.startswith("reminder 24h queued")]
    assert len(queued) == 1 and queued[0].user_id is None
    booking = await reminders.services.bookings.get(reminders.world.ctx(), booking_id)
    assert booking.status is BookingStatus.PENDING


async def test_a_cancel_reply_cancels_and_the_later_reminder_does_nothing(
    reminders: Reminders,
) -> None:
    _, booking_id = await reminders.book(local(2026, 3, 4, 10, 0))
    await reminders.relay_until(local(2026, 3, 3, 10, 0))
    assert len(reminders.sender.sent) == 1
    ctx = reminders.world.ctx()
    await reminders.services.sms.receive_inbound(
        ctx, PATIENT, CLINIC, "Cancel", "clicksend", "in-1"
    )
    booking = await reminders.services.bookings.get(ctx, booking_id)
    assert booking.status is BookingStatus.CANCELLED
    await reminders.relay_until(local(2026, 3, 4, 9, 0))
    assert len(reminders.sender.sent) == 1
    audit = await reminders.world.audit()
    assert any(e.detail and "cancelled or moved" in e.detail for e in audit)


async def test_a_yes_reply_confirms(reminders: Reminders) -> None:
    _, booking_id = await reminders.book(local(2026, 3, 4, 10, 0))
    await reminders.relay_until(local(2026, 3, 3, 10, 0))
    ctx = reminders.world.ctx()
    await reminders.services.sms.receive_inbound(ctx, PATIENT, CLINIC, "YES", "clicksend", "in-2")
    booking = await reminders.services.bookings.get(ctx, booking_id)
    assert booking.status is BookingStatus.CONFIRMED


async def test_a_moved_booking_is_reminded_of_its_new_time_only(reminders: Reminders) -> None:
    _, booking_id = await reminders.book(local(2026, 3, 4, 10, 0))
    ctx = reminders.world.ctx()
    new_start = local(2026, 3, 6, 11, 0)
    await reminders.services.bookings.reschedule(
        ctx,
        RescheduleBooking(
            booking_id=booking_id, starts_at=new_start, ends_at=new_start + timedelta(minutes=45)
        ),
    )
    await reminders.relay_until(local(2026, 3, 6, 10, 0))
    bodies = [m.body for m in reminders.sender.sent]
    assert len(bodies) == 2
    assert all("Fri 06 Mar at 11:00" in body for body in bodies)


async def test_an_opted_out_patient_gets_no_reminder(reminders: Reminders) -> None:
    contact_id, _ = await reminders.book(local(2026, 3, 4, 10, 0))
    ctx = reminders.world.ctx()
    await reminders.services.contacts.update(
        ctx, UpdateContact(contact_id=contact_id, sms_opt_in=False)
    )
    await reminders.relay_until(local(2026, 3, 4, 9, 0))
    assert reminders.sender.sent == []
    audit = await reminders.world.audit()
    assert any(e.detail and e.detail.startswith("reminder skipped: contact") for e in audit)


async def test_a_cancelled_booking_is_never_reminded(reminders: Reminders) -> None:
    _, booking_id = await reminders.book(local(2026, 3, 4, 10, 0))
    await reminders.services.bookings.cancel(
        reminders.world.ctx(), CancelBooking(booking_id=booking_id)
    )
    await reminders.relay_until(local(2026, 3, 4, 9, 0))
    assert reminders.sender.sent == []


async def test_a_no_show_makes_one_follow_up_task_for_the_next_morning(
    reminders: Reminders,
) -> None:
    contact_id, booking_id = await reminders.book(local(2026, 3, 4, 10, 0))
    await reminders.relay_until(local(2026, 3, 4, 11, 0))
    await reminders.services.bookings.mark_no_show(reminders.world.ctx(), booking_id)
    await reminders.relay_until(local(2026, 3, 4, 11, 1))
    await reminders.redeliver("BookingMarkedNoShow")
    [task] = [t for t in await reminders.tasks() if t.booking_id == booking_id]
    assert task.due_at == local(2026, 3, 5, 9, 0)
    assert task.contact_id == contact_id
    assert "no-show" in (task.description or "")


async def test_a_reminder_uses_the_transactional_kind(reminders: Reminders) -> None:
    await reminders.book(local(2026, 3, 4, 10, 0))
    await reminders.relay_until(local(2026, 3, 3, 10, 0))
    async with reminders.world.gateway.unit_of_work(None) as uow:
        done = await uow.outbox.list_status("done", 1000)
    kinds = [m.event.payload["kind"] for m in done if m.event.name == "SmsQueued"]
    assert kinds == [SmsKind.TRANSACTIONAL.value]


async def test_a_c_reply_to_the_reminder_cancels_as_the_reminder_says(
    reminders: Reminders,
) -> None:
    _, booking_id = await reminders.book(local(2026, 3, 4, 10, 0))
    await reminders.relay_until(local(2026, 3, 3, 10, 0))
    [reminder] = reminders.sender.sent
    assert "C to cancel" in reminder.body
    ctx = reminders.world.ctx()
    reply = await reminders.services.sms.receive_inbound(
        ctx, PATIENT, CLINIC, "C", "clicksend", "in-c"
    )
    assert (reply.intent, reply.intent_confidence) == (SmsIntent.CANCEL, 1.0)
    booking = await reminders.services.bookings.get(ctx, booking_id)
    assert booking.status is BookingStatus.CANCELLED


async def test_a_code_means_what_the_clinics_last_message_said_for_a_week(
    reminders: Reminders,
) -> None:
    contact_id, booking_id = await reminders.book(local(2026, 3, 20, 10, 0))
    ctx = reminders.world.ctx()
    sms = reminders.services.sms
    reminders.world.clock.set(local(2026, 3, 10, 12, 0))
    await sms.send(
        ctx,
        contact_id,
        "Your MRI is booked. Reply C to confirm.",
        kind=SmsKind.TRANSACTIONAL,
        from_number=CLINIC,
    )
    reminders.world.clock.set(local(2026, 3, 10, 13, 0))
    reply = await sms.receive_inbound(ctx, PATIENT, CLINIC, "C", "clicksend", "in-1")
    assert reply.intent is SmsIntent.CONFIRM
    assert (await reminders.services.bookings.get(ctx, booking_id)).status is (
        BookingStatus.CONFIRMED
    )
    # STOP stays binding even where a message offered no such code.
    reminders.world.clock.set(local(2026, 3, 10, 14, 0))
    await sms.send(
        ctx,
        contact_id,
        "Reply STOP to cancel reminders. Reply Y to confirm.",
        kind=SmsKind.TRANSACTIONAL,
        from_number=CLINIC,
    )
    stop = await sms.receive_inbound(ctx, PATIENT, CLINIC, "STOP", "clicksend", "in-2")
    assert stop.intent is SmsIntent.OPT_OUT


async def test_an_old_prompt_defines_no_code(reminders: Reminders) -> None:
    contact_id, _ = await reminders.book(local(2026, 3, 30, 10, 0))
    ctx = reminders.world.ctx()
    reminders.world.clock.set(local(2026, 3, 10, 12, 0))
    await reminders.services.sms.send(
        ctx, contact_id, "Reply N to cancel.", kind=SmsKind.TRANSACTIONAL, from_number=CLINIC
    )
    reminders.world.clock.set(local(2026, 3, 18, 12, 0))  # eight days on
    reply = await reminders.services.sms.receive_inbound(
        ctx, PATIENT, CLINIC, "N", "clicksend", "in-1"
    )
    assert reply.intent is not SmsIntent.CANCEL
