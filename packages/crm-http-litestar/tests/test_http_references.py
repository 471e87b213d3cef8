"""Ids of other records in bodies and filters (BOLA/BOPLA by field), end to end on SQLite.

Another location's real id and an id that exists nowhere must get the same
answer — a 404 for a body field, an empty page for a filter — so a caller
cannot probe what other locations hold; a refused write changes nothing and
leaves exactly one audit entry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from crm_domain.entities import EmailCampaign
from crm_domain.queries import BookingQuery, TaskQuery, TouchpointQuery

from crm_http_litestar.testing import World

pytestmark = pytest.mark.anyio

#: A well-formed id that no location has.
MISSING = "01JZZZZZZZZZZZZZZZZZZZZZZZ"


async def _first(world: World, path: str, location: str) -> dict[str, Any]:
    response = await world.client.get(
        f"{path}?limit=1", headers=await world.headers("owner", location)
    )
    assert response.status_code == 200, response.text
    item: dict[str, Any] = response.json()["items"][0]
    return item


async def _campaign(world: World, location: str) -> str:
    """A draft campaign of ``location``, stored through the gateway (no route makes one yet)."""
    now = world.clock.now()
    tenant = world.locations[location]
    campaign = EmailCampaign(
        id=world.runtime.ids.new_id(),
        tenant_id=tenant,
        name="Spring",
        subject="Hello",
        body_html="<p>Hi</p>",
        body_text="Hi",
        created_at=now,
        updated_at=now,
    )
    async with world.gateway.unit_of_work(tenant) as uow:
        await uow.campaigns.add(campaign)
        await uow.commit()
    return campaign.id


async def _melbourne_ids(world: World) -> dict[str, str]:
    """Real ids of Melbourne's records (and of a Melbourne-only staff user)."""
    booking = await _first(world, "/api/bookings", "melbourne")
    return {
        "contact_id": str(booking["contact_id"]),  # so a contact filter on bookings matches
        "booking_id": str(booking["id"]),
        "assignee_id": world.users["doctor"],  # a member of Melbourne only
        "campaign_id": await _campaign(world, "melbourne"),
    }


async def _store(world: World) -> dict[str, Any]:
    """What the refused writes could have touched, at both locations."""
    state: dict[str, Any] = {}
    for code, tenant in world.locations.items():
        async with world.gateway.unit_of_work(tenant) as uow:
            state[code] = (
                await uow.bookings.count(BookingQuery()),
                await uow.touchpoints.count(TouchpointQuery()),
                sorted(
                    (t.id, t.updated_at, t.contact_id, t.booking_id, t.assignee_id, t.title)
                    for t in (await uow.tasks.list(TaskQuery(limit=200))).items
                ),
            )
    return state


def _without(body: dict[str, Any], ref: str) -> dict[str, Any]:
    """A problem body with the echoed id and the request id taken out."""
    rest = {k: v for k, v in body.items() if k != "request_id"}
    rest["detail"] = str(rest["detail"]).replace(ref, "<id>")
    return rest


Case = tuple[str, str, Callable[[str], dict[str, Any]]]


def _cases(own_contact: str, own_task: str) -> dict[str, list[Case]]:
    """Every body field that names another record, by field: (method, path, body for an id)."""
    start = "2031-05-06T01:00:00+00:00"
    end = "2031-05-06T01:30:00+00:00"
    return {
        "contact_id": [
            (
                "POST",
                "/api/bookings",
                lambda ref: {
                    "contact_id": ref,
                    "service_type": "MRI",
                    "starts_at": start,
                    "ends_at": end,
                },
            ),
            ("POST", "/api/tasks", lambda ref: {"title": "t", "contact_id": ref}),
            ("PATCH", f"/api/tasks/{own_task}", lambda ref: {"title": "x", "contact_id": ref}),
        ],
        "booking_id": [
            ("POST", "/api/tasks", lambda ref: {"title": "t", "booking_id": ref}),
            ("PATCH", f"/api/tasks/{own_task}", lambda ref: {"booking_id": ref}),
        ],
        "assignee_id": [
            ("POST", "/api/tasks", lambda ref: {"title": "t", "assignee_id": ref}),
            ("PATCH", f"/api/tasks/{own_task}", lambda ref: {"assignee_id": ref}),
        ],
        "campaign_id": [
            (
                "POST",
                f"/api/contacts/{own_contact}/touchpoints",
                lambda ref: {"kind": "email_opened", "campaign_id": ref},
            ),
        ],
    }


