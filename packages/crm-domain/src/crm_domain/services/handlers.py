"""Outbox consumers of the domain: what happens *after* an event is committed.

An entry point's worker (``crm worker``, the in-process worker, a queue
consumer) hands each :class:`~crm_domain.entities.OutboxMessage` to the
handlers registered for its event name.  Delivery is at least once, so every
handler is idempotent on ``event.id``; handlers act as the location's system
user (:meth:`Context.system`) and go through the ordinary use cases, so RBAC,
the unit of work and the audit entry are the same as for a person.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from crm_domain.context import Context
from crm_domain.entities import DomainEvent, OutboxMessage
from crm_domain.errors import Conflict, NotFound
from crm_domain.services.automations import AUTOMATION_TRIGGERS, AutomationService
from crm_domain.services.campaigns import EmailMarketingService
from crm_domain.services.contacts import ContactService
from crm_domain.services.events import EventName
from crm_domain.services.reminders import ReminderService
from crm_domain.services.sms import SmsService
from crm_domain.services.webhooks import EXTERNAL_BOOKING_RECEIVED, WebhookService

#: A consumer of one event kind (same shape as the HTTP package's worker expects).
EventHandler = Callable[[OutboxMessage], Awaitable[None]]

#: Events that change how engaged a contact is, and so their warmness.
WARMNESS_EVENTS = (
    EventName.TOUCHPOINT_ADDED,
    EventName.BOOKING_CREATED,
    EventName.BOOKING_CANCELLED,
    EventName.BOOKING_MARKED_NO_SHOW,
    EventName.BOOKING_COMPLETED,
)


class RescoreWarmness:
    """Rescores the contact named in an event's payload (``contact_id``)."""

    def __init__(self, contacts: ContactService) -> None:
        self._contacts = contacts

    async def __call__(self, message: OutboxMessage) -> None:
        """Rescore once per event id; a contact deleted since is skipped."""
        event = message.event
        contact_id = event.payload.get("contact_id")
        if event.tenant_id is None or not isinstance(contact_id, str):
            return
        request_id = event.payload.get("request_id")
        ctx = Context.system(
            event.tenant_id, request_id=request_id if isinstance(request_id, str) else None
        )
        try:
            await self._contacts.rescore_warmness(ctx, contact_id, event_id=event.id)
        except NotFound:
            # Deleted after the event: nothing left to score (the failure is audited).
            return


def warmness_handlers(contacts: ContactService) -> Mapping[str, tuple[EventHandler, ...]]:
    """Event name → handlers that keep warmness current."""
    handler = RescoreWarmness(contacts)
    return {name.value: (handler,) for name in WARMNESS_EVENTS}


def _system_for(event: DomainEvent) -> Context | None:
    """The location's system user, acting on the event's request (``None``: no location)."""
    if event.tenant_id is None:
        return None
    request_id = event.payload.get("request_id")
    return Context.system(
        event.tenant_id, request_id=request_id if isinstance(request_id, str) else None
    )


class DeliverSms:
    """Sends the message an ``SmsQueued`` event names (once: see :meth:`SmsService.deliver`).

    A provider outage raises, so the relay retries the event with back-off; a
    message deleted since (its contact erased) is skipped.
    """

    def __init__(self, sms: SmsService) -> None:
        self._sms = sms

    async def __call__(self, message: OutboxMessage) -> None:
        """Deliver the queued SMS of this event."""
        event = message.event
        ctx = _system_for(event)
        if ctx is None:
            return
        try:
            await self._sms.deliver(
                ctx, event.aggregate_id, consent_exempt=event.payload.get("consent_exempt") is True
            )
        except NotFound:
            return


def sms_handlers(sms: SmsService) -> Mapping[str, tuple[EventHandler, ...]]:
    """Event name → handlers that send queued SMS."""
    return {EventName.SMS_QUEUED.value: (DeliverSms(sms),)}


class ApplyExternalBooking:
    """Creates or moves the booking an accepted webhook described (``ExternalBookingReceived``).

    A booking change the life cycle refuses (e.g. confirming a cancelled
    booking) is a ``Conflict``: audited as failed by the use case and not
    retried — retrying cannot make it legal.
    """

    def __init__(self, webhooks: WebhookService) -> None:
        self._webhooks = webhooks

    async def __call__(self, message: OutboxMessage) -> None:
        """Apply the event once (the upsert is idempotent and ordered by event time)."""
        event = message.event
        ctx = _system_for(event)
        if ctx is None:
            return
        try:
            await self._webhooks.apply_booking(ctx, dict(event.payload))
        except (Conflict, NotFound):
            return


def webhook_handlers(webhooks: WebhookService) -> Mapping[str, tuple[EventHandler, ...]]:
    """Event name → handlers that apply accepted webhooks."""
    return {EXTERNAL_BOOKING_RECEIVED: (ApplyExternalBooking(webhooks),)}


