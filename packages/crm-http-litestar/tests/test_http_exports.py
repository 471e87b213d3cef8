"""Exports over HTTP: a patient's record (JSON, HTML) and the streamed bulk export.

The demo world on real SQLite; assertions on the responses and the audit chain.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from crm_domain.entities import Booking, Contact, Touchpoint
from crm_domain.queries import ContactQuery

from crm_http_litestar.testing import World

pytestmark = pytest.mark.anyio


async def patient(world: World, location: str = "sydney") -> Contact:
    """A contact with a touchpoint and a booking, and a name HTML must escape."""
    ids = world.runtime.ids
    now = world.clock.now()
    tenant = world.locations[location]
    contact = Contact(
        id=ids.new_id(),
        tenant_id=tenant,
        first_name="<b>Zoë</b>",
        last_name="O'Neil & Co",
        email=f"zoe-{ids.new_id().lower()}@example.com",
        sms_opt_in=True,
        consent_updated_at=now,
        created_at=now,
        updated_at=now,
    )
    async with world.gateway.unit_of_work(tenant) as uow:
        await uow.contacts.add(contact)
        await uow.touchpoints.add(
            Touchpoint(
                id=ids.new_id(),
                tenant_id=tenant,
                contact_id=contact.id,
                kind="call_inbound",
                channel="phone",
                occurred_at=now,
                created_at=now,
            )
        )
        await uow.bookings.add(
            Booking(
                id=ids.new_id(),
                tenant_id=tenant,
                contact_id=contact.id,
                service_type="MRI knee",
                starts_at=now + timedelta(days=3),
                ends_at=now + timedelta(days=3, minutes=30),
                created_at=now,
                updated_at=now,
            )
        )
        await uow.commit()
    return contact


async def test_the_record_holds_everything_about_the_contact_and_is_audited(
    world: World,
) -> None:
    contact = await patient(world)
    headers = await world.headers("reception")
    response = await world.client.get(f"/api/contacts/{contact.id}/record", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["contact"]["email"] == contact.email
    assert body["contact"]["sms_opt_in"] is True
    assert [t["kind"] for t in body["touchpoints"]] == ["call_inbound"]
    assert [b["service_type"] for b in body["bookings"]] == ["MRI knee"]
    assert body["tasks"] == [] and body["messages"] == []
    entry = (await world.audit("sydney"))[-1]
    assert (entry.resource_type, entry.resource_id, entry.action) == (
        "contact_record",
        contact.id,
        "READ",
    )
    assert entry.detail is not None and "1 touchpoints, 1 bookings" in entry.detail


async def test_the_html_record_escapes_what_it_shows(world: World) -> None:
    contact = await patient(world)
    response = await world.client.get(
        f"/api/contacts/{contact.id}/record?format=html", headers=await world.headers("owner")
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "&lt;b&gt;Zoë&lt;/b&gt;" in response.text
    assert "<b>Zoë" not in response.text
    assert "MRI knee" in response.text


async def test_another_locations_record_is_a_404(world: World) -> None:
    contact = await patient(world, "melbourne")
    response = await world.client.get(
        f"/api/contacts/{contact.id}/record", headers=await world.headers("owner", "sydney")
    )
    assert response.status_code == 404


async def test_a_bad_format_is_a_422_naming_it(world: World) -> None:
    contact = await patient(world)
    response = await world.client.get(
        f"/api/contacts/{contact.id}/record?format=pdf", headers=await world.headers("owner")
    )
    assert response.status_code == 422
    assert "format" in response.text


async def stored_ids(world: World, location: str) -> set[str]:
    async with world.gateway.unit_of_work(world.locations[location]) as uow:
        ids: set[str] = set()
        query = ContactQuery(limit=200)
        while True:
            page = await uow.contacts.list(query)
            ids.update(c.id for c in page.items)
            if page.next_cursor is None:
                return ids
            query = ContactQuery(limit=200, cursor=page.next_cursor)


async def test_bulk_csv_export_streams_every_contact_of_the_location_once(
    world: World,
) -> None:
    extra = await patient(world)
    before = len(await world.audit("sydney"))
    response = await world.client.get("/api/exports/contacts", headers=await world.headers("owner"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == await stored_ids(world, "sydney")
    assert extra.id in ids
    assert {row["tenant_id"] for row in rows} == {world.locations["sydney"]}
    mine = [
        e for e in (await world.audit("sydney"))[before:] if e.resource_type == "contact_export"
    ]
    assert len(mine) == 1
    assert mine[0].detail == f"bulk export (csv): {len(ids)} contacts"


async def test_bulk_jsonl_export_filters_and_is_one_object_per_line(world: World) -> None:
    response = await world.client.get(
        "/api/exports/contacts?format=jsonl&status=new", headers=await world.headers("owner")
    )
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines, "the demo data has new contacts"
    assert {line["status"] for line in lines} == {"new"}


async def test_bulk_export_is_denied_to_reception(world: World) -> None:
    response = await world.client.get(
        "/api/exports/contacts", headers=await world.headers("reception")
    )
    assert response.status_code == 403
    entry = (await world.audit("sydney"))[-1]
    # The route's guard refuses it before the service runs, and audits the request.
    assert (entry.request_path, entry.outcome.value) == ("/api/exports/contacts", "denied")


async def test_an_unknown_query_parameter_with_a_nul_is_a_422_not_a_503(world: World) -> None:
    # Schemathesis found it: the refusal's audit note carried the NUL, which the audit refuses.
    response = await world.client.get(
        "/api/contacts/abc/record?x%00y=1", headers=await world.headers("owner")
    )
    assert response.status_code == 422
    entry = (await world.audit("sydney"))[-1]
    assert entry.detail == "ValidationError: x\\0y"
