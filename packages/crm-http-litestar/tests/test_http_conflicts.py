"""A 409 for a refused delete says what still refers to the record, and how many."""

from __future__ import annotations

import msgspec
import pytest
from crm_domain.errors import Conflict, Reference
from crm_domain.queries import BookingQuery

from crm_http_litestar.problems import problem_for
from crm_http_litestar.testing import World


@pytest.mark.anyio
async def test_deleting_a_contact_with_bookings_names_them_and_their_count(world: World) -> None:
    headers = await world.headers("owner", "sydney")
    listed = await world.client.get("/api/bookings?limit=1", headers=headers)
    contact_id = listed.json()["items"][0]["contact_id"]
    async with world.gateway.unit_of_work(world.locations["sydney"]) as uow:
        bookings = await uow.bookings.count(BookingQuery(contact_id=contact_id))
    assert bookings >= 1

    refused = await world.client.delete(f"/api/contacts/{contact_id}", headers=headers)

    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert body["references"] == [{"kind": "booking", "count": bookings}]
    noun = "booking" if bookings == 1 else "bookings"
    assert body["detail"] == (
        f"contact {contact_id!r} is still referenced by {bookings} {noun}; "
        "delete or move those first"
    )
    still = await world.client.get(f"/api/contacts/{contact_id}", headers=headers)
    assert still.status_code == 200


def test_other_conflicts_carry_no_references_member() -> None:
    plain, _ = problem_for(Conflict("already exists (email)"))
    assert "references" not in msgspec.json.decode(msgspec.json.encode(plain))
    refused, _ = problem_for(
        Conflict("contact 'c1' is still referenced by 2 tasks", references=(Reference("task", 2),))
    )
    assert msgspec.json.decode(msgspec.json.encode(refused))["references"] == [
        {"kind": "task", "count": 2}
    ]
