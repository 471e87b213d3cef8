"""Duplicate detection and merge on the in-memory gateway, with a Hypothesis property.

Property: merging never loses a touchpoint, booking, task, message or consent
decision, and never reaches into another location.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_domain.entities import Booking, Contact, Role, Task, Touchpoint
from crm_domain.errors import NotFound, PermissionDenied, ValidationError
from crm_domain.queries import BookingQuery, TaskQuery, TouchpointQuery
from crm_domain.services import ContactMergeService

from .conftest import ServiceWorld

pytestmark = pytest.mark.anyio


def merger(world: Any) -> ContactMergeService:
    return ContactMergeService.of(world.services)


async def person(
    world: Any,
    first: str,
    last: str,
    *,
    email: str | None = None,
    phone: str | None = None,
    born: date | None = None,
    location: Any = None,
    sms_opt_in: bool = False,
    consent_days: int | None = None,
    tags: tuple[str, ...] = (),
) -> Contact:
    now = world.clock.now()
    contact_id = world.ids.new_id()
    if email is None and phone is None:
        email = f"{contact_id.lower()}@example.org"  # a contact needs one or the other
    contact = Contact(
        id=contact_id,
        tenant_id=(location or world.sydney).id,
        first_name=first,
        last_name=last,
        email=email,
        phone=phone,
        date_of_birth=born,
        sms_opt_in=sms_opt_in,
        consent_updated_at=None if consent_days is None else now + timedelta(days=consent_days),
        tags=tags,
        created_at=now,
        updated_at=now,
    )
    async with world.gateway.unit_of_work(contact.tenant_id) as uow:
        await uow.contacts.add(contact)
        await uow.commit()
    return contact


async def history(
    world: Any, contact: Contact, *, touchpoints: int, bookings: int, tasks: int
) -> None:
    now = world.clock.now()
    async with world.gateway.unit_of_work(contact.tenant_id) as uow:
        for _ in range(touchpoints):
            await uow.touchpoints.add(
                Touchpoint(
                    id=world.ids.new_id(),
                    tenant_id=contact.tenant_id,
                    contact_id=contact.id,
                    kind="note",
                    occurred_at=now,
                    created_at=now,
                )
            )
        for i in range(bookings):
            start = now + timedelta(days=10 + i, hours=len(contact.id) % 7)
            await uow.bookings.add(
                Booking(
                    id=world.ids.new_id(),
                    tenant_id=contact.tenant_id,
                    contact_id=contact.id,
                    service_type="CT",
                    starts_at=start,
                    ends_at=start + timedelta(minutes=20),
                    created_at=now,
                    updated_at=now,
                )
            )
        for _ in range(tasks):
            await uow.tasks.add(
                Task(
                    id=world.ids.new_id(),
                    tenant_id=contact.tenant_id,
                    contact_id=contact.id,
                    title="Call back",
                    created_at=now,
                    updated_at=now,
                )
            )
        await uow.commit()


async def owned(world: Any, contact_id: str, tenant_id: str) -> tuple[set[str], set[str], set[str]]:
    async with world.gateway.unit_of_work(tenant_id) as uow:
        tps = await uow.touchpoints.list(TouchpointQuery(contact_id=contact_id, limit=200))
        bks = await uow.bookings.list(BookingQuery(contact_id=contact_id, limit=200))
        tks = await uow.tasks.list(TaskQuery(contact_id=contact_id, limit=200))
    return (
        {t.id for t in tps.items},
        {b.id for b in bks.items},
        {t.id for t in tks.items},
    )


async def test_duplicates_by_email_phone_and_similar_name_with_birth_date(world: Any) -> None:
    ann = await person(world, "Ann", "Nguyen", email="ann@example.com", phone="+61412000001",
                       born=date(1980, 5, 1))  # fmt: skip
    same_email = await person(world, "A", "N", email="ann@example.com")
    same_phone = await person(world, "Annie", "Smith", phone="+61412000001")
    similar = await person(world, "Anne", "Nguyen", born=date(1980, 5, 1))
    await person(world, "Anne", "Nguyen", born=date(1981, 5, 1))  # other birthday
    await person(world, "Bob", "Nguyen", born=date(1980, 5, 1))  # other name
    await person(world, "Ann", "Nguyen", email="ann@example.com", location=world.melbourne)

    found = await merger(world).duplicates(world.ctx(Role.RECEPTIONIST), ann.id)
    by_id = {c.contact.id: c for c in found}
    assert set(by_id) == {same_email.id, same_phone.id, similar.id}
    assert by_id[same_email.id].reasons == ("same email",)
    assert by_id[same_phone.id].reasons == ("same phone",)
    assert by_id[similar.id].reasons[0].startswith("similar name (")
    assert found[-1].contact.id == similar.id
    entry = (await world.audit())[-1]
    assert (entry.resource_type, entry.detail) == ("contact_duplicates", "3 candidates")


async def test_merge_preview_changes_nothing_and_apply_moves_everything(world: Any) -> None:
    survivor = await person(world, "Ann", "", email="ann@example.com", tags=("mri",))
    duplicate = await person(world, "Ann", "Nguyen", phone="+61412000002", tags=("vip",),
                             sms_opt_in=True, consent_days=1)  # fmt: skip
    await history(world, duplicate, touchpoints=3, bookings=1, tasks=2)
    service = merger(world)
    preview = await service.merge(world.ctx(), survivor.id, duplicate.id, apply=False)
    assert (preview.touchpoints, preview.bookings, preview.tasks) == (3, 1, 2)
    assert preview.changed == ("consent_updated_at", "last_name", "phone", "sms_opt_in", "tags")
    assert await owned(world, survivor.id, world.sydney.id) == (set(), set(), set())

    plan = await service.merge(world.ctx(), survivor.id, duplicate.id, apply=True)
    assert plan.applied
    tps, bks, tks = await owned(world, survivor.id, world.sydney.id)
    assert (len(tps), len(bks), len(tks)) == (3, 1, 2)
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        merged = await uow.contacts.get(survivor.id)
        with pytest.raises(NotFound):
            await uow.contacts.get(duplicate.id)
    assert (merged.last_name, merged.phone, merged.sms_opt_in) == ("Nguyen", "+61412000002", True)
    assert merged.tags == ("mri", "vip")
    assert [e.payload["merged_contact_id"] for e in await world.events("ContactsMerged")] == [
        duplicate.id
    ]
    entry = (await world.audit())[-1]
    assert (entry.action, entry.resource_id) == ("UPDATE", survivor.id)
    assert entry.detail is not None and duplicate.id in entry.detail


async def test_merge_refuses_another_location_itself_and_reception(world: Any) -> None:
    here = await person(world, "Ann", "Lee")
    there = await person(world, "Ann", "Lee", location=world.melbourne)
    service = merger(world)
    with pytest.raises(NotFound):
        await service.merge(world.ctx(), here.id, there.id, apply=True)
    with pytest.raises(ValidationError):
        await service.merge(world.ctx(), here.id, here.id, apply=True)
    with pytest.raises(PermissionDenied):
        await service.merge(world.ctx(Role.RECEPTIONIST), here.id, there.id, apply=False)
    async with world.gateway.unit_of_work(world.melbourne.id) as uow:
        assert (await uow.contacts.get(there.id)).id == there.id


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    counts=st.tuples(*(st.integers(0, 3) for _ in range(6))),
    consents=st.tuples(st.none() | st.integers(-5, 5), st.none() | st.integers(-5, 5)),
    opt_ins=st.tuples(st.booleans(), st.booleans()),
)
def test_merging_never_loses_history_or_the_latest_consent(
    counts: tuple[int, ...], consents: tuple[int | None, int | None], opt_ins: tuple[bool, bool]
) -> None:
    import anyio

    async def run() -> None:
        world = await ServiceWorld().setup()
        try:
            a = await person(world, "A", "X", sms_opt_in=opt_ins[0], consent_days=consents[0])
            b = await person(world, "B", "Y", sms_opt_in=opt_ins[1], consent_days=consents[1])
            other = await person(world, "C", "Z", location=world.melbourne)
            await history(world, a, touchpoints=counts[0], bookings=counts[1], tasks=counts[2])
            await history(world, b, touchpoints=counts[3], bookings=counts[4], tasks=counts[5])
            await history(world, other, touchpoints=1, bookings=1, tasks=1)
            before_a = await owned(world, a.id, world.sydney.id)
            before_b = await owned(world, b.id, world.sydney.id)
            before_other = await owned(world, other.id, world.melbourne.id)

            await merger(world).merge(world.ctx(), a.id, b.id, apply=True)

            after = await owned(world, a.id, world.sydney.id)
            for kind in range(3):
                assert after[kind] == before_a[kind] | before_b[kind]
            assert await owned(world, other.id, world.melbourne.id) == before_other
            async with world.gateway.unit_of_work(world.sydney.id) as uow:
                merged = await uow.contacts.get(a.id)
            a_at, b_at = consents
            b_newer = b_at is not None and (a_at is None or b_at > a_at)
            assert merged.sms_opt_in == (opt_ins[1] if b_newer else opt_ins[0])
        finally:
            await world.gateway.close()

    anyio.run(run)