class _CampaignStep:
    """Runs one campaign step for the campaign an event names, as its location's system user.

    A campaign deleted since the event is skipped; any other failure raises, so
    the relay retries with back-off.
    """

    def __init__(self, campaigns: EmailMarketingService) -> None:
        self._campaigns = campaigns

    async def _step(self, ctx: Context, campaign_id: str) -> object:
        raise NotImplementedError

    async def __call__(self, message: OutboxMessage) -> None:
        """Run the step for the campaign this event names."""
        event = message.event
        ctx = _system_for(event)
        if ctx is None:
            return
        try:
            await self._step(ctx, event.aggregate_id)
        except NotFound:
            return


class SendCampaign(_CampaignStep):
    """Sends a campaign's pending deliveries on ``CampaignSending`` (see ``deliver``).

    Redelivery of the event, a second worker or a restart after a crash are
    all safe: the delivery rows say who is still to be sent.
    """

    async def _step(self, ctx: Context, campaign_id: str) -> object:
        return await self._campaigns.deliver(ctx, campaign_id)


class StartDueCampaign(_CampaignStep):
    """Starts a scheduled campaign when its ``CampaignDue`` event comes due (idempotent).

    A campaign already started, paused, cancelled or moved later is left alone,
    so a repeated or stale event does nothing.
    """

    async def _step(self, ctx: Context, campaign_id: str) -> object:
        return await self._campaigns.start_if_due(ctx, campaign_id)


def campaign_handlers(
    campaigns: EmailMarketingService,
) -> Mapping[str, tuple[EventHandler, ...]]:
    """Event name → handlers that start and send email campaigns."""
    return {
        EventName.CAMPAIGN_SENDING.value: (SendCampaign(campaigns),),
        EventName.CAMPAIGN_DUE.value: (StartDueCampaign(campaigns),),
    }


class SendBookingReminder:
    """Queues the SMS of a due ``BookingReminderDue`` event (once: a receipt per event)."""

    def __init__(self, reminders: ReminderService) -> None:
        self._reminders = reminders

    async def __call__(self, message: OutboxMessage) -> None:
        """Queue the reminder; a stale one (booking cancelled or moved) does nothing."""
        ctx = _system_for(message.event)
        if ctx is not None:
            await self._reminders.send_reminder(ctx, message.event)


class FollowUpNoShow:
    """Creates reception's next-morning task for a ``BookingMarkedNoShow`` event (once)."""

    def __init__(self, reminders: ReminderService) -> None:
        self._reminders = reminders

    async def __call__(self, message: OutboxMessage) -> None:
        """Create the follow-up task."""
        ctx = _system_for(message.event)
        if ctx is not None:
            await self._reminders.follow_up_no_show(ctx, message.event)


def reminder_handlers(reminders: ReminderService) -> Mapping[str, tuple[EventHandler, ...]]:
    """Event name → handlers that send booking reminders and follow up no-shows."""
    return {
        EventName.BOOKING_REMINDER_DUE.value: (SendBookingReminder(reminders),),
        EventName.BOOKING_MARKED_NO_SHOW.value: (FollowUpNoShow(reminders),),
    }


class RunAutomations:
    """Runs the location's enabled rules for an event (each once per event; depth-limited)."""

    def __init__(self, automations: AutomationService) -> None:
        self._automations = automations

    async def __call__(self, message: OutboxMessage) -> None:
        """Run the rules of this event's name."""
        ctx = _system_for(message.event)
        if ctx is not None:
            await self._automations.run(ctx, message.event)


def automation_handlers(automations: AutomationService) -> Mapping[str, tuple[EventHandler, ...]]:
    """Event name → the automation engine, for every event a rule may be triggered by."""
    handler = RunAutomations(automations)
    return {name.value: (handler,) for name in AUTOMATION_TRIGGERS}


def merge_handlers(
    *groups: Mapping[str, tuple[EventHandler, ...]],
) -> dict[str, tuple[EventHandler, ...]]:
    """Join handler maps; an event named in several keeps every handler, in order."""
    merged: dict[str, tuple[EventHandler, ...]] = {}
    for group in groups:
        for name, handlers in group.items():
            merged[name] = merged.get(name, ()) + tuple(handlers)
    return merged


__all__ = [
    "WARMNESS_EVENTS",
    "ApplyExternalBooking",
    "DeliverSms",
    "EventHandler",
    "FollowUpNoShow",
    "RescoreWarmness",
    "RunAutomations",
    "SendBookingReminder",
    "SendCampaign",
    "StartDueCampaign",
    "automation_handlers",
    "campaign_handlers",
    "merge_handlers",
    "reminder_handlers",
    "sms_handlers",
    "warmness_handlers",
    "webhook_handlers",
]
