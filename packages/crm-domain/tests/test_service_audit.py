"""AuditService and the one-entry-per-call rule across services."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from crm_domain.audit import (
    AuditAction,
    AuditEntryFactory,
    DirectAuditRecorder,
    describe_failure,
    outcome_of,
)
from crm_domain.entities import AuditOutcome, Role
from crm_domain.errors import Conflict, NotFound, PermissionDenied, Unavailable
from crm_domain.queries import AuditQuery
from crm_domain.services import (
    AddTouchpoint,
    CancelBooking,
    CreateBooking,
    CreateContact,
    CreateTask,
    UpdateContact,
)

pytestmark = pytest.mark.anyio


async def test_list_needs_audit_read_and_is_itself_audited(world: Any) -> None:
    await world.new_contact()
    audit = world.services.audit
    with pytest.raises(PermissionDenied):
        await audit.list(world.ctx(Role.RECEPTIONIST))
    page = await audit.list(world.ctx(), AuditQuery(outcome="denied"))
    assert [(e.resource_type, e.outcome) for e in page.items] == [("audit", AuditOutcome.DENIED)]
    last = (await world.audit())[-1]
    assert (last.action, last.resource_type, last.detail) == ("LIST", "audit", "1 returned")


async def test_verify_all_passes_then_finds_an_edit(world: Any) -> None:
    await world.new_contact()
    await world.new_contact(world.melbourne)
    reports = await world.services.audit.verify_all(world.ctx())
    assert [(r.location_code, r.ok) for r in reports] == [
        ("melbourne", True),
        ("sydney", True),
        (None, True),
    ]
    assert reports[1].entries >= 3

    # Someone edits a stored entry behind the gateway's back.
    chain = world.gateway._store.chains[world.sydney.id]
    chain[1] = attrs.evolve(chain[1], user_id="someone-else")
    reports = await world.services.audit.verify_all(world.ctx())
    broken = {r.location_code: r.broken for r in reports}
    assert broken["melbourne"] is None
    assert broken["sydney"] is not None
    assert broken["sydney"].sequence == 2
    assert "edited" in broken["sydney"].reason
    one = await world.services.audit.verify(world.ctx(location=world.melbourne))
    assert one.ok


async def test_exactly_one_entry_per_call(world: Any) -> None:
    """Every use case, successful, refused or failed, adds exactly one entry."""
    s = world.services
    admin, readonly = world.ctx(), world.ctx(Role.READONLY)
    contact_id = await world.new_contact()
    start = world.clock.now() + timedelta(days=1)
    booking_cmd = CreateBooking(
        contact_id=contact_id,
        service_type="MRI",
        starts_at=start,
        ends_at=start + timedelta(minutes=30),
    )
    ok, denied, failed = "success", "denied", "failed"
    calls: list[tuple[Any, str]] = [
        (lambda: s.contacts.create(admin, CreateContact(first_name="B", phone="+61412345679")), ok),
        (lambda: s.contacts.get(admin, contact_id), ok),
        (lambda: s.contacts.list(admin), ok),
        (lambda: s.contacts.update(admin, UpdateContact(contact_id=contact_id, status="lost")), ok),
        (
            lambda: s.contacts.add_touchpoint(
                admin, AddTouchpoint(contact_id=contact_id, kind="note")
            ),
            ok,
        ),
        (lambda: s.contacts.list_touchpoints(admin, contact_id), ok),
        (lambda: s.bookings.create(admin, booking_cmd), ok),
        (lambda: s.bookings.create(admin, booking_cmd), failed),  # overlap: Conflict
        (lambda: s.bookings.list(readonly), ok),
        (lambda: s.tasks.create(readonly, CreateTask(title="x")), denied),
        (lambda: s.tasks.create(admin, CreateTask(title="x")), ok),
        (lambda: s.tasks.list(admin), ok),
        (lambda: s.contacts.get(admin, "missing"), failed),  # NotFound
        (lambda: s.access.list_users(admin), ok),
        (lambda: s.access.list_ip_rules(admin), ok),
        (lambda: s.audit.verify(admin), ok),
    ]
    for call, outcome in calls:
        before = len(await world.audit())
        try:
            await call()
        except (PermissionDenied, NotFound, Conflict):
            assert outcome != ok
        after = await world.audit()
        assert len(after) == before + 1
        assert after[-1].outcome.value == outcome

    booking = (await s.bookings.list(admin)).items[0]
    before = len(await world.audit())
    await s.bookings.cancel(admin, CancelBooking(booking_id=booking.id))
    assert len(await world.audit()) == before + 1


async def test_write_commits_data_events_and_audit_together(world: Any) -> None:
    contact_id = await world.new_contact()
    events_before = await world.events()
    audit_before = await world.audit()
    world.gateway.chain_lock_timeout = 0.05
    # Another unit of work holds sydney's audit chain, so the use case's audit
    # append fails after its data change and event were made: all must roll back.
    async with world.gateway.unit_of_work(world.sydney.id) as holder:
        await holder.audit.append(
            AuditEntryFactory(world.clock, world.ids).build(world.ctx(), "READ", "probe")
        )
        with pytest.raises(Unavailable) as caught:
            await world.services.contacts.update(
                world.ctx(), UpdateContact(contact_id=contact_id, first_name="Changed")
            )
    # The failure entry could not be written either (the chain was still held): said so.
    assert any("audit entry could not be recorded" in note for note in caught.value.__notes__)
    assert await world.events() == events_before
    assert await world.audit() == audit_before
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert (await uow.contacts.get(contact_id)).first_name == "Ada"


async def test_entry_factory_copies_the_context_and_clips_outside_input(world: Any) -> None:
    ctx = attrs.evolve(world.ctx(), user_agent="x" * 5000, request_path="/api/\x00contacts")
    entry = AuditEntryFactory(world.clock, world.ids).build(
        ctx, AuditAction.READ, "contact", "c-1", outcome=AuditOutcome.DENIED
    )
    assert entry.user_agent == "x" * 500
    assert entry.request_path == "/api/contacts"
    assert (entry.tenant_id, entry.user_id, entry.ip_address) == (
        world.sydney.id,
        ctx.user_id,
        "127.0.0.1",
    )
    assert (entry.action, entry.outcome, entry.occurred_at) == (
        "READ",
        AuditOutcome.DENIED,
        world.clock.now(),
    )
    system = AuditEntryFactory(world.clock, world.ids).build(
        ctx, "LOGIN", "session", use_context_tenant=False
    )
    assert system.tenant_id is None
    # The direct recorder makes it durable in its chain at once.
    await DirectAuditRecorder(world.gateway).record(entry)
    assert (await world.audit())[-1].id == entry.id


def test_failures_are_described_without_echoing_input() -> None:
    from crm_domain.errors import ValidationError

    error = ValidationError("phone", "not a phone number: '+61 400 000 000'")
    assert describe_failure(error) == "ValidationError: phone"
    assert describe_failure(Conflict("x")) == "Conflict"
    assert describe_failure(KeyError("secret")) == "error: KeyError"
    assert outcome_of(PermissionDenied("no")) is AuditOutcome.DENIED
    assert outcome_of(NotFound("no")) is AuditOutcome.FAILED
