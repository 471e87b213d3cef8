"""Wiring: one function that builds every use-case service from ports.

As in cosmicpython's ``bootstrap.py``: the entry points (HTTP app, CLI, worker,
tests, examples) call :func:`bootstrap` with real or fake adapters and get the
services back.  Nothing is created at import time — no engine, no connection,
no default unit of work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

import attrs

from crm_domain.audit import AuditRecorder, DirectAuditRecorder
from crm_domain.clock import SystemClock, UlidFactory
from crm_domain.policies.rbac import Authorizer, GrantSource
from crm_domain.ports.ai import AIProvider
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.ports.messaging import Mailer, SmsSender
from crm_domain.ports.queue import QueueGateway
from crm_domain.services import (
    AccessService,
    AuditService,
    BookingService,
    ContactService,
    EventHandler,
    ReportingService,
    SmsService,
    TaskService,
    WebhookService,
    sms_handlers,
    warmness_handlers,
    webhook_handlers,
)
from crm_domain.services.automations import AutomationService
from crm_domain.services.campaigns import EmailMarketingService, UnsubscribeLinks
from crm_domain.services.handlers import (
    automation_handlers,
    campaign_handlers,
    merge_handlers,
    reminder_handlers,
)
from crm_domain.services.reminders import ReminderService
from crm_domain.services.suppressions import SuppressionService


@attrs.frozen(kw_only=True)
class Services:
    """Every use-case service, and the ports they were built from."""

    contacts: ContactService
    bookings: BookingService
    tasks: TaskService
    #: SMS received and sent: the use cases (``sms_sender`` is the port they send through).
    sms: SmsService
    access: AccessService
    audit: AuditService
    #: Metrics by dimension, plain-English questions and insights (``reports:read``).
    reports: ReportingService
    #: Bookings and leads pushed by Wix and ManyChat (accepted, then applied by the worker).
    webhooks: WebhookService
    #: The RBAC check the services use; HTTP guards may ask it too.
    authorizer: Authorizer
    grants: GrantSource
    audit_recorder: AuditRecorder
    gateway: DatabaseGateway
    clock: Clock
    ids: IdFactory
    ai: AIProvider | None = None
    queue: QueueGateway | None = None
    mailer: Mailer | None = None
    sms_sender: SmsSender | None = None
    #: Email campaigns: drafts, audiences, sending through ``mailer`` in the worker.
    campaigns: EmailMarketingService | None = None
    #: Booking reminders by SMS and no-show follow-ups (run by the worker).
    reminders: ReminderService | None = None
    #: Automation rules (``/api/automations``) and the engine the worker runs.
    automations: AutomationService | None = None
    #: The location's suppression list (``/api/suppressions``).
    suppressions: SuppressionService | None = None

    def event_handlers(self) -> Mapping[str, tuple[EventHandler, ...]]:
        """The domain's outbox consumers by event name, for a worker to register.

        Warmness rescored on touchpoint and booking events (needs ``ai``;
        without a provider the handlers change nothing), and queued SMS sent
        through ``sms_sender`` (``SmsQueued``), accepted booking webhooks
        applied (``ExternalBookingReceived``), campaigns sent, booking reminders
        and no-show follow-ups, and the location's automation rules.
        """
        # Merged, not unpacked: an event named by several groups keeps every handler
        # (BookingMarkedNoShow rescores warmness, follows up, and runs the rules).
        groups = [
            warmness_handlers(self.contacts),
            sms_handlers(self.sms),
            webhook_handlers(self.webhooks),
        ]
        if self.campaigns is not None:
            groups.append(campaign_handlers(self.campaigns))
        if self.reminders is not None:
            groups.append(reminder_handlers(self.reminders))
        if self.automations is not None:
            groups.append(automation_handlers(self.automations))
        return merge_handlers(*groups)


def bootstrap(
    gateway: DatabaseGateway,
    *,
    clock: Clock | None = None,
    ids: IdFactory | None = None,
    ai: AIProvider | None = None,
    queue: QueueGateway | None = None,
    mailer: Mailer | None = None,
    sms_sender: SmsSender | None = None,
    audit_recorder: AuditRecorder | None = None,
    prevent_booking_overlaps: bool = True,
    access_cache_ttl: timedelta = timedelta(seconds=30),
    on_access_change: Callable[[], Awaitable[None]] | None = None,
    unsubscribe_links: UnsubscribeLinks | None = None,
    mail_from: str | None = None,
    sms_numbers: Mapping[str, str] | None = None,
) -> Services:
    """Build the services on ``gateway``.

    Defaults: the system clock, ULID ids, and a :class:`DirectAuditRecorder`
    (one commit per read's audit entry; the HTTP layer passes a group-commit
    recorder).  ``ai``, ``queue``, ``mailer`` and ``sms_sender`` are optional: the core
    services work without them, and are handed on to the services that use them.
    Without ``ai``: contacts keep the warmness they are given, new tasks are
    ``normal``, inbound SMS are read by keywords only (opt-outs still act) and
    go to reception; :class:`crm_domain.memory.RuleOfThumbAI` is the in-library
    fake for tests and examples, ``crm-ai`` the real providers.

    ``access_cache_ttl`` (at most 60 s) is how long this process's one access
    cache keeps role grants, memberships, location lookups and IP allowlists:
    a change made elsewhere takes effect within it, one made through the
    services at once.  ``on_access_change`` is awaited after each such change
    (the HTTP server uses it to tell its other processes).

    ``sms_numbers`` (location code → SMS number) is where booking reminders
    are sent from; a location without one gets none.
    """
    clock = clock or SystemClock()
    ids = ids or UlidFactory()
    recorder = audit_recorder or DirectAuditRecorder(gateway)
    grants = GrantSource(gateway, clock, ttl=access_cache_ttl)
    authorizer = Authorizer(grants)
    ports = (gateway, authorizer, recorder, clock, ids)
    bookings = BookingService(*ports, prevent_overlaps=prevent_booking_overlaps)
    sms = SmsService(*ports, ai=ai, sender=sms_sender)
    return Services(
        contacts=ContactService(*ports, ai=ai),
        bookings=bookings,
        webhooks=WebhookService(*ports, bookings=bookings),
        tasks=TaskService(*ports, ai=ai),
        sms=sms,
        access=AccessService(*ports, cache_ttl=access_cache_ttl, on_change=on_access_change),
        audit=AuditService(*ports),
        reports=ReportingService(*ports, ai=ai),
        authorizer=authorizer,
        grants=grants,
        audit_recorder=recorder,
        gateway=gateway,
        clock=clock,
        ids=ids,
        ai=ai,
        queue=queue,
        mailer=mailer,
        sms_sender=sms_sender,
        campaigns=EmailMarketingService(
            *ports, mailer=mailer, unsubscribe=unsubscribe_links, from_address=mail_from
        ),
        reminders=ReminderService(*ports, sms=sms, sms_numbers=sms_numbers),
        automations=AutomationService(*ports, sms=sms, sms_numbers=sms_numbers),
        suppressions=SuppressionService(*ports),
    )


__all__ = ["Services", "bootstrap"]
