"""History import: past records kept as they were, through one audited use case."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from crm_domain.entities import (
    Booking,
    BookingStatus,
    Contact,
    Role,
    Touchpoint,
    TouchpointKind,
)
from crm_domain.errors import PermissionDenied, ValidationError
from crm_domain.queries import BookingQuery, ContactQuery
from crm_domain.services import HISTORY_RESOURCE, History, HistoryImportService

pytestmark = pytest.mark.anyio


def _history(world: Any, tenant_id: str, *, contact_id: str | None = None) -> History:
    then = world.clock.now() - timedelta(days=60)
    contact = Contact(
        id="01HISTORYCONTACT0000000001",
        tenant_id=tenant_id,
        first_name="Ada",
        email="ada@example.org",
        created_at=then,
        updated_at=then,
    )
    booking = Booking(
        id="01HISTORYBOOKING0000000001",
        tenant_id=tenant_id,
        contact_id=contact_id or contact.id,
        service_type="mri",
        starts_at=then + timedelta(days=2),
        ends_at=then + timedelta(days=2, minutes=45),
        status=BookingStatus.COMPLETED,
        created_at=then,
        updated_at=then,
    )
    touch = Touchpoint(
        id="01HISTORYTOUCH000000000001",
        tenant_id=tenant_id,
        contact_id=contact.id,
        kind=TouchpointKind.FORM_SUBMIT,
        occurred_at=then,
        created_at=then,
    )
    return History(contacts=[contact], bookings=[booking], touchpoints=[touch])


async def test_records_keep_their_dates_with_one_audit_entry_and_one_event(world: Any) -> None:
    history = HistoryImportService.of(world.services)
    before = len(await world.audit())
    counts = await history.restore(world.ctx(), "move-1", _history(world, world.sydney.id))
    assert counts == {"contacts": 1, "touchpoints": 1, "bookings": 1, "tasks": 0, "sms": 0}
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        [contact] = (await uow.contacts.list(ContactQuery())).items
        [booking] = (await uow.bookings.list(BookingQuery())).items
    assert contact.created_at == world.clock.now() - timedelta(days=60)
    assert booking.status is BookingStatus.COMPLETED
    audit = (await world.audit())[before:]
    assert [(e.resource_type, e.resource_id) for e in audit] == [(HISTORY_RESOURCE, "move-1")]
    assert "1 contacts" in (audit[0].detail or "")
    # One event for the batch: no reminders, automations or rescoring per old record.
    names = [n for n in await world.event_names() if n not in ("LocationCreated",)]
    assert names == ["HistoryImported"]


async def test_a_record_of_another_location_or_an_unknown_contact_stores_nothing(
    world: Any,
) -> None:
    history = HistoryImportService.of(world.services)
    with pytest.raises(ValidationError) as foreign:
        await history.restore(world.ctx(), "move-2", _history(world, world.melbourne.id))
    assert foreign.value.field == "contacts.tenant_id"
    with pytest.raises(ValidationError) as dangling:
        await history.restore(
            world.ctx(),
            "move-3",
            _history(world, world.sydney.id, contact_id="01NOSUCHCONTACT00000000000"),
        )
    assert dangling.value.field == "contact_id"
    with pytest.raises(PermissionDenied):
        await history.restore(world.ctx(Role.READONLY), "move-4", _history(world, world.sydney.id))
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert await uow.contacts.count(ContactQuery()) == 0
        assert await uow.bookings.count(BookingQuery()) == 0
    assert "HistoryImported" not in await world.event_names()
