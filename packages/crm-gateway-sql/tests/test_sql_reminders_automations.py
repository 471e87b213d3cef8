"""Reminders and automation rules through the real relay on SQLite and PostgreSQL.

Future-dated outbox events (a reminder is an event dated when it is due) are
claimed by the SQL relay only once the clock reaches them; a redelivered
event, or a rule run twice for one event, takes effect once (receipts in the
same transaction as the effect).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from crm_domain.bootstrap import bootstrap
from crm_domain.clock import FixedClock
from crm_domain.context import Context
from crm_domain.entities import OutboxMessage
from crm_domain.memory import RecordingSmsSender
from crm_domain.queries import TaskQuery
from crm_domain.services import CreateBooking, RuleSpec
from crm_domain.testing import World

from crm_gateway_sql.gateway import SqlGateway
from crm_gateway_sql.outbox import OutboxRelay

pytestmark = pytest.mark.anyio

SYDNEY = ZoneInfo("Australia/Sydney")


async def test_reminders_wait_for_their_time_and_rules_run_once(any_gateway: SqlGateway) -> None:
    world = await World(any_gateway).setup()
    contact = world.contact(world.a.id, phone="+61412345678", sms_opt_in=True)
    await world.save(world.a.id, contact)
    clock = FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    sender = RecordingSmsSender("clicksend")
    services = bootstrap(
        any_gateway, clock=clock, sms_sender=sender, sms_numbers={"kit-a": "+61292000000"}
    )
    ctx = Context.system(world.a.id)
    assert services.automations is not None
    await services.automations.create(
        ctx,
        RuleSpec(
            name="Prepare the scan",
            trigger="BookingCreated",
            conditions=[{"field": "service_type", "op": "eq", "value": "MRI"}],
            actions=[{"kind": "create_task", "params": {"title": "Prepare MRI"}}],
        ),
    )
    starts = datetime(2026, 3, 4, 10, 0, tzinfo=SYDNEY)
    await services.bookings.create(
        ctx,
        CreateBooking(
            contact_id=contact.id,
            service_type="MRI",
            starts_at=starts,
            ends_at=starts + timedelta(minutes=45),
        ),
    )
    handlers = services.event_handlers()
    handled: list[OutboxMessage] = []

    async def dispatch(message: OutboxMessage) -> None:
        # Every message handed over twice, as after a consumer crash.
        for _ in range(2):
            for handler in handlers.get(message.event.name, ()):
                await handler(message)
        handled.append(message)

    relay = OutboxRelay(any_gateway, dispatch, clock=clock)
    while await relay.run_once():
        pass
    assert sender.sent == []  # the reminders are not due yet
    async with any_gateway.unit_of_work(world.a.id) as uow:
        tasks = (await uow.tasks.list(TaskQuery())).items
    assert [t.title for t in tasks] == ["Prepare MRI"]

    clock.set(starts - timedelta(days=1))
    while await relay.run_once():
        pass
    assert len(sender.sent) == 1 and "Reply Y to confirm or C to cancel" in sender.sent[0].body
    clock.set(starts - timedelta(hours=2))
    while await relay.run_once():
        pass
    assert len(sender.sent) == 2
    assert [m.event.name for m in handled].count("BookingReminderDue") == 2
