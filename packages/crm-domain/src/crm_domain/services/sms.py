"""SMS: patients' replies understood and acted on, and messages sent to contacts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import (
    OPEN_STATUSES,
    Action,
    Booking,
    BookingStatus,
    Channel,
    Contact,
    Resource,
    SmsDirection,
    SmsIntent,
    SmsKind,
    SmsMessage,
    SmsStatus,
    SuppressionChannel,
    SuppressionReason,
    Task,
    TaskPriority,
    Touchpoint,
    TouchpointKind,
    WebhookReceipt,
)
from crm_domain.entities._fields import coerce_enum
from crm_domain.errors import Conflict, Unavailable, ValidationError
from crm_domain.pagination import Page
from crm_domain.policies.consent import is_opt_out
from crm_domain.policies.messaging import ON_SUPPRESSION_LIST, sms_refusal
from crm_domain.policies.rbac import Authorizer
from crm_domain.policies.reply_codes import coded_intent
from crm_domain.ports.ai import AIProvider, SmsContext, SmsIntentResult
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.ports.messaging import OutgoingSms, SmsSender
from crm_domain.queries import MAX_LIMIT, BookingQuery, ContactQuery, SmsQuery
from crm_domain.services._ai import load_lead_profile, suggest_priority
from crm_domain.services._base import Call, ServiceBase
from crm_domain.services._touchpoints import add_touchpoint
from crm_domain.services.bookings import _facts as _booking_facts
from crm_domain.services.contacts import _facts as _contact_facts
from crm_domain.services.events import EventName
from crm_domain.services.suppressions import sms_suppression, suppress, suppress_contact_sms
from crm_domain.services.tasks import _facts as _task_facts
from crm_domain.values import parse_phone

#: How long the codes of the clinic's last SMS ("Reply Y to confirm or C to cancel")
#: answer a bare reply; a reminder goes out at most a day before, so a week is generous.
REPLY_CODE_WINDOW = timedelta(days=7)
#: The cancellation reason of a booking cancelled by the patient's reply.
CANCELLED_BY_SMS = "patient SMS"
#: The one SMS sent after an opt-out (carriers and the Spam Act expect it), consent or not.
OPT_OUT_CONFIRMATION = (
    "You have been unsubscribed and will get no more SMS from us. "
    "Call the clinic if this was a mistake."
)

_TASK_TITLES = {
    SmsIntent.RESCHEDULE: "Reschedule request by SMS",
    SmsIntent.QUESTION: "Question by SMS",
    SmsIntent.OTHER: "SMS reply to read",
    SmsIntent.CONFIRM: "SMS confirmation without an open booking",
    SmsIntent.CANCEL: "SMS cancellation without an open booking",
}


def _facts(message: SmsMessage) -> dict[str, Any]:
    """Non-PHI facts about a message (its body and numbers are PHI)."""
    return {
        "sms_id": message.id,
        "contact_id": message.contact_id,
        "booking_id": message.booking_id,
        "direction": message.direction.value,
        "status": message.status.value,
        "intent": None if message.intent is None else message.intent.value,
        "intent_confidence": message.intent_confidence,
        "provider": message.provider,
    }


class SmsService:
    """Use cases on SMS messages.

    Permissions (CONTRACT ``sms: send read``): ``sms:send`` to send and to take
    in a patient's reply (the webhook acts as the location's system user),
    ``sms:read`` to read.

    An inbound message is matched to the contact by phone, its intent detected
    by the AI provider from the text and PHI-free facts (is a booking coming,
    when), and acted on in the same unit of work as it is stored:

    * ``opt_out`` clears ``sms_opt_in`` (stamping ``consent_updated_at``) — a
      carrier keyword counts as an opt-out whatever the provider says
      (:func:`~crm_domain.policies.consent.is_opt_out`), and an unavailable
      provider falls back to that check, so a STOP is never missed;
    * ``confirm`` confirms the next open booking, ``cancel`` cancels it (reason
      :data:`CANCELLED_BY_SMS`);
    * anything else (and a confirm/cancel with no open booking) becomes a task
      for reception, with the proposed time when the patient named one and the
      priority the provider suggests.

    A redelivered message (same ``provider`` and ``provider_message_id``) is
    not stored or acted on twice: the stored message is returned.
    """

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
        ai: AIProvider | None = None,
        sender: SmsSender | None = None,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)
        self._ai = ai
        self._sender = sender

    async def receive_inbound(
        self,
        ctx: Context,
        from_number: str,
        to_number: str,
        body: str,
        provider: str,
        provider_message_id: str | None,
    ) -> SmsMessage:
        """Store a patient's SMS, understand it and act on it; emits ``SmsReceived``."""
        base = self._base
        async with base.use_case(
            ctx,
            Resource.SMS,
            Action.SEND,
            audit=AuditAction.CREATE,
            resource_type="sms",
            write=True,
        ) as call:
            sender_phone = parse_phone(from_number)
            clinic_phone = parse_phone(to_number)
            uow = call.uow
            now = base.clock.now()
            if provider_message_id is not None:
                stored = await self._stored(uow, provider, provider_message_id)
                if stored is not None:
                    call.resource_id = stored.id
                    call.detail = "duplicate delivery"
                    return stored
            contact = await self._contact_by_phone(uow, sender_phone)
            booking = None if contact is None else await self._next_open_booking(uow, contact, now)
            location = await uow.locations.get(ctx.tenant_id)
            context = SmsContext(
                received_at=now,
                timezone=location.timezone,
                has_upcoming_booking=booking is not None,
                booking_starts_at=None if booking is None else booking.starts_at,
            )
            # Every AI call comes before the first write: a remote model can take
            # seconds, and a unit of work that has written holds the store's write
            # lock (SQLite: the whole file) until it ends.
            prompt = None if contact is None else await self._last_prompt(uow, contact, now)
            understood = await self._understand(body, context, prompt)
            priority: TaskPriority | None = None
            if _needs_reception(understood, booking):
                profile = None if contact is None else await load_lead_profile(uow, contact)
                title = _reception_title(understood, context, contact)
                priority = await suggest_priority(self._ai, title, profile)
            if provider_message_id is not None:
                # The receipt's key makes two concurrent deliveries collide in the store
                # (one commits, the other fails and is retried), not both act.
                receipt = WebhookReceipt(
                    source=f"sms:{provider}"[:50],
                    event_id=provider_message_id,
                    tenant_id=ctx.tenant_id,
                    received_at=now,
                )
                if not await uow.webhook_receipts.record(receipt):
                    stored = await self._stored(uow, provider, provider_message_id)
                    if stored is None:
                        raise Conflict("this SMS is already being processed")
                    call.resource_id = stored.id
                    call.detail = "duplicate delivery"
                    return stored
            message = SmsMessage(
                id=base.ids.new_id(),
                tenant_id=ctx.tenant_id,
                contact_id=None if contact is None else contact.id,
                direction=SmsDirection.INBOUND,
                from_number=sender_phone,
                to_number=clinic_phone,
                body=body,
                status=SmsStatus.RECEIVED,
                provider=provider,
                provider_message_id=provider_message_id,
                intent=understood.intent,
                intent_confidence=understood.confidence,
                booking_id=None if booking is None else booking.id,
                created_at=now,
            )
            call.resource_id = message.id
            await uow.sms.add(message)
            await call.emit(EventName.SMS_RECEIVED, "sms", message.id, _facts(message))
            outcome = await self._act(
                call, message, contact, booking, understood, context, now, priority
            )
            call.detail = f"intent {understood.intent.value}: {outcome}"
            if contact is not None:
                await self._add_touchpoint(call, contact, message, now)
            return message

    async def send(
        self,
        ctx: Context,
        contact_id: str,
        body: str,
        *,
        kind: SmsKind | str,
        from_number: str | None,
    ) -> SmsMessage:
        """Queue ``body`` for a contact of the location; the worker sends it (``deliver``).

        The message is stored ``queued`` with an ``SmsQueued`` outbox event, a
        ``sms_sent`` touchpoint and the audit entry, in one unit of work: it is
        never lost, and the worker sends it once.  ``Conflict`` when the
        :func:`~crm_domain.policies.messaging.sms_refusal` rules say no (no phone,
        no consent or opted out, the number on the location's suppression list,
        marketing outside 08:00–21:00 local time);
        ``Unavailable`` without an SMS sender or a clinic number (``from_number``
        ``None``: none configured for the location), after those checks;
        nothing is stored then.
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.SMS,
            Action.SEND,
            audit=AuditAction.CREATE,
            resource_type="sms",
            write=True,
        ) as call:
            kind = coerce_enum(SmsKind, kind, "kind")
            clinic_phone = (
                None if from_number is None else parse_phone(from_number, field="from_number")
            )
            if not body.strip():
                raise ValidationError("body", "must not be empty")
            contact = await call.uow.contacts.get(contact_id)
            location = await call.uow.locations.get(ctx.tenant_id)
            now = base.clock.now()
            refusal = await self.refusal(call.uow, contact, kind, now, location.timezone)
            if refusal is not None:
                call.detail = f"refused: {kind.value}"
                raise Conflict(refusal)
            if self._sender is None:
                raise Unavailable("no SMS sender is configured (CRM_SMS_PROVIDER)")
            if clinic_phone is None:
                raise Unavailable("no SMS number is configured for this location")
            assert contact.phone is not None  # sms_refusal refuses a contact without one
            message = await self._queue(call, contact, contact.phone, clinic_phone, body, kind)
            call.detail = f"queued {kind.value}"
            return message

    async def deliver(
        self, ctx: Context, sms_id: str, *, consent_exempt: bool = False
    ) -> SmsMessage:
        """Send a queued message through the SMS sender and record the outcome on it.

        Called by the worker for each ``SmsQueued`` event (at least once), so:
        a message no longer ``queued`` is returned untouched — a redelivered
        event never sends twice.  Consent is checked again (a STOP may have
        arrived since it was queued), and so is the suppression list (a number
        added since), unless ``consent_exempt`` (the opt-out's own
        confirmation): either fails the message unsent.

        Accepted → ``sent`` with the provider's id; refused → ``failed`` with
        the provider's reason; the provider down (``Unavailable``) → the error
        is recorded, the message stays ``queued`` and the error is re-raised so
        the outbox retries with back-off.  The provider is called outside any
        unit of work: no write lock is held while it answers.
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.SMS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="sms",
            resource_id=sms_id,
            write=False,
        ) as call:
            message = await call.uow.sms.get(sms_id)
            contact = (
                None
                if message.contact_id is None
                else await call.uow.contacts.get(message.contact_id)
            )
            # The number the message goes to, not the contact's current one: that is
            # what the list protects.
            suppression = (
                None
                if consent_exempt or message.status is not SmsStatus.QUEUED
                else await sms_suppression(call.uow, message.to_number)
            )
            call.detail = f"delivery check: {message.status.value}"
        if message.status is not SmsStatus.QUEUED:
            return message
        if not consent_exempt and (contact is None or not contact.sms_opt_in):
            return await self._record_outcome(
                ctx, sms_id, status=SmsStatus.FAILED, error="consent withdrawn before sending"
            )
        if suppression is not None:
            return await self._record_outcome(
                ctx,
                sms_id,
                status=SmsStatus.FAILED,
                error=f"number put {ON_SUPPRESSION_LIST} before sending",
            )
        if self._sender is None:
            error = Unavailable("no SMS sender is configured (CRM_SMS_PROVIDER)")
            await self._record_outcome(ctx, sms_id, status=SmsStatus.QUEUED, error=error.detail)
            raise error
        outgoing = OutgoingSms(
            to=message.to_number,
            body=message.body,
            sender=message.from_number,
            reference=message.id,
        )
        try:
            result = await self._sender.send(outgoing)
        except Exception as exc:
            # Still queued: the outbox retries with back-off (and dead-letters in the end).
            await self._record_outcome(
                ctx, sms_id, status=SmsStatus.QUEUED, error=f"{type(exc).__name__}: {exc}"
            )
            raise
        if result.accepted:
            return await self._record_outcome(
                ctx,
                sms_id,
                status=SmsStatus.SENT,
                provider=result.provider,
                provider_message_id=result.provider_message_id,
            )
        return await self._record_outcome(
            ctx,
            sms_id,
            status=SmsStatus.FAILED,
            provider=result.provider,
            provider_message_id=result.provider_message_id,
            error=result.error or "refused by the provider",
        )

    async def record_delivery_report(
        self,
        ctx: Context,
        provider: str,
        provider_message_id: str,
        *,
        delivered: bool,
        error: str | None = None,
    ) -> SmsMessage | None:
        """A provider's delivery receipt: ``delivered`` or ``failed`` on the outbound message.

        ``None`` when no message of this location has that provider id (a late
        or foreign receipt changes nothing).  A receipt never moves a message
        back: ``delivered`` stays delivered.
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.SMS,
            Action.SEND,
            audit=AuditAction.UPDATE,
            resource_type="sms",
            write=True,
        ) as call:
            stored = await self._stored(call.uow, provider, provider_message_id)
            if stored is None or stored.direction is not SmsDirection.OUTBOUND:
                call.detail = "delivery report for an unknown message"
                return None
            call.resource_id = stored.id
            if stored.status is SmsStatus.DELIVERED:
                call.detail = "delivery report: already delivered"
                return stored
            updated = attrs.evolve(
                stored,
                status=SmsStatus.DELIVERED if delivered else SmsStatus.FAILED,
                error=None if delivered else (error or "not delivered")[:500],
            )
            await call.uow.sms.update(updated)
            call.detail = f"delivery report: {updated.status.value}"
            return updated

    async def get(self, ctx: Context, sms_id: str) -> SmsMessage:
        """Return one message of the caller's location (``NotFound`` otherwise)."""
        async with self._base.use_case(
            ctx,
            Resource.SMS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="sms",
            resource_id=sms_id,
            write=False,
        ) as call:
            return await call.uow.sms.get(sms_id)

    async def list(self, ctx: Context, query: SmsQuery | None = None) -> Page[SmsMessage]:
        """One page of the location's messages matching ``query``, newest first."""
        async with self._base.use_case(
            ctx,
            Resource.SMS,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="sms",
            write=False,
        ) as call:
            page = await call.uow.sms.list(query or SmsQuery())
            call.detail = f"{len(page.items)} returned"
            return page

    @staticmethod
    async def refusal(
        uow: UnitOfWork, contact: Contact, kind: SmsKind, now: datetime, timezone: str
    ) -> str | None:
        """Why ``contact`` may not be texted now — :func:`sms_refusal` with the location's
        suppression of their number looked up — or ``None``.

        Every outbound SMS but the opt-out confirmation asks this: a send, a
        booking reminder, an automation's message.
        """
        suppression = await sms_suppression(uow, contact.phone)
        return sms_refusal(contact, kind, now, timezone, suppression=suppression)

    async def queue_in(
        self, call: Call, contact: Contact, from_number: str, body: str, kind: SmsKind
    ) -> SmsMessage:
        """Queue ``body`` inside another use case's unit of work (a booking reminder).

        The caller has applied :meth:`refusal`;
        the message, its ``SmsQueued`` event and touchpoint commit with the caller's
        write, and the worker sends it like any other (:meth:`deliver`).
        """
        if contact.phone is None:
            raise Conflict(f"contact {contact.id} has no phone number")
        clinic_phone = parse_phone(from_number, field="from_number")
        return await self._queue(call, contact, contact.phone, clinic_phone, body, kind)

    # -- helpers --------------------------------------------------------------

    async def _queue(
        self,
        call: Call,
        contact: Contact,
        to_phone: str,
        clinic_phone: str,
        body: str,
        kind: SmsKind,
        *,
        consent_exempt: bool = False,
    ) -> SmsMessage:
        """Store an outbound message ``queued`` with its event and touchpoint (one unit of work)."""
        base = self._base
        now = base.clock.now()
        message = SmsMessage(
            id=base.ids.new_id(),
            tenant_id=contact.tenant_id,
            contact_id=contact.id,
            direction=SmsDirection.OUTBOUND,
            from_number=clinic_phone,
            to_number=to_phone,
            body=body,
            status=SmsStatus.QUEUED,
            created_at=now,
        )
        if call.resource_id is None:
            call.resource_id = message.id
        await call.uow.sms.add(message)
        await call.emit(
            EventName.SMS_QUEUED,
            "sms",
            message.id,
            {**_facts(message), "kind": kind.value, "consent_exempt": consent_exempt},
        )
        await self._add_touchpoint(
            call, contact, message, now, kind=TouchpointKind.SMS_SENT, extra={"kind": kind.value}
        )
        return message

    async def _record_outcome(
        self,
        ctx: Context,
        sms_id: str,
        *,
        status: SmsStatus,
        error: str | None = None,
        provider: str | None = None,
        provider_message_id: str | None = None,
    ) -> SmsMessage:
        """Write what the sender said on a queued message; emits ``SmsSent`` or ``SmsFailed``."""
        base = self._base
        async with base.use_case(
            ctx,
            Resource.SMS,
            Action.SEND,
            audit=AuditAction.UPDATE,
            resource_type="sms",
            resource_id=sms_id,
            write=True,
        ) as call:
            stored = await call.uow.sms.get(sms_id)
            if stored.status is not SmsStatus.QUEUED:
                # Another delivery finished first: keep its outcome.
                call.detail = f"already {stored.status.value}"
                return stored
            now = base.clock.now()
            updated = attrs.evolve(
                stored,
                status=status,
                provider=provider or stored.provider,
                provider_message_id=provider_message_id or stored.provider_message_id,
                sent_at=now if status is SmsStatus.SENT else stored.sent_at,
                error=None if error is None else error[:500],
            )
            await call.uow.sms.update(updated)
            if status is SmsStatus.SENT:
                await call.emit(EventName.SMS_SENT, "sms", updated.id, _facts(updated))
                call.detail = "sent"
            elif status is SmsStatus.FAILED:
                await call.emit(EventName.SMS_FAILED, "sms", updated.id, _facts(updated))
                call.detail = "failed: refused"
            else:
                call.detail = "send attempt failed; will retry"
            return updated

    @staticmethod
    async def _stored(
        uow: UnitOfWork, provider: str, provider_message_id: str
    ) -> SmsMessage | None:
        page = await uow.sms.list(
            SmsQuery(provider_message_id=provider_message_id, limit=MAX_LIMIT)
        )
        return next((m for m in page.items if m.provider == provider), None)

    @staticmethod
    async def _contact_by_phone(uow: UnitOfWork, phone: str) -> Contact | None:
        # Newest first: when two contacts share a number, the latest is the likelier sender.
        page = await uow.contacts.list(ContactQuery(phone=phone, limit=1))
        return page.items[0] if page.items else None

    @staticmethod
    async def _next_open_booking(
        uow: UnitOfWork, contact: Contact, now: datetime
    ) -> Booking | None:
        query = BookingQuery(contact_id=contact.id, starts_from=now, limit=MAX_LIMIT)
        upcoming: list[Booking] = []
        while True:
            page = await uow.bookings.list(query)
            upcoming.extend(b for b in page.items if b.status in OPEN_STATUSES)
            if page.next_cursor is None:
                break
            query = attrs.evolve(query, cursor=page.next_cursor)
        return min(upcoming, key=lambda b: b.starts_at, default=None)

    @staticmethod
    async def _last_prompt(uow: UnitOfWork, contact: Contact, now: datetime) -> str | None:
        """The body of the last SMS the clinic sent this contact, if recent enough to answer."""
        page = await uow.sms.list(
            SmsQuery(contact_id=contact.id, direction=SmsDirection.OUTBOUND.value, limit=1)
        )
        last = page.items[0] if page.items else None
        if last is None or now - last.created_at > REPLY_CODE_WINDOW:
            return None
        return last.body

    async def _understand(
        self, body: str, context: SmsContext, prompt: str | None = None
    ) -> SmsIntentResult:
        coded = None if is_opt_out(body) else coded_intent(body, prompt)
        if coded is not None:
            # The clinic's own message defined this code: no model is asked to guess.
            return SmsIntentResult(intent=coded, confidence=1.0, provider="reply-code")
        result: SmsIntentResult | None = None
        if self._ai is not None:
            try:
                result = await self._ai.detect_sms_intent(body, context)
            except Unavailable:
                result = None
        if is_opt_out(body) and (result is None or result.intent is not SmsIntent.OPT_OUT):
            # Binding whatever the provider said: carriers require it.
            return SmsIntentResult(intent=SmsIntent.OPT_OUT, confidence=1.0, provider="keywords")
        if result is None:
            return SmsIntentResult(intent=SmsIntent.OTHER, confidence=0.0, provider="none")
        return result

    async def _act(
        self,
        call: Call,
        message: SmsMessage,
        contact: Contact | None,
        booking: Booking | None,
        understood: SmsIntentResult,
        context: SmsContext,
        now: datetime,
        priority: TaskPriority | None,
    ) -> str:
        """Do what the reply asks; return a PHI-free note for the audit entry.

        ``priority`` is the reception task's, worked out before any write
        (``None`` when :func:`_needs_reception` said no task is needed).
        """
        intent = understood.intent
        if intent is SmsIntent.OPT_OUT:
            if contact is None:
                # No consent to withdraw, but the number must not be texted either
                # (a contact created for it later included).
                _, added = await suppress(
                    self._base,
                    call,
                    message.tenant_id,
                    SuppressionChannel.SMS,
                    message.from_number,
                    SuppressionReason.OPT_OUT,
                )
                return "unknown sender; number " + ("suppressed" if added else "already suppressed")
            if not contact.sms_opt_in:
                # Opted out before the list existed (or merged in): list the number now.
                added = await suppress_contact_sms(self._base, call, contact)
                return "already opted out" + ("; number suppressed" if added else "")
            # The list keeps the opt-out when the contact is merged, erased or created again.
            await suppress_contact_sms(self._base, call, contact)
            updated = attrs.evolve(
                contact, sms_opt_in=False, consent_updated_at=now, updated_at=now
            )
            await call.uow.contacts.update(updated)
            await call.emit(
                EventName.CONTACT_UPDATED,
                "contact",
                updated.id,
                {**_contact_facts(updated), "changed": ["sms_opt_in"]},
            )
            # One confirmation, and only on the change: a second STOP gets none.
            confirmation = await self._queue(
                call,
                updated,
                message.from_number,
                message.to_number,
                OPT_OUT_CONFIRMATION,
                SmsKind.TRANSACTIONAL,
                consent_exempt=True,
            )
            return f"sms_opt_in cleared, number suppressed; confirmation {confirmation.id} queued"
        if intent is SmsIntent.CONFIRM and booking is not None:
            if booking.status is BookingStatus.CONFIRMED:
                return f"booking {booking.id} already confirmed"
            changed = booking.confirmed(now)
            await call.uow.bookings.update(changed)
            await call.emit(
                EventName.BOOKING_CONFIRMED, "booking", changed.id, _booking_facts(changed)
            )
            return f"booking {changed.id} confirmed"
        if intent is SmsIntent.CANCEL and booking is not None:
            changed = booking.cancelled(now, CANCELLED_BY_SMS)
            await call.uow.bookings.update(changed)
            await call.emit(
                EventName.BOOKING_CANCELLED, "booking", changed.id, _booking_facts(changed)
            )
            return f"booking {changed.id} cancelled"
        task = await self._reception_task(
            call, message, contact, booking, understood, context, priority or TaskPriority.NORMAL
        )
        return f"task {task.id} for reception"

    async def _reception_task(
        self,
        call: Call,
        message: SmsMessage,
        contact: Contact | None,
        booking: Booking | None,
        understood: SmsIntentResult,
        context: SmsContext,
        priority: TaskPriority,
    ) -> Task:
        base = self._base
        title = _reception_title(understood, context, contact)
        lines = [f"From {message.from_number}: {message.body}"]
        if understood.proposed_time is not None:
            lines.append(f"Proposed time: {understood.proposed_time.isoformat()}")
        if booking is not None:
            lines.append(f"Booking {booking.id} ({booking.service_type}) at {booking.starts_at}")
        lines.append(f"Intent {understood.intent.value} ({understood.confidence:.2f})")
        now = base.clock.now()
        task = Task(
            id=base.ids.new_id(),
            tenant_id=message.tenant_id,
            title=title[:200],
            description="\n".join(lines),
            contact_id=message.contact_id,
            booking_id=message.booking_id,
            priority=priority,
            created_at=now,
            updated_at=now,
        )
        await call.uow.tasks.add(task)
        await call.emit(EventName.TASK_CREATED, "task", task.id, _task_facts(task))
        return task

    async def _add_touchpoint(
        self,
        call: Call,
        contact: Contact,
        message: SmsMessage,
        now: datetime,
        *,
        kind: TouchpointKind = TouchpointKind.SMS_RECEIVED,
        extra: dict[str, Any] | None = None,
    ) -> None:
        # A reply is engagement: the touchpoint's event lets the worker rescore warmness.
        base = self._base
        metadata: dict[str, Any] = {"sms_id": message.id}
        if message.intent is not None:
            metadata["intent"] = message.intent.value
        touchpoint = Touchpoint(
            id=base.ids.new_id(),
            tenant_id=message.tenant_id,
            contact_id=contact.id,
            kind=kind,
            channel=Channel.SMS,
            occurred_at=now,
            metadata={**metadata, **(extra or {})},
            created_at=now,
        )
        await add_touchpoint(call, touchpoint)


def _needs_reception(understood: SmsIntentResult, booking: Booking | None) -> bool:
    """Whether :meth:`SmsService._act` will hand the reply to reception as a task."""
    intent = understood.intent
    if intent is SmsIntent.OPT_OUT:
        return False
    return not (intent in (SmsIntent.CONFIRM, SmsIntent.CANCEL) and booking is not None)


def _reception_title(
    understood: SmsIntentResult, context: SmsContext, contact: Contact | None
) -> str:
    title = _TASK_TITLES.get(understood.intent, "SMS reply to read")
    if understood.proposed_time is not None:
        local = understood.proposed_time.astimezone(ZoneInfo(context.timezone))
        title = f"{title}: proposes {local:%a %d %b %H:%M}"
    if contact is None:
        title = f"{title} (unknown number)"
    return title


__all__ = ["CANCELLED_BY_SMS", "OPT_OUT_CONFIRMATION", "SmsService"]
