"""Bookings: scans booked for contacts, and their life cycle."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import OPEN_STATUSES, Action, Booking, BookingStatus, Resource
from crm_domain.entities._fields import coerce_enum
from crm_domain.errors import Conflict, NotFound, ValidationError
from crm_domain.pagination import Page
from crm_domain.policies.rbac import Authorizer
from crm_domain.policies.reminders import due_reminders
from crm_domain.policies.slots import free_slots
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.queries import MAX_LIMIT, BookingQuery
from crm_domain.services._base import Call, ServiceBase
from crm_domain.services._refs import require_reference
from crm_domain.services.commands import (
    CancelBooking,
    CreateBooking,
    RescheduleBooking,
    UpsertExternalBooking,
)
from crm_domain.services.events import EventName
from crm_domain.values import TimeRange

#: The longest a single booking may last; also bounds the overlap search window.
MAX_BOOKING_LENGTH = timedelta(hours=12)


def _facts(booking: Booking) -> dict[str, Any]:
    """Non-PHI facts about a booking, for event payloads (reminders use the times)."""
    return {
        "booking_id": booking.id,
        "contact_id": booking.contact_id,
        "service_type": booking.service_type,
        "status": booking.status.value,
        "starts_at": booking.starts_at.isoformat(),
        "ends_at": booking.ends_at.isoformat(),
        "source": booking.source,
        "external_id": booking.external_id,
    }


def _time_range(starts_at: datetime, ends_at: datetime) -> TimeRange:
    # Field names as the caller wrote them (starts_at/ends_at), not TimeRange's.
    try:
        when = TimeRange(starts_at, ends_at)
    except ValidationError as error:
        field = "starts_at" if error.field == "start" else "ends_at"
        raise ValidationError(field, error.reason) from None
    if when.end - when.start > MAX_BOOKING_LENGTH:
        raise ValidationError("ends_at", "a booking lasts at most 12 hours")
    return when


_TRANSITION_EVENTS = {
    BookingStatus.CONFIRMED: EventName.BOOKING_CONFIRMED,
    BookingStatus.CANCELLED: EventName.BOOKING_CANCELLED,
    BookingStatus.COMPLETED: EventName.BOOKING_COMPLETED,
    BookingStatus.NO_SHOW: EventName.BOOKING_MARKED_NO_SHOW,
}


def _moved_to(booking: Booking, status: BookingStatus, now: datetime) -> Booking:
    """Apply the life-cycle transition to ``status`` (``Conflict`` when illegal)."""
    if status is booking.status:
        return booking
    if status is BookingStatus.CONFIRMED:
        return booking.confirmed(now)
    if status is BookingStatus.CANCELLED:
        return booking.cancelled(now)
    if status is BookingStatus.COMPLETED:
        return booking.completed(now)
    if status is BookingStatus.NO_SHOW:
        return booking.marked_no_show(now)
    raise Conflict(f"a {booking.status.value} booking cannot go back to {status.value}")


class BookingService:
    """Use cases on bookings.

    Permissions: ``bookings:create`` to create (and to upsert from a webhook),
    ``bookings:update`` for every life-cycle change, ``bookings:read`` to read.

    Overlap check (on by default, ``prevent_overlaps=False`` turns it off):
    creating or rescheduling a booking is refused with ``Conflict`` when another
    *open* (pending or confirmed) booking of the same ``service_type`` at the
    location lies closer than the location's ``booking_buffer_minutes`` — one
    scanner per modality, with time to clean it and change patients.  Bookings
    upserted from an external system skip the check: that system is the
    source of truth for its own calendar.  Opening hours are not enforced here
    (staff may book outside them on purpose).
    """

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
        *,
        prevent_overlaps: bool = True,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)
        self._prevent_overlaps = prevent_overlaps

    # -- commands ---------------------------------------------------------------

    async def create(self, ctx: Context, command: CreateBooking) -> Booking:
        """Book a scan for a contact of the location; emits ``BookingCreated``.

        ``NotFound`` (field ``contact_id``) when the contact is unknown here —
        also when it belongs to another location; nothing is stored then.
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.BOOKINGS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="booking",
            write=True,
        ) as call:
            when = _time_range(command.starts_at, command.ends_at)
            await self._require_contact(call.uow, command.contact_id)
            now = base.clock.now()
            booking = Booking(
                id=base.ids.new_id(),
                tenant_id=ctx.tenant_id,
                contact_id=command.contact_id,
                service_type=command.service_type,
                starts_at=when.start,
                ends_at=when.end,
                external_id=command.external_id,
                source=command.source,
                notes=command.notes,
                created_at=now,
                updated_at=now,
            )
            call.resource_id = booking.id
            await self._refuse_overlap(call.uow, booking)
            await call.uow.bookings.add(booking)
            await call.emit(EventName.BOOKING_CREATED, "booking", booking.id, _facts(booking))
            await self._schedule_reminders(call, booking)
            return booking

    async def reschedule(self, ctx: Context, command: RescheduleBooking) -> Booking:
        """Move an open booking (it needs confirming again); emits ``BookingRescheduled``."""

        async def change(call: Call, booking: Booking) -> Booking:
            when = _time_range(command.starts_at, command.ends_at)
            moved = booking.rescheduled(when, self._base.clock.now())
            await self._refuse_overlap(call.uow, moved)
            # The old reminders stay in the outbox and find the start moved: they do nothing.
            await self._schedule_reminders(call, moved)
            return moved

        return await self._change(
            ctx, command.booking_id, EventName.BOOKING_RESCHEDULED, change, "rescheduled"
        )

    async def cancel(self, ctx: Context, command: CancelBooking) -> Booking:
        """Cancel an open booking; emits ``BookingCancelled``."""

        async def change(_call: Call, booking: Booking) -> Booking:
            return booking.cancelled(self._base.clock.now(), command.reason)

        return await self._change(
            ctx, command.booking_id, EventName.BOOKING_CANCELLED, change, "cancelled"
        )

    async def confirm(self, ctx: Context, booking_id: str) -> Booking:
        """Mark an open booking confirmed by the patient; emits ``BookingConfirmed``."""

        async def change(_call: Call, booking: Booking) -> Booking:
            return booking.confirmed(self._base.clock.now())

        return await self._change(ctx, booking_id, EventName.BOOKING_CONFIRMED, change, "confirmed")

    async def mark_no_show(self, ctx: Context, booking_id: str) -> Booking:
        """Record that the patient did not come; emits ``BookingMarkedNoShow``.

        Only an open booking that has started can become a no-show; a cancelled
        one never does (``Conflict``).
        """

        async def change(_call: Call, booking: Booking) -> Booking:
            return booking.marked_no_show(self._base.clock.now())

        return await self._change(
            ctx, booking_id, EventName.BOOKING_MARKED_NO_SHOW, change, "no_show"
        )

    async def complete(self, ctx: Context, booking_id: str) -> Booking:
        """Record that the scan took place; emits ``BookingCompleted``."""

        async def change(_call: Call, booking: Booking) -> Booking:
            return booking.completed(self._base.clock.now())

        return await self._change(ctx, booking_id, EventName.BOOKING_COMPLETED, change, "completed")

    async def upsert_external(self, ctx: Context, command: UpsertExternalBooking) -> Booking:
        """Create or update the booking another system knows as ``command.external_id``.

        Idempotent for webhooks that may be delivered twice: repeating a command
        changes nothing and emits nothing.  A changed time reschedules, a given
        ``status`` moves the booking through its life cycle (``Conflict`` when
        the move is illegal, e.g. a cancelled booking to no-show); each change
        emits its event.  A new booking's contact must be one of the location's
        (``NotFound`` naming ``contact_id`` otherwise, as in :meth:`create`).
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.BOOKINGS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="booking",
            write=True,
        ) as call:
            when = _time_range(command.starts_at, command.ends_at)
            status = (
                None
                if command.status is None
                else coerce_enum(BookingStatus, command.status, "status")
            )
            now = base.clock.now()
            try:
                existing: Booking | None = await call.uow.bookings.get_by_external_id(
                    command.external_id
                )
            except NotFound:
                existing = None
            if existing is None:
                await self._require_contact(call.uow, command.contact_id)
                booking = Booking(
                    id=base.ids.new_id(),
                    tenant_id=ctx.tenant_id,
                    contact_id=command.contact_id,
                    service_type=command.service_type,
                    starts_at=when.start,
                    ends_at=when.end,
                    external_id=command.external_id,
                    source=command.source,
                    notes=command.notes,
                    created_at=now,
                    updated_at=now,
                    external_updated_at=command.occurred_at,
                )
                if status is not None and status is not BookingStatus.PENDING:
                    booking = _moved_to(booking, status, now)
                call.resource_id = booking.id
                await call.uow.bookings.add(booking)
                await call.emit(EventName.BOOKING_CREATED, "booking", booking.id, _facts(booking))
                # A Wix booking is reminded like any other (a closed one's reminders do nothing).
                await self._schedule_reminders(call, booking)
                return booking

            call.action = AuditAction.UPDATE
            call.resource_id = existing.id
            if existing.contact_id != command.contact_id:
                raise Conflict(
                    f"booking {existing.id} with this external_id belongs to another contact"
                )
            if (
                command.occurred_at is not None
                and existing.external_updated_at is not None
                and command.occurred_at <= existing.external_updated_at
            ):
                # Delivered out of order: a newer change is already applied.
                call.detail = "older than the applied change: unchanged"
                return existing
            booking, events = existing, []
            if (booking.starts_at, booking.ends_at) != (when.start, when.end):
                booking = booking.rescheduled(when, now)
                events.append(EventName.BOOKING_RESCHEDULED)
            # "pending" from a sender means "not decided yet": it never reopens a booking.
            if status is not None and status not in (BookingStatus.PENDING, booking.status):
                booking = _moved_to(booking, status, now)
                events.append(_TRANSITION_EVENTS[status])
            if (booking.service_type, booking.notes) != (command.service_type, command.notes):
                booking = attrs.evolve(
                    booking,
                    service_type=command.service_type,
                    notes=command.notes,
                    updated_at=now,
                )
            if command.occurred_at is not None:
                booking = attrs.evolve(booking, external_updated_at=command.occurred_at)
            if booking == existing:
                call.detail = "unchanged"
                return existing
            await call.uow.bookings.update(booking)
            for name in events:
                await call.emit(name, "booking", booking.id, _facts(booking))
            if EventName.BOOKING_RESCHEDULED in events:
                await self._schedule_reminders(call, booking)
            return booking

    # -- queries ----------------------------------------------------------------

    async def get(self, ctx: Context, booking_id: str) -> Booking:
        """Return one booking of the caller's location (``NotFound`` otherwise)."""
        async with self._base.use_case(
            ctx,
            Resource.BOOKINGS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="booking",
            resource_id=booking_id,
            write=False,
        ) as call:
            return await call.uow.bookings.get(booking_id)

    async def list(self, ctx: Context, query: BookingQuery | None = None) -> Page[Booking]:
        """One page of the location's bookings matching ``query``, newest first."""
        async with self._base.use_case(
            ctx,
            Resource.BOOKINGS,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="booking",
            write=False,
        ) as call:
            page = await call.uow.bookings.list(query or BookingQuery())
            call.detail = f"{len(page.items)} returned"
            return page

    async def free_slots(
        self,
        ctx: Context,
        service_type: str | None,
        start: datetime,
        end: datetime,
        duration_minutes: int = 30,
    ) -> builtins.list[tuple[datetime, datetime]]:
        """Free slots for ``service_type`` in ``[start, end)``, earliest first (``bookings:read``).

        ``service_type`` ``None``: any service — every open booking counts.

        Inside the location's opening hours (local time, DST-aware), clear of
        every open booking of the same service by the location's buffer
        (:func:`~crm_domain.policies.slots.free_slots`).  ``ValidationError``
        on ``from``/``to`` (at most 31 days) or ``duration`` (5 to 720 minutes).
        """
        if service_type is not None and not service_type.strip():
            raise ValidationError("service", "must not be empty")
        if start.utcoffset() is None or end.utcoffset() is None:
            raise ValidationError("from", "times need a UTC offset")
        if end <= start:
            raise ValidationError("to", "must be after from")
        if end - start > timedelta(days=31):
            raise ValidationError("to", "at most 31 days after from")
        if not 5 <= duration_minutes <= 720:
            raise ValidationError("duration", "must be 5 to 720 minutes")
        async with self._base.use_case(
            ctx,
            Resource.BOOKINGS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="booking",
            write=False,
        ) as call:
            location = await call.uow.locations.get(ctx.tenant_id)
            buffer = timedelta(minutes=location.settings.booking_buffer_minutes)
            query = BookingQuery(
                service_type=service_type,
                starts_from=start - buffer - MAX_BOOKING_LENGTH,
                starts_to=end + buffer,
                limit=MAX_LIMIT,
            )
            busy = [(b.starts_at, b.ends_at) async for b in _open_bookings(call.uow, query)]
            slots = free_slots(
                start=start,
                end=end,
                hours=location.settings.operating_hours,
                timezone=location.timezone,
                duration=timedelta(minutes=duration_minutes),
                buffer=buffer,
                busy=busy,
            )
            call.detail = f"{len(slots)} free slots for {service_type or 'any service'}"
            return slots

    # -- helpers --------------------------------------------------------------

    async def _change(
        self,
        ctx: Context,
        booking_id: str,
        event: EventName,
        change: Callable[[Call, Booking], Awaitable[Booking]],
        verb: str,
    ) -> Booking:
        async with self._base.use_case(
            ctx,
            Resource.BOOKINGS,
            Action.UPDATE,
            audit=AuditAction.UPDATE,
            resource_type="booking",
            resource_id=booking_id,
            write=True,
        ) as call:
            booking = await call.uow.bookings.get(booking_id)
            changed = await change(call, booking)
            call.detail = verb
            await call.uow.bookings.update(changed)
            await call.emit(event, "booking", changed.id, _facts(changed))
            return changed

    async def _schedule_reminders(self, call: Call, booking: Booking) -> None:
        """Queue the booking's SMS reminders, each dated when it is due (same unit of work).

        Each event names the start it reminds of; the consumer checks the booking
        still starts then and is open, so a cancelled or moved booking's
        reminders do nothing and need no deleting.
        """
        location = await call.uow.locations.get(booking.tenant_id)
        now = self._base.clock.now()
        for offset, due in due_reminders(booking.starts_at, location.timezone, now).items():
            await call.emit(
                EventName.BOOKING_REMINDER_DUE,
                "booking",
                booking.id,
                {
                    "booking_id": booking.id,
                    "contact_id": booking.contact_id,
                    "starts_at": booking.starts_at.isoformat(),
                    "reminder": offset,
                },
                at=due,
            )

    @staticmethod
    async def _require_contact(uow: UnitOfWork, contact_id: str) -> None:
        # Another location's contact reads as unknown: NotFound, never a hint it exists.
        await require_reference(uow.contacts.get, "contact_id", "contact", contact_id)

    async def _refuse_overlap(self, uow: UnitOfWork, booking: Booking) -> None:
        if not self._prevent_overlaps:
            return
        location = await uow.locations.get(booking.tenant_id)
        buffer = timedelta(minutes=location.settings.booking_buffer_minutes)
        query = BookingQuery(
            service_type=booking.service_type,
            starts_from=booking.starts_at - buffer - MAX_BOOKING_LENGTH,
            starts_to=booking.ends_at + buffer,
            limit=MAX_LIMIT,
        )
        async for other in _open_bookings(uow, query):
            if (
                other.id != booking.id
                and other.starts_at < booking.ends_at + buffer
                and booking.starts_at < other.ends_at + buffer
            ):
                raise Conflict(
                    f"overlaps booking {other.id} ({other.service_type}, "
                    f"{other.starts_at.isoformat()}–{other.ends_at.isoformat()}) "
                    f"with the location's {location.settings.booking_buffer_minutes}-minute "
                    "buffer"
                )


async def _open_bookings(uow: UnitOfWork, query: BookingQuery) -> AsyncIterator[Booking]:
    """Every open (pending or confirmed) booking ``query`` matches, page after page."""
    while True:
        page = await uow.bookings.list(query)
        for booking in page.items:
            if booking.status in OPEN_STATUSES:
                yield booking
        if page.next_cursor is None:
            return
        query = attrs.evolve(query, cursor=page.next_cursor)


__all__ = ["MAX_BOOKING_LENGTH", "BookingService"]
