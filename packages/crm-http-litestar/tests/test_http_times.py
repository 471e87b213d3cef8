"""The API's one timezone rule: every time it returns is UTC, written with ``Z``.

Whatever offset a time was sent with, create, get, list and update answer the
same string for it (on SQLite here; the gateway kit checks every gateway).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from crm_http_litestar.testing import World

pytestmark = pytest.mark.anyio


async def _listed(world: World, headers: dict[str, str], booking_id: str) -> dict[str, Any]:
    cursor: str | None = None
    for _ in range(50):
        params = {"limit": "200"} | ({"cursor": cursor} if cursor else {})
        page = await world.client.get("/api/bookings", headers=headers, params=params)
        assert page.status_code == 200, page.text
        for item in page.json()["items"]:
            if item["id"] == booking_id:
                found: dict[str, Any] = item
                return found
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    raise AssertionError(f"booking {booking_id} is not listed")


async def test_a_booking_sent_with_an_offset_is_returned_in_utc_everywhere(world: World) -> None:
    headers = await world.headers("owner", "sydney")
    contacts = await world.client.get("/api/contacts?limit=1", headers=headers)
    contact_id = contacts.json()["items"][0]["id"]
    created = await world.client.post(
        "/api/bookings",
        headers=headers,
        json={
            "contact_id": contact_id,
            "service_type": "MRI",
            "starts_at": "2031-05-06T09:30:00.250+11:00",
            "ends_at": "2031-05-06T10:00:00+11:00",
        },
    )
    assert created.status_code == 201, created.text
    booking = created.json()
    got = await world.client.get(f"/api/bookings/{booking['id']}", headers=headers)
    assert got.status_code == 200, got.text
    listed = await _listed(world, headers, booking["id"])
    for answer in (booking, got.json(), listed):
        assert answer["starts_at"] == "2031-05-05T22:30:00.250000Z"
        assert answer["ends_at"] == "2031-05-05T23:00:00Z"
        for name in ("created_at", "updated_at"):
            assert answer[name].endswith("Z"), answer
    assert datetime.fromisoformat(booking["starts_at"]) == datetime.fromisoformat(
        "2031-05-06T09:30:00.250+11:00"
    )
    assert got.json() == listed == booking

    moved = await world.client.patch(
        f"/api/bookings/{booking['id']}",
        headers=headers,
        json={"starts_at": "2031-05-06T08:00:00-04:00", "ends_at": "2031-05-06T09:00:00-04:00"},
    )
    assert moved.status_code == 200, moved.text
    again = await world.client.get(f"/api/bookings/{booking['id']}", headers=headers)
    for answer in (moved.json(), again.json(), await _listed(world, headers, booking["id"])):
        assert answer["starts_at"] == "2031-05-06T12:00:00Z"
        assert answer["ends_at"] == "2031-05-06T13:00:00Z"
    assert moved.json() == again.json()
