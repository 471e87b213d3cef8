"""``GET /api/bookings/slots``: free slots in opening hours, clear of bookings and buffer."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from crm_http_litestar.testing import World

pytestmark = pytest.mark.anyio

SYDNEY = ZoneInfo("Australia/Sydney")


async def test_slots_avoid_a_booking_with_its_buffer_and_stay_in_hours(world: World) -> None:
    headers = await world.headers("owner")
    # A Wednesday well after the demo data, opening hours 08:00-17:00 (the default).
    day = datetime(2027, 3, 3, tzinfo=SYDNEY)
    window = {"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()}
    params = {"service": "Slots scan", "duration": 60, **window}
    before = await world.client.get("/api/bookings/slots", headers=headers, params=params)
    assert before.status_code == 200, before.text
    starts = [datetime.fromisoformat(s["starts_at"]) for s in before.json()["slots"]]
    assert starts[0] == day.replace(hour=8) and starts[-1] == day.replace(hour=16)
    contact = await world.client.post(
        "/api/contacts", headers=headers, json={"first_name": "Slot", "email": "slot@example.com"}
    )
    booked_at = day.replace(hour=12)
    booking = await world.client.post(
        "/api/bookings",
        headers=headers,
        json={
            "contact_id": contact.json()["id"],
            "service_type": "Slots scan",
            "starts_at": booked_at.isoformat(),
            "ends_at": (booked_at + timedelta(hours=1)).isoformat(),
        },
    )
    assert booking.status_code == 201, booking.text
    after = await world.client.get("/api/bookings/slots", headers=headers, params=params)
    slots = [
        (datetime.fromisoformat(s["starts_at"]), datetime.fromisoformat(s["ends_at"]))
        for s in after.json()["slots"]
    ]
    buffer = timedelta(minutes=15)  # the location's default booking buffer
    assert slots and len(slots) < len(starts)
    for start, end in slots:
        assert end + buffer <= booked_at or booked_at + timedelta(hours=1) + buffer <= start
        local_start, local_end = start.astimezone(SYDNEY), end.astimezone(SYDNEY)
        assert local_start.hour >= 8 and (local_end.hour, local_end.minute) <= (17, 0)
    # Another service's scanner is free then.
    other = await world.client.get(
        "/api/bookings/slots", headers=headers, params={**params, "service": "Other scan"}
    )
    assert len(other.json()["slots"]) == len(starts)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"duration": 2}, "duration"),
        ({"from": "2027-03-03T00:00:00+11:00", "to": "2027-03-01T00:00:00+11:00"}, "to"),
        ({"from": "2027-03-03T00:00:00+11:00", "to": "2027-06-03T00:00:00+11:00"}, "to"),
        ({"from": "2027-03-03T00:00:00"}, "from"),
        ({"nope": "1"}, "nope"),
    ],
)
async def test_bad_parameters_are_a_422_naming_them(
    world: World, params: dict[str, str], field: str
) -> None:
    response = await world.client.get(
        "/api/bookings/slots", headers=await world.headers("owner"), params=params
    )
    assert response.status_code in (400, 422), response.text
    assert field in response.text


async def test_slots_need_bookings_read(world: World) -> None:
    response = await world.client.get("/api/bookings/slots")
    assert response.status_code == 401