async def test_body_ids_of_another_location_are_404_like_unknown_ones(world: World) -> None:
    theirs = await _melbourne_ids(world)
    owner = await world.headers("owner")
    own_contact = str((await _first(world, "/api/contacts", "sydney"))["id"])
    created = await world.client.post("/api/tasks", headers=owner, json={"title": "Send forms"})
    assert created.status_code == 201, created.text
    own_task = str(created.json()["id"])
    # What a GET of a missing id says, for the shape of the answer.
    missing_get = (await world.client.get(f"/api/contacts/{MISSING}", headers=owner)).json()

    before = await _store(world)
    audit_before = len(await world.audit("sydney"))
    request_ids: list[str] = []
    for field, cases in _cases(own_contact, own_task).items():
        for method, path, body in cases:
            answers = []
            for ref in (theirs[field], MISSING):
                response = await world.client.request(method, path, headers=owner, json=body(ref))
                where = (method, path, field, ref == MISSING)
                assert response.status_code == 404, (where, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                problem = response.json()
                assert problem["field"] == field, where
                assert problem["title"] == missing_get["title"] == "Not Found"
                assert problem.get("type") == missing_get.get("type")
                assert set(problem) == set(missing_get) | {"field"}, where
                assert ref in problem["detail"], where
                assert "melbourne" not in response.text.lower()
                request_ids.append(response.headers["x-request-id"])
                answers.append(_without(problem, ref))
            # Another location's record and no record at all: indistinguishable.
            assert answers[0] == answers[1], (method, path, field)

    # Nothing was created or changed, at either location.
    assert await _store(world) == before
    # Exactly one audit entry per refused request, each a failure naming the field.
    entries = (await world.audit("sydney"))[audit_before:]
    assert [e.request_id for e in entries] == request_ids
    assert {e.outcome.value for e in entries} == {"failed"}
    assert all(str(e.detail).startswith("NotFound: ") for e in entries)
    assert all(e.user_id == world.users["owner"] for e in entries)


async def test_the_same_body_with_own_ids_works(world: World) -> None:
    """The 404s above come from the reference, not from the request's shape."""
    owner = await world.headers("owner")
    ours = {
        "contact_id": str((await _first(world, "/api/contacts", "sydney"))["id"]),
        "booking_id": str((await _first(world, "/api/bookings", "sydney"))["id"]),
        "assignee_id": world.users["reception"],
    }
    response = await world.client.post("/api/tasks", headers=owner, json={"title": "t", **ours})
    assert response.status_code == 201, response.text
    campaign = await _campaign(world, "sydney")
    touch = await world.client.post(
        f"/api/contacts/{ours['contact_id']}/touchpoints",
        headers=owner,
        json={"kind": "email_opened", "campaign_id": campaign},
    )
    assert touch.status_code == 201, touch.text
    assert touch.json()["campaign_id"] == campaign


async def test_a_deactivated_member_as_assignee_is_422(world: World) -> None:
    owner = await world.headers("owner")
    members = (await world.client.get("/api/admin/users?limit=50", headers=owner)).json()
    reception = next(m for m in members["items"] if m["user_id"] == world.users["reception"])
    changed = await world.client.patch(
        f"/api/admin/users/{reception['membership_id']}", headers=owner, json={"is_active": False}
    )
    assert changed.status_code == 200, changed.text
    response = await world.client.post(
        "/api/tasks", headers=owner, json={"title": "t", "assignee_id": world.users["reception"]}
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "assignee_id"


async def test_filters_on_another_locations_ids_find_nothing(world: World) -> None:
    theirs = await _melbourne_ids(world)
    melbourne = await world.headers("owner", "melbourne")
    # A Melbourne task pointing at all three, so each filter does match there.
    made = await world.client.post(
        "/api/tasks",
        headers=melbourne,
        json={
            "title": "theirs",
            **{k: theirs[k] for k in ("contact_id", "booking_id", "assignee_id")},
        },
    )
    assert made.status_code == 201, made.text
    owner = await world.headers("owner")
    filters = [
        ("/api/bookings", "contact_id"),
        ("/api/tasks", "contact_id"),
        ("/api/tasks", "booking_id"),
        ("/api/tasks", "assignee_id"),
    ]
    audit_before = len(await world.audit("sydney"))
    request_ids = []
    for path, field in filters:
        there = await world.client.get(path, headers=melbourne, params={field: theirs[field]})
        assert there.status_code == 200 and there.json()["items"], (path, field)
        answers = []
        for ref in (theirs[field], MISSING):
            response = await world.client.get(path, headers=owner, params={field: ref})
            assert response.status_code == 200, (path, field, response.text)
            request_ids.append(response.headers["x-request-id"])
            answers.append(response.json())
        assert answers[0] == answers[1] == {"items": [], "next_cursor": None}, (path, field)
    entries = (await world.audit("sydney"))[audit_before:]
    assert [e.request_id for e in entries] == request_ids
    assert {(e.action, e.outcome.value, e.detail) for e in entries} == {
        ("LIST", "success", "0 returned")
    }


async def test_openapi_documents_404_for_body_references(world: World) -> None:
    schema = (await world.client.get("/schema/openapi.json")).json()
    for path, method in (
        ("/api/bookings", "post"),
        ("/api/tasks", "post"),
        ("/api/tasks/{id}", "patch"),
        ("/api/contacts/{id}/touchpoints", "post"),
    ):
        responses = schema["paths"][path][method]["responses"]
        assert "404" in responses, (path, method)
        assert "body field" in responses["404"]["description"], (path, method)
    for path in ("/api/bookings", "/api/tasks"):
        description = schema["paths"][path]["get"]["description"]
        assert "empty page" in description, path


async def test_a_booking_for_another_locations_contact_leaves_no_idempotent_answer(
    world: World,
) -> None:
    """A refused create is not stored as the key's answer: a retry is refused again."""
    contact = str((await _first(world, "/api/contacts", "melbourne"))["id"])
    owner = {**(await world.headers("owner")), "Idempotency-Key": "ref-404"}
    start = world.clock.now() + timedelta(days=30)
    body = {
        "contact_id": contact,
        "service_type": "MRI",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(),
    }
    first = await world.client.post("/api/bookings", headers=owner, json=body)
    again = await world.client.post("/api/bookings", headers=owner, json=body)
    assert (first.status_code, again.status_code) == (404, 404)
    assert "idempotent-replayed" not in again.headers
