"""Duplicates and merge over HTTP on real SQLite: candidates, preview, apply, refusals."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from crm_domain.entities import Booking, Contact, Touchpoint
from crm_domain.errors import NotFound
from crm_domain.queries import BookingQuery, TouchpointQuery

from crm_http_litestar.testing import World

pytestmark = pytest.mark.anyio


async def two_of_one_person(world: World, location: str = "sydney") -> tuple[Contact, Contact]:
    """One patient twice (same name and birth date); the second has a touchpoint, a booking."""
    ids = world.runtime.ids
    now = world.clock.now()
    tenant = world.locations[location]
    born = date(1990, 1, 31)
    phone = f"+61412{int(ids.new_id()[-6:], 36) % 1_000_000:06d}"
    first = Contact(id=ids.new_id(), tenant_id=tenant, first_name="Mia", last_name="Tran",
                    email=f"mia-{ids.new_id().lower()}@example.com", date_of_birth=born,
                    created_at=now, updated_at=now)  # fmt: skip
    second = Contact(id=ids.new_id(), tenant_id=tenant, first_name="Mia", last_name="Tran",
                     phone=phone, date_of_birth=born, created_at=now, updated_at=now)  # fmt: skip
    start = now + timedelta(days=40)
    async with world.gateway.unit_of_work(tenant) as uow:
        await uow.contacts.add(first)
        await uow.contacts.add(second)
        await uow.touchpoints.add(Touchpoint(id=ids.new_id(), tenant_id=tenant,
                                             contact_id=second.id, kind="note", occurred_at=now,
                                             created_at=now))  # fmt: skip
        await uow.bookings.add(Booking(id=ids.new_id(), tenant_id=tenant, contact_id=second.id,
                                       service_type="X-ray", starts_at=start,
                                       ends_at=start + timedelta(minutes=15), created_at=now,
                                       updated_at=now))  # fmt: skip
        await uow.commit()
    return first, second


async def test_merge_preview_then_apply_moves_history_on_sqlite(world: World) -> None:
    first, second = await two_of_one_person(world)
    headers = await world.headers("owner")
    url = f"/api/contacts/{first.id}/merge"
    preview = await world.client.post(url, headers=headers, json={"duplicate_id": second.id})
    assert preview.status_code == 200, preview.text
    assert preview.json()["applied"] is False
    assert (preview.json()["touchpoints"], preview.json()["bookings"]) == (1, 1)
    assert preview.json()["changed"] == ["phone"]

    applied = await world.client.post(
        url, headers=headers, json={"duplicate_id": second.id, "apply": True}
    )
    assert applied.status_code == 200, applied.text
    assert applied.json()["survivor"]["phone"] == second.phone
    tenant = world.locations["sydney"]
    async with world.gateway.unit_of_work(tenant) as uow:
        tps = await uow.touchpoints.list(TouchpointQuery(contact_id=first.id))
        bks = await uow.bookings.list(BookingQuery(contact_id=first.id))
        with pytest.raises(NotFound):
            await uow.contacts.get(second.id)
    assert (len(tps.items), len(bks.items)) == (1, 1)
    entries = await world.audit("sydney")
    assert entries[-1].resource_id == first.id and second.id in (entries[-1].detail or "")


async def test_duplicates_lists_the_same_name_and_birth_date(world: World) -> None:
    first, second = await two_of_one_person(world)
    response = await world.client.get(
        f"/api/contacts/{second.id}/duplicates", headers=await world.headers("reception")
    )
    assert response.status_code == 200, response.text
    (candidate,) = [c for c in response.json() if c["contact"]["id"] == first.id]
    assert candidate["reasons"] == ["similar name (100) and same date of birth"]


async def test_merge_refusals(world: World) -> None:
    first, second = await two_of_one_person(world)
    _, elsewhere = await two_of_one_person(world, "melbourne")
    owner = await world.headers("owner")
    url = f"/api/contacts/{first.id}/merge"
    across = await world.client.post(url, headers=owner, json={"duplicate_id": elsewhere.id,
                                                               "apply": True})  # fmt: skip
    assert across.status_code == 404
    itself = await world.client.post(url, headers=owner, json={"duplicate_id": first.id})
    assert itself.status_code == 422 and "duplicate_id" in itself.text
    extra = await world.client.post(url, headers=owner, json={"duplicate_id": second.id, "x": 1})
    assert extra.status_code == 422
    reception = await world.client.post(
        url, headers=await world.headers("reception"), json={"duplicate_id": second.id}
    )
    assert reception.status_code == 403
    async with world.gateway.unit_of_work(world.locations["sydney"]) as uow:
        assert (await uow.contacts.get(second.id)).id == second.id


async def test_erase_removes_the_contact_and_its_history_and_refuses_a_hold(world: World) -> None:
    first, second = await two_of_one_person(world)
    owner = await world.headers("owner")
    erased = await world.client.post(f"/api/contacts/{second.id}/erase", headers=owner)
    assert erased.status_code == 200, erased.text
    assert (erased.json()["touchpoints"], erased.json()["bookings"]) == (1, 1)
    again = await world.client.post(f"/api/contacts/{second.id}/erase", headers=owner)
    assert again.status_code == 404
    denied = await world.client.post(
        f"/api/contacts/{first.id}/erase", headers=await world.headers("reception")
    )
    assert denied.status_code == 403
    held = await world.client.patch(
        f"/api/contacts/{first.id}", headers=owner, json={"tags": ["legal-hold"]}
    )
    assert held.status_code == 200, held.text
    refused = await world.client.post(f"/api/contacts/{first.id}/erase", headers=owner)
    assert refused.status_code == 409
    _, elsewhere = await two_of_one_person(world, "melbourne")
    across = await world.client.post(f"/api/contacts/{elsewhere.id}/erase", headers=owner)
    assert across.status_code == 404
