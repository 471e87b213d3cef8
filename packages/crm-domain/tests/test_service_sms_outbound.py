"""Outbound SMS: the rules before a message is queued, and the worker's delivery.

Each send is stored ``queued`` with an ``SmsQueued`` event, a touchpoint and an
audit entry; the domain's ``SmsQueued`` handler (what the worker runs) sends it
through the :class:`RecordingSmsSender` fake and records the outcome.  End state
is asserted on the in-memory gateway.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from crm_domain.bootstrap import bootstrap
from crm_domain.context import Context
from crm_domain.entities import (
    DomainEvent,
    OutboxMessage,
    SmsKind,
    SmsStatus,
    TouchpointKind,
)
from crm_domain.errors import Conflict, Unavailable, ValidationError
from crm_domain.memory import RecordingSmsSender, RuleOfThumbAI
from crm_domain.policies.messaging import within_marketing_window
from crm_domain.ports.messaging import OutgoingSms, SendResult
from crm_domain.queries import SmsQuery, TouchpointQuery
from crm_domain.services import OPT_OUT_CONFIRMATION, CreateContact, UpdateContact

pytestmark = pytest.mark.anyio

CLINIC = "+61292000000"
PATIENT = "+61412345678"


class RefusingSender:
    """An SMS sender whose provider refuses every message (e.g. an invalid recipient)."""

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, message: OutgoingSms) -> SendResult:
        """Refuse, as ClickSend does with a per-message ``INVALID_RECIPIENT``."""
        self.calls += 1
        return SendResult(
            provider="clicksend",
            provider_message_id="cs-1",
            accepted=False,
            error="INVALID_RECIPIENT",
        )


class Outbound:
    """The service world wired with an SMS sender, and the worker's step."""

    def __init__(self, world: Any, sender: Any) -> None:
        self.world = world
        self.sender = sender
        world.services = bootstrap(
            world.gateway, clock=world.clock, ids=world.ids, ai=RuleOfThumbAI(), sms_sender=sender
        )
        self.services = world.services

    async def contact(self, *, sms_opt_in: bool = True, phone: str = "0412 345 678") -> str:
        created = await self.services.contacts.create(
            self.world.ctx(), CreateContact(first_name="Ada", phone=phone, sms_opt_in=sms_opt_in)
        )
        return created.id

    async def run_worker(self) -> list[Exception]:
        """Hand every committed ``SmsQueued`` event to its handlers, as the relay does."""
        failures: list[Exception] = []
        for event in await self.world.events("SmsQueued"):
            failures.extend(await self.deliver(event))
        return failures

    async def deliver(self, event: DomainEvent) -> list[Exception]:
        message = OutboxMessage(event=event, available_at=self.world.clock.now())
        failures: list[Exception] = []
        for handler in self.services.event_handlers().get(event.name, ()):
            try:
                await handler(message)
            except Exception as exc:  # the relay records it and retries later
                failures.append(exc)
        return failures

    async def messages(self) -> list[Any]:
        page = await self.services.sms.list(self.world.ctx(), SmsQuery(limit=100))
        return list(page.items)


@pytest.fixture
def outbound(world: Any) -> Outbound:
    return Outbound(world, RecordingSmsSender("clicksend"))


