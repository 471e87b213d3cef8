"""Booking reminders by SMS and the follow-up of a missed scan (outbox consumers' use cases).

A booking created or moved queues ``BookingReminderDue`` events dated when
each reminder is due (:mod:`crm_domain.policies.reminders`); the worker hands
each over once its time has come, and :meth:`ReminderService.send_reminder`
queues the SMS.  A ``BookingMarkedNoShow`` event becomes a task for reception
(:meth:`ReminderService.follow_up_no_show`).  Both act as the location's
system user, at most once per event (a receipt in the same unit of work),
and are audited like any other write.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import (
    OPEN_STATUSES,
    Action,
    Booking,
    BookingStatus,
    DomainEvent,
    Location,
    Resource,
    SmsKind,
    SmsMessage,
    Task,
    TaskPriority,
    WebhookReceipt,
)
from crm_domain.errors import NotFound
from crm_domain.policies.rbac import Authorizer
from crm_domain.policies.reminders import follow_up_due
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.services._base import Call, ServiceBase
from crm_domain.services.events import EventName
from crm_domain.services.sms import SmsService
from crm_domain.services.tasks import _facts as _task_facts

#: Receipt source marking a reminder event handled (``WebhookReceipt``).
REMINDER_RECEIPTS = "outbox:reminder"
#: Receipt source marking a no-show event followed up.
NO_SHOW_RECEIPTS = "outbox:no-show"
#: What a reminder asks the patient to answer.  The inbound SMS path reads these codes
#: back from the reminder (:mod:`crm_domain.policies.reply_codes`), so a bare "C" cancels
#: after this message whatever an AI would guess; words ("yes", "cancel") work too.
REMINDER_REPLY_HINT = "Reply Y to confirm or C to cancel."


def reminder_text(booking: Booking, location: Location) -> str:
    """The reminder's body: what, where, when (local time) and how to answer."""
    local = booking.starts_at.astimezone(ZoneInfo(location.timezone))
    return (
        f"Reminder: your {booking.service_type} appointment at {location.name} is on "
        f"{local:%a %d %b} at {local:%H:%M}. {REMINDER_REPLY_HINT}"
    )


class ReminderService:
    """Use cases the worker runs for reminders and no-shows.

    ``sms_numbers`` maps a location's code to its SMS number
    (``CRM_SMS_NUMBERS``); a location without one gets no reminders (audited
    as skipped, not retried).
    """

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
        *,
        sms: SmsService,
        sms_numbers: Mapping[str, str] | None = None,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)
        self._sms = sms
        self._numbers = dict(sms_numbers or {})

    async def send_reminder(self, ctx: Context, event: DomainEvent) -> SmsMessage | None:
        """Queue the transactional SMS a ``BookingReminderDue`` event stands for, once.

        Nothing is sent (and the audit entry says why) when the event was
        handled before, the booking is gone, no longer open or moved since (its
        start differs from the event's), or the contact may not be texted
        (no phone, no consent, opted out, the number on the suppression list).
        """
        async with self._base.use_case(
            ctx,
            Resource.SMS,
            Action.SEND,
            audit=AuditAction.CREATE,
            resource_type="sms",
            write=True,
        ) as call:
            if not await self._first_time(call, REMINDER_RECEIPTS, event):
                call.detail = f"reminder event {event.id} already handled"
                return None
            booking = await self._booking(call, event)
            if booking is None:
                return None
            if booking.status not in OPEN_STATUSES or booking.starts_at != _start_of(event):
                call.detail = f"reminder skipped: booking {booking.id} cancelled or moved"
                return None
            contact = await call.uow.contacts.get(booking.contact_id)
            location = await call.uow.locations.get(ctx.tenant_id)
            refusal = await self._sms.refusal(
                call.uow, contact, SmsKind.TRANSACTIONAL, self._base.clock.now(), location.timezone
            )
            if refusal is not None:
                call.detail = f"reminder skipped: {refusal}"
                return None
            number = self._numbers.get(location.code)
            if number is None:
                call.detail = "reminder skipped: no SMS number for this location"
                return None
            message = await self._sms.queue_in(
                call, contact, number, reminder_text(booking, location), SmsKind.TRANSACTIONAL
            )
            call.resource_id = message.id
            call.detail = (
                f"reminder {event.payload.get('reminder')} queued for booking {booking.id}"
            )
            return message

    async def follow_up_no_show(self, ctx: Context, event: DomainEvent) -> Task | None:
        """Create reception's follow-up task for a missed scan, due 09:00 local next morning.

        Once per event; nothing when the booking is gone or no longer a no-show.
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.TASKS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="task",
            write=True,
        ) as call:
            if not await self._first_time(call, NO_SHOW_RECEIPTS, event):
                call.detail = f"no-show event {event.id} already handled"
                return None
            booking = await self._booking(call, event)
            if booking is None:
                return None
            if booking.status is not BookingStatus.NO_SHOW:
                call.detail = f"follow-up skipped: booking {booking.id} is {booking.status.value}"
                return None
            location = await call.uow.locations.get(ctx.tenant_id)
            now = base.clock.now()
            task = Task(
                id=base.ids.new_id(),
                tenant_id=booking.tenant_id,
                title=f"Follow up missed {booking.service_type} scan"[:200],
                description=f"Booking {booking.id} was marked a no-show; call to rebook.",
                contact_id=booking.contact_id,
                booking_id=booking.id,
                priority=TaskPriority.HIGH,
                due_at=follow_up_due(booking.starts_at, location.timezone),
                created_at=now,
                updated_at=now,
            )
            call.resource_id = task.id
            await call.uow.tasks.add(task)
            await call.emit(EventName.TASK_CREATED, "task", task.id, _task_facts(task))
            call.detail = f"no-show follow-up for booking {booking.id}"
            return task

    # -- helpers --------------------------------------------------------------

    async def _first_time(self, call: Call, source: str, event: DomainEvent) -> bool:
        # Recorded in the use case's own unit of work: the effect and the receipt commit together.
        receipt = WebhookReceipt(
            source=source,
            event_id=event.id,
            tenant_id=event.tenant_id,
            received_at=self._base.clock.now(),
        )
        return await call.uow.webhook_receipts.record(receipt)

    @staticmethod
    async def _booking(call: Call, event: DomainEvent) -> Booking | None:
        try:
            return await call.uow.bookings.get(event.aggregate_id)
        except NotFound:
            call.detail = f"skipped: booking {event.aggregate_id} no longer exists"
            return None


def _start_of(event: DomainEvent) -> datetime | None:
    raw = event.payload.get("starts_at")
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


__all__ = [
    "NO_SHOW_RECEIPTS",
    "REMINDER_RECEIPTS",
    "REMINDER_REPLY_HINT",
    "ReminderService",
    "reminder_text",
]
