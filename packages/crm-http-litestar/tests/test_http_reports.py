"""`/api/reports`: numbers against stored rows, strict parameters, locations, charts, questions."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from crm_domain.clock import FixedClock
from crm_domain.queries import BookingQuery

from crm_http_litestar.settings import Settings
from crm_http_litestar.testing import World, open_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(settings: Settings, clock: FixedClock) -> AsyncIterator[World]:
    """The demo world with enough history (150 leads a location) for every report to show."""
    async for value in open_world(settings, clock, contacts_per_location=150):
        yield value


async def _stored_bookings(world: World, code: str) -> list[Any]:
    """Every booking of a location, read straight from the store (not through reports)."""
    found: list[Any] = []
    query = BookingQuery(limit=200)
    async with world.gateway.unit_of_work(world.locations[code]) as uow:
        while True:
            page = await uow.bookings.list(query)
            found.extend(page.items)
            if page.next_cursor is None:
                return found
            query = BookingQuery(limit=200, cursor=page.next_cursor)


def _window(world: World) -> dict[str, str]:
    now = world.clock.now()
    return {"start": (now - timedelta(days=120)).isoformat(), "end": now.isoformat()}


async def test_no_shows_by_week_match_the_stored_bookings(world: World) -> None:
    params = {"metric": "no_shows", "by": "week", **_window(world)}
    response = await world.client.get(
        "/api/reports", params=params, headers=await world.headers("owner")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    sydney = ZoneInfo("Australia/Sydney")
    start, end = world.clock.now() - timedelta(days=120), world.clock.now()
    expected: dict[str, int] = {}
    for b in await _stored_bookings(world, "sydney"):
        if b.status.value == "no_show" and start <= b.starts_at < end:
            local = b.starts_at.astimezone(sydney).date()
            monday = (local - timedelta(days=local.weekday())).isoformat()
            expected[monday] = expected.get(monday, 0) + 1
    assert expected, "the demo data should have no-shows"
    assert {r["week"]: r["value"] for r in body["rows"]} == expected
    assert body["columns"] == ["week", "value", "records"]
    assert [loc["code"] for loc in body["locations"]] == ["sydney"]
    assert body["chart"]["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    assert body["chart"]["data"]["values"] == body["rows"]


async def test_the_funnel_narrows_and_by_location_compares_the_locations(world: World) -> None:
    headers = await world.headers("owner")
    funnel = await world.client.get(
        "/api/reports", params={"metric": "funnel", **_window(world)}, headers=headers
    )
    assert funnel.status_code == 200, funnel.text
    stages = [(r["stage"], r["value"]) for r in funnel.json()["rows"]]
    assert [s for s, _ in stages] == ["lead", "contacted", "booked", "attended"]
    values = [v for _, v in stages]
    assert values == sorted(values, reverse=True) and values[0] > 0
    assert funnel.json()["chart"]["mark"]["type"] == "bar"
    rate = await world.client.get(
        "/api/reports",
        params={"metric": "no_show_rate", "by": "location", **_window(world)},
        headers=headers,
    )
    assert rate.status_code == 200, rate.text
    assert sorted(r["location"] for r in rate.json()["rows"]) == ["melbourne", "sydney"]
    assert all(0 <= r["value"] <= 1 for r in rate.json()["rows"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"metric": "revenue"}, "metric"),
        ({"by": "colour"}, "by"),
        ({"by": "week,month,day"}, "by"),
        ({"metric": "tasks_open", "by": "source"}, "by"),
        ({"source": "carrier_pigeon"}, "source"),
        ({"metric": "sms_inbound", "service_type": "MRI"}, "service_type"),
        ({"start": "2026-01-01T00:00:00"}, "start"),
        ({"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
        ({"start": "2000-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    world: World, params: dict[str, str], field: str
) -> None:
    for path in ("/api/reports", "/api/reports.csv"):
        response = await world.client.get(path, params=params, headers=await world.headers("owner"))
        assert response.status_code == 422, (path, response.text)
        assert response.json()["field"] == field


async def test_other_locations_are_404_and_star_means_those_one_may_read(world: World) -> None:
    doctor = await world.headers("doctor", "melbourne")  # a member at Melbourne only
    refused = await world.client.get("/api/reports", params={"location": "sydney"}, headers=doctor)
    assert refused.status_code == 404, refused.text
    everywhere = await world.client.get("/api/reports", params={"location": "*"}, headers=doctor)
    assert everywhere.status_code == 200, everywhere.text
    assert [loc["code"] for loc in everywhere.json()["locations"]] == ["melbourne"]
    entries = await world.audit("melbourne")
    assert [e.resource_type for e in entries[-2:]] == ["report", "report"]
    assert [e.outcome.value for e in entries[-2:]] == ["failed", "success"]


async def test_svg_png_and_csv_of_the_same_table(world: World) -> None:
    headers = await world.headers("owner")
    params = {"metric": "bookings", "by": "service_type", **_window(world)}
    table = (await world.client.get("/api/reports", params=params, headers=headers)).json()
    as_csv = await world.client.get("/api/reports.csv", params=params, headers=headers)
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["service_type"], float(r["value"])) for r in rows] == [
        (r["service_type"], r["value"]) for r in table["rows"]
    ]
    svg = await world.client.get("/api/reports.svg", params=params, headers=headers)
    assert svg.status_code == 200, svg.text
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.lstrip().startswith("<svg") and table["rows"][0]["service_type"] in svg.text
    png = await world.client.get("/api/reports.png", params=params, headers=headers)
    assert png.status_code == 200
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"


async def test_a_question_shows_what_it_was_read_as(world: World) -> None:
    headers = await world.headers("owner")
    response = await world.client.post(
        "/api/reports/query",
        json={"question": "no-shows by week for MRI in Sydney since March"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    [interpreted] = body["interpreted"]
    assert interpreted["metric"] == "no_shows"
    assert interpreted["dimensions"] == ["week"]
    assert interpreted["service_types"] == ["MRI"]
    assert interpreted["locations"] == ["sydney"]
    assert body["reports"][0]["locations"][0]["code"] == "sydney"
    assert body["provider"] == "heuristic"
    assert body["insights"]["summary"]


@pytest.mark.parametrize(
    ("question", "part"),
    [("what's the weather like", "metric"), ("revenue by month", "revenue")],
)
async def test_an_unanswerable_question_is_422_saying_what_was_not_understood(
    world: World, question: str, part: str
) -> None:
    response = await world.client.post(
        "/api/reports/query", json={"question": question}, headers=await world.headers("owner")
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "question"
    assert part in response.json()["detail"]