async def test_a_send_is_queued_with_event_touchpoint_and_audit_then_sent_once(
    outbound: Outbound,
) -> None:
    world = outbound.world
    contact_id = await outbound.contact()
    queued = await outbound.services.sms.send(
        world.ctx(),
        contact_id,
        "Your MRI is tomorrow",
        kind="transactional",
        from_number="02 9200 0000",
    )
    # E.164 before the sender sees anything: the contact's and the clinic's numbers.
    assert (queued.status, queued.to_number, queued.from_number) == (
        SmsStatus.QUEUED,
        PATIENT,
        CLINIC,
    )
    assert outbound.sender.sent == []
    [event] = await world.events("SmsQueued")
    assert event.payload["kind"] == "transactional"
    assert event.payload["consent_exempt"] is False
    touchpoints = await outbound.services.contacts.list_touchpoints(
        world.ctx(), contact_id, TouchpointQuery()
    )
    assert [t.kind for t in touchpoints.items] == [TouchpointKind.SMS_SENT]
    entries = [e for e in await world.audit() if e.resource_type == "sms"]
    assert [(e.action, e.resource_id) for e in entries] == [("CREATE", queued.id)]

    assert await outbound.run_worker() == []
    assert [(s.to, s.sender, s.reference) for s in outbound.sender.sent] == [
        (PATIENT, CLINIC, queued.id)
    ]
    [sent] = await outbound.messages()
    assert (sent.status, sent.provider, sent.provider_message_id, sent.error) == (
        SmsStatus.SENT,
        "clicksend",
        "sms-1",
        None,
    )
    assert sent.sent_at == world.clock.now()
    # The outbox delivers at least once: the same event again sends nothing more.
    assert await outbound.run_worker() == []
    assert len(outbound.sender.sent) == 1
    assert [e.name for e in await world.events("SmsSent")] == ["SmsSent"]


async def test_no_consent_or_opted_out_is_a_conflict_and_nothing_is_stored(
    outbound: Outbound,
) -> None:
    world = outbound.world
    never_asked = await outbound.contact(sms_opt_in=False)
    for kind in SmsKind:
        with pytest.raises(Conflict, match="sms_opt_in"):
            await outbound.services.sms.send(
                world.ctx(), never_asked, "hi", kind=kind, from_number=CLINIC
            )
    assert await outbound.messages() == []
    assert await world.events("SmsQueued") == []
    refused = [e for e in await world.audit() if e.resource_type == "sms" and e.action == "CREATE"]
    assert [e.outcome.value for e in refused] == ["failed", "failed"]


async def test_marketing_only_inside_the_sending_window_in_the_locations_timezone(
    outbound: Outbound,
) -> None:
    world = outbound.world
    contact_id = await outbound.contact()
    sms = outbound.services.sms
    # 10:30 UTC is 21:30 in Sydney (AEDT, +11): too late for marketing …
    world.clock.set(datetime(2026, 3, 2, 10, 30, tzinfo=UTC))
    assert not within_marketing_window(world.clock.now(), "Australia/Sydney")
    with pytest.raises(Conflict, match="08:00 to 21:00"):
        await sms.send(world.ctx(), contact_id, "20% off", kind="marketing", from_number=CLINIC)
    # … but a reminder may go at any hour.
    reminder = await sms.send(
        world.ctx(), contact_id, "Reminder", kind=SmsKind.TRANSACTIONAL, from_number=CLINIC
    )
    assert reminder.status is SmsStatus.QUEUED
    # 21:00 UTC is 08:00 in Sydney: the window opens (inclusive).
    world.clock.set(datetime(2026, 3, 2, 21, 0, tzinfo=UTC))
    promo = await sms.send(world.ctx(), contact_id, "20% off", kind="marketing", from_number=CLINIC)
    assert promo.status is SmsStatus.QUEUED
    # Melbourne shares the offset in March, so try a contact in the same place at 20:59.
    world.clock.set(datetime(2026, 3, 2, 9, 59, tzinfo=UTC))
    assert within_marketing_window(world.clock.now(), "Australia/Sydney")


async def test_bad_input_is_a_validation_error(outbound: Outbound) -> None:
    world = outbound.world
    contact_id = await outbound.contact()
    with pytest.raises(ValidationError, match="from_number"):
        await outbound.services.sms.send(
            world.ctx(), contact_id, "hi", kind="transactional", from_number="not a number"
        )
    with pytest.raises(ValidationError, match="body"):
        await outbound.services.sms.send(
            world.ctx(), contact_id, "  ", kind="transactional", from_number=CLINIC
        )
    with pytest.raises(ValidationError, match="kind"):
        await outbound.services.sms.send(
            world.ctx(), contact_id, "hi", kind="bulk", from_number=CLINIC
        )
    assert await outbound.messages() == []


