"""BookingService on the in-memory gateway: life cycle, overlaps, webhook upserts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from crm_domain.audit import DirectAuditRecorder
from crm_domain.entities import BookingStatus, Role
from crm_domain.errors import Conflict, NotFound, PermissionDenied, ValidationError
from crm_domain.queries import BookingQuery
from crm_domain.services import (
    BookingService,
    CancelBooking,
    CreateBooking,
    RescheduleBooking,
    UpsertExternalBooking,
)

pytestmark = pytest.mark.anyio


def _at(world: Any, hours: float) -> datetime:
    start: datetime = world.clock.now() + timedelta(hours=hours)
    return start


async def _book(
    world: Any,
    contact_id: str,
    hours: float = 24,
    minutes: int = 30,
    service_type: str = "MRI",
    role: Role = Role.RECEPTIONIST,
) -> Any:
    start = _at(world, hours)
    return await world.services.bookings.create(
        world.ctx(role),
        CreateBooking(
            contact_id=contact_id,
            service_type=service_type,
            starts_at=start,
            ends_at=start + timedelta(minutes=minutes),
        ),
    )


async def test_create_stores_emits_and_audits(world: Any) -> None:
    contact_id = await world.new_contact()
    booking = await _book(world, contact_id)
    assert booking.status is BookingStatus.PENDING
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert await uow.bookings.get(booking.id) == booking
    [event] = await world.events("BookingCreated")
    assert event.payload["booking_id"] == booking.id
    assert event.payload["contact_id"] == contact_id
    assert event.payload["starts_at"] == booking.starts_at.isoformat()
    entry = (await world.audit())[-1]
    assert (entry.action, entry.resource_id) == ("CREATE", booking.id)


async def test_another_locations_contact_is_not_found_like_an_unknown_one(world: Any) -> None:
    melbourne_contact = await world.new_contact(world.melbourne)
    missing = "01JZZZZZZZZZZZZZZZZZZZZZZZ"
    audit_before = len(await world.audit())
    events_before = await world.event_names()
    details = []
    for contact_id in (melbourne_contact, missing):
        with pytest.raises(NotFound) as caught:
            await _book(world, contact_id)
        assert caught.value.field == "contact_id"
        details.append(caught.value.detail.replace(contact_id, "<id>"))
    # Same answer for both: nothing tells that the first one exists elsewhere.
    assert details == ["contact_id: contact '<id>' not found"] * 2
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert await uow.bookings.count(BookingQuery()) == 0
    assert await world.event_names() == events_before
    failures = (await world.audit())[audit_before:]
    assert [(e.action, e.resource_type, e.outcome.value) for e in failures] == [
        ("CREATE", "booking", "failed")
    ] * 2
    assert all(e.detail.startswith("NotFound: contact_id") for e in failures)
    assert all(e.resource_id is None for e in failures)


async def test_upsert_external_refuses_another_locations_contact(world: Any) -> None:
    melbourne_contact = await world.new_contact(world.melbourne)
    with pytest.raises(NotFound) as caught:
        await world.services.bookings.upsert_external(
            world.ctx(), _upsert(world, melbourne_contact)
        )
    assert caught.value.field == "contact_id"
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert await uow.bookings.count(BookingQuery()) == 0


async def test_times_are_validated(world: Any) -> None:
    contact_id = await world.new_contact()
    bookings = world.services.bookings
    start = _at(world, 24)
    for end, field in (
        (start, "ends_at"),
        (start - timedelta(minutes=5), "ends_at"),
        (start + timedelta(hours=13), "ends_at"),
        (start.replace(tzinfo=None) + timedelta(hours=1), "ends_at"),
    ):
        with pytest.raises(ValidationError) as caught:
            await bookings.create(
                world.ctx(),
                CreateBooking(
                    contact_id=contact_id, service_type="MRI", starts_at=start, ends_at=end
                ),
            )
        assert caught.value.field == field


async def test_overlap_within_the_buffer_is_a_conflict(world: Any) -> None:
    contact_id = await world.new_contact()
    first = await _book(world, contact_id, hours=24, minutes=30)  # 09:00–09:30 (+15 min buffer)
    with pytest.raises(Conflict) as caught:
        await _book(world, contact_id, hours=24.25)  # 09:15: overlaps
    assert first.id in caught.value.detail
    with pytest.raises(Conflict):
        await _book(world, contact_id, hours=24.6)  # 09:36: inside the 15-minute buffer
    with pytest.raises(Conflict):
        await _book(world, contact_id, hours=23.5, minutes=20)  # ends 08:50, buffer to 09:05
    await _book(world, contact_id, hours=24.75)  # 09:45: after the buffer
    await _book(world, contact_id, hours=24.25, service_type="CT")  # another scanner
    # Cancelling frees the slot.
    await world.services.bookings.cancel(world.ctx(), CancelBooking(booking_id=first.id))
    await _book(world, contact_id, hours=24)


async def test_overlap_check_can_be_turned_off(world: Any) -> None:
    contact_id = await world.new_contact()
    service = BookingService(
        world.gateway,
        world.services.authorizer,
        DirectAuditRecorder(world.gateway),
        world.clock,
        world.ids,
        prevent_overlaps=False,
    )
    start = _at(world, 24)
    for _ in range(2):
        await service.create(
            world.ctx(),
            CreateBooking(
                contact_id=contact_id,
                service_type="MRI",
                starts_at=start,
                ends_at=start + timedelta(minutes=30),
            ),
        )
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert await uow.bookings.count(BookingQuery()) == 2


async def test_life_cycle(world: Any) -> None:
    contact_id = await world.new_contact()
    bookings = world.services.bookings
    booking = await _book(world, contact_id, hours=2)
    confirmed = await bookings.confirm(world.ctx(Role.DOCTOR), booking.id)
    assert confirmed.status is BookingStatus.CONFIRMED
    start = _at(world, 26)
    moved = await bookings.reschedule(
        world.ctx(),
        RescheduleBooking(
            booking_id=booking.id, starts_at=start, ends_at=start + timedelta(minutes=45)
        ),
    )
    assert (moved.status, moved.starts_at) == (BookingStatus.PENDING, start)
    world.clock.advance(timedelta(hours=27))
    done = await bookings.complete(world.ctx(), booking.id)
    assert done.status is BookingStatus.COMPLETED
    with pytest.raises(Conflict):
        await bookings.cancel(world.ctx(), CancelBooking(booking_id=booking.id))
    # Reminders (scheduled events, see test_service_reminders.py) aside.
    names = [n for n in await world.event_names() if n != "BookingReminderDue"]
    assert [n for n in names if n.startswith("Booking")] == [
        "BookingCreated",
        "BookingConfirmed",
        "BookingRescheduled",
        "BookingCompleted",
    ]
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert (await uow.bookings.get(booking.id)).status is BookingStatus.COMPLETED


async def test_a_cancelled_booking_never_becomes_a_no_show(world: Any) -> None:
    contact_id = await world.new_contact()
    bookings = world.services.bookings
    booking = await _book(world, contact_id, hours=1)
    cancelled = await bookings.cancel(
        world.ctx(), CancelBooking(booking_id=booking.id, reason="feeling better")
    )
    assert cancelled.cancellation_reason == "feeling better"
    world.clock.advance(timedelta(hours=2))
    with pytest.raises(Conflict):
        await bookings.mark_no_show(world.ctx(), booking.id)
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert (await uow.bookings.get(booking.id)).status is BookingStatus.CANCELLED
    entry = (await world.audit())[-1]
    assert (entry.action, entry.outcome, entry.detail) == ("UPDATE", "failed", "Conflict")


async def test_no_show_only_after_the_start(world: Any) -> None:
    contact_id = await world.new_contact()
    bookings = world.services.bookings
    booking = await _book(world, contact_id, hours=1)
    with pytest.raises(Conflict):
        await bookings.mark_no_show(world.ctx(), booking.id)
    world.clock.advance(timedelta(hours=1, minutes=10))
    no_show = await bookings.mark_no_show(world.ctx(), booking.id)
    assert no_show.status is BookingStatus.NO_SHOW
    assert (await world.event_names())[-1] == "BookingMarkedNoShow"


async def test_readonly_cannot_change_bookings(world: Any) -> None:
    contact_id = await world.new_contact()
    booking = await _book(world, contact_id)
    with pytest.raises(PermissionDenied):
        await world.services.bookings.confirm(world.ctx(Role.READONLY), booking.id)
    with pytest.raises(PermissionDenied):
        await _book(world, contact_id, hours=48, role=Role.READONLY)
    assert (await world.services.bookings.get(world.ctx(Role.READONLY), booking.id)) == booking
    outcomes = [e.outcome.value for e in (await world.audit())[-3:]]
    assert outcomes == ["denied", "denied", "success"]


async def test_get_and_list(world: Any) -> None:
    contact_id = await world.new_contact()
    a = await _book(world, contact_id, hours=10)
    b = await _book(world, contact_id, hours=20)
    await world.services.bookings.cancel(world.ctx(), CancelBooking(booking_id=a.id))
    page = await world.services.bookings.list(world.ctx(), BookingQuery(status="pending"))
    assert [x.id for x in page.items] == [b.id]
    with pytest.raises(NotFound):
        await world.services.bookings.get(world.ctx(), "missing")


async def test_a_filter_on_another_locations_contact_finds_nothing(world: Any) -> None:
    melbourne_contact = await world.new_contact(world.melbourne)
    start = _at(world, 24)
    theirs = await world.services.bookings.create(
        world.ctx(location=world.melbourne),
        CreateBooking(
            contact_id=melbourne_contact,
            service_type="MRI",
            starts_at=start,
            ends_at=start + timedelta(minutes=30),
        ),
    )
    bookings = world.services.bookings
    for contact_id in (melbourne_contact, "01JZZZZZZZZZZZZZZZZZZZZZZZ"):
        page = await bookings.list(world.ctx(), BookingQuery(contact_id=contact_id))
        assert (page.items, page.next_cursor) == ((), None)
    there = await bookings.list(
        world.ctx(location=world.melbourne), BookingQuery(contact_id=melbourne_contact)
    )
    assert [b.id for b in there.items] == [theirs.id]


def _upsert(world: Any, contact_id: str, hours: float = 24, **extra: Any) -> UpsertExternalBooking:
    start = _at(world, hours)
    return UpsertExternalBooking(
        external_id="wix-123",
        contact_id=contact_id,
        service_type="MRI",
        starts_at=start,
        ends_at=start + timedelta(minutes=30),
        source="wix",
        **extra,
    )


async def test_upsert_external_is_idempotent(world: Any) -> None:
    contact_id = await world.new_contact()
    bookings = world.services.bookings
    system = world.ctx(Role.ADMIN)
    first = await bookings.upsert_external(system, _upsert(world, contact_id))
    again = await bookings.upsert_external(system, _upsert(world, contact_id))
    assert again == first
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert await uow.bookings.count(BookingQuery()) == 1
    names = [n for n in await world.event_names() if n.startswith("Booking")]
    # Created once, with its reminders queued once (not again on the repeated delivery).
    assert [n for n in names if n != "BookingReminderDue"] == ["BookingCreated"]
    assert 1 <= names.count("BookingReminderDue") <= 2
    actions = [(e.action, e.detail) for e in (await world.audit())[-2:]]
    assert actions == [("CREATE", None), ("UPDATE", "unchanged")]

    moved = await bookings.upsert_external(system, _upsert(world, contact_id, hours=30))
    assert moved.id == first.id
    assert moved.starts_at == _at(world, 30)
    cancelled = await bookings.upsert_external(
        system, _upsert(world, contact_id, hours=30, status="cancelled")
    )
    assert cancelled.status is BookingStatus.CANCELLED
    names = [n for n in await world.event_names() if n.startswith("Booking")]
    assert [n for n in names if n != "BookingReminderDue"] == [
        "BookingCreated",
        "BookingRescheduled",
        "BookingCancelled",
    ]
    # The move queued the new start's reminders (the first ones go stale).
    assert names.count("BookingReminderDue") >= 2
    # A cancelled booking cannot be moved to no-show by a webhook either.
    world.clock.advance(timedelta(days=3))
    with pytest.raises(Conflict):
        await bookings.upsert_external(
            system, _upsert(world, contact_id, hours=30 - 72, status="no_show")
        )


async def test_upsert_external_new_with_status_and_unknown_status(world: Any) -> None:
    contact_id = await world.new_contact()
    bookings = world.services.bookings
    confirmed = await bookings.upsert_external(
        world.ctx(), _upsert(world, contact_id, status="confirmed")
    )
    assert confirmed.status is BookingStatus.CONFIRMED
    with pytest.raises(ValidationError) as caught:
        await bookings.upsert_external(world.ctx(), _upsert(world, contact_id, status="maybe"))
    assert caught.value.field == "status"
    other = await world.new_contact(phone="+61412345679")
    with pytest.raises(Conflict):
        await bookings.upsert_external(world.ctx(), _upsert(world, other))


async def test_upsert_external_pending_never_reopens(world: Any) -> None:
    contact_id = await world.new_contact()
    bookings = world.services.bookings
    confirmed = await bookings.upsert_external(
        world.ctx(), _upsert(world, contact_id, status="confirmed")
    )
    again = await bookings.upsert_external(
        world.ctx(), _upsert(world, contact_id, status="pending")
    )
    assert again == confirmed
    assert again.status is BookingStatus.CONFIRMED