async def test_provider_outage_keeps_it_queued_with_the_error_and_a_retry_sends_it(
    outbound: Outbound,
) -> None:
    world = outbound.world
    contact_id = await outbound.contact()
    queued = await outbound.services.sms.send(
        world.ctx(), contact_id, "hi", kind="transactional", from_number=CLINIC
    )
    outbound.sender.fail(1)
    [failure] = await outbound.run_worker()
    assert isinstance(failure, Unavailable)  # the relay retries the event with back-off
    [waiting] = await outbound.messages()
    assert waiting.status is SmsStatus.QUEUED
    assert waiting.error is not None and "Unavailable" in waiting.error
    assert await outbound.run_worker() == []
    [sent] = await outbound.messages()
    assert (sent.id, sent.status, sent.error) == (queued.id, SmsStatus.SENT, None)
    assert len(outbound.sender.sent) == 1


async def test_a_permanent_refusal_is_recorded_as_failed_and_not_retried(world: Any) -> None:
    sender = RefusingSender()
    outbound = Outbound(world, sender)
    contact_id = await outbound.contact()
    await outbound.services.sms.send(
        world.ctx(), contact_id, "hi", kind="transactional", from_number=CLINIC
    )
    assert await outbound.run_worker() == []
    [failed] = await outbound.messages()
    assert (failed.status, failed.error, failed.provider_message_id) == (
        SmsStatus.FAILED,
        "INVALID_RECIPIENT",
        "cs-1",
    )
    assert [e.name for e in await world.events("SmsFailed")] == ["SmsFailed"]
    assert await outbound.run_worker() == []
    assert sender.calls == 1


async def test_consent_withdrawn_after_queueing_fails_the_message_unsent(
    outbound: Outbound,
) -> None:
    world = outbound.world
    contact_id = await outbound.contact()
    await outbound.services.sms.send(
        world.ctx(), contact_id, "hi", kind="transactional", from_number=CLINIC
    )
    await outbound.services.contacts.update(
        world.ctx(), UpdateContact(contact_id=contact_id, sms_opt_in=False)
    )
    assert await outbound.run_worker() == []
    assert outbound.sender.sent == []
    [failed] = await outbound.messages()
    assert (failed.status, failed.error) == (SmsStatus.FAILED, "consent withdrawn before sending")


async def test_stop_queues_exactly_one_confirmation_sent_despite_the_opt_out(
    outbound: Outbound,
) -> None:
    world = outbound.world
    await outbound.contact()
    system = Context.system(world.sydney.id)
    sms = outbound.services.sms
    await sms.receive_inbound(system, PATIENT, CLINIC, "STOP", "clicksend", "in-1")
    await sms.receive_inbound(system, PATIENT, CLINIC, "stop", "clicksend", "in-2")
    assert await outbound.run_worker() == []
    assert [(s.to, s.sender, s.body) for s in outbound.sender.sent] == [
        (PATIENT, CLINIC, OPT_OUT_CONFIRMATION)
    ]
    [confirmation] = [m for m in await outbound.messages() if m.direction.value == "outbound"]
    assert confirmation.status is SmsStatus.SENT
    [event] = await world.events("SmsQueued")
    assert event.payload["consent_exempt"] is True


async def test_delivery_report_marks_delivered_or_failed(outbound: Outbound) -> None:
    world = outbound.world
    contact_id = await outbound.contact()
    sms = outbound.services.sms
    await sms.send(world.ctx(), contact_id, "hi", kind="transactional", from_number=CLINIC)
    await outbound.run_worker()
    system = Context.system(world.sydney.id)
    assert await sms.record_delivery_report(system, "clicksend", "unknown", delivered=True) is None
    delivered = await sms.record_delivery_report(system, "clicksend", "sms-1", delivered=True)
    assert delivered is not None and delivered.status is SmsStatus.DELIVERED
    # A late failure report does not move a delivered message back.
    again = await sms.record_delivery_report(
        system, "clicksend", "sms-1", delivered=False, error="EXPIRED"
    )
    assert again is not None and again.status is SmsStatus.DELIVERED
