"""Query parameters are as strict as bodies: each bad one is a 422 naming it, never a 500 or 200.

The routes and parameters are read from the served OpenAPI document, so a new
list route or filter is covered without listing it here.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from crm_domain.errors import ValidationError

from crm_http_litestar.routes._query import CursorSeal
from crm_http_litestar.testing import SECRET, World

pytestmark = pytest.mark.anyio

#: Every time filter of every route, as the app documents them (checked below).
TIME_FILTERS = {
    ("/api/contacts", "created_from"),
    ("/api/contacts", "created_to"),
    ("/api/contacts/{id}/touchpoints", "occurred_from"),
    ("/api/contacts/{id}/touchpoints", "occurred_to"),
    ("/api/bookings", "starts_from"),
    ("/api/bookings", "starts_to"),
    ("/api/bookings/slots", "from"),
    ("/api/bookings/slots", "to"),
    ("/api/tasks", "due_to"),
    ("/api/admin/audit", "occurred_from"),
    ("/api/admin/audit", "occurred_to"),
    ("/api/admin/audit/export", "occurred_from"),
    ("/api/admin/audit/export", "occurred_to"),
    *((f"/api/reports{ext}", b) for ext in ("", ".svg", ".png", ".csv") for b in ("start", "end")),
    ("/api/exports/contacts", "created_from"),
    ("/api/exports/contacts", "created_to"),
}
#: The shape of a 422 for an unknown body field, which query problems share.
PROBLEM_KEYS = {"status", "title", "detail", "field", "request_id"}


async def _openapi(world: World) -> dict[str, Any]:
    response = await world.client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _query_params(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(path, parameter)`` of every query parameter of every GET operation."""
    found = []
    for path, item in document["paths"].items():
        for param in item.get("get", {}).get("parameters", []):
            if param["in"] == "query":
                found.append((path, param))
    return found


def _options(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [*schema.get("oneOf", []), schema]


def _enum(document: dict[str, Any], schema: dict[str, Any]) -> list[str] | None:
    for option in _options(schema):
        if "$ref" in option:
            option = document["components"]["schemas"][option["$ref"].rsplit("/", 1)[-1]]
        if "enum" in option:
            return [str(v) for v in option["enum"]]
    return None


async def _sydney_contact(world: World) -> str:
    response = await world.client.get("/api/contacts?limit=1", headers=await world.headers("owner"))
    assert response.status_code == 200, response.text
    return str(response.json()["items"][0]["id"])


async def _url(world: World, path: str) -> str:
    return path.replace("{id}", await _sydney_contact(world)) if "{id}" in path else path


def _assert_problem(response: Any, field: str, *fragments: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert set(problem) == PROBLEM_KEYS, problem
    assert problem["field"] == field, problem
    assert problem["detail"].startswith(f"{field}: "), problem
    for fragment in fragments:
        assert fragment in problem["detail"], problem
    return problem


# --- times ---------------------------------------------------------------------------------


async def test_the_documented_time_filters_are_all_of_them(world: World) -> None:
    document = await _openapi(world)
    documented = {
        (path, param["name"])
        for path, param in _query_params(document)
        if any(o.get("format") == "date-time" for o in _options(param["schema"]))
    }
    assert documented == TIME_FILTERS
    for path, param in _query_params(document):
        if (path, param["name"]) in TIME_FILTERS:
            assert "UTC offset" in param["description"], (path, param)


@pytest.mark.parametrize(("path", "name"), sorted(TIME_FILTERS))
async def test_a_naive_time_filter_is_a_422_naming_it(world: World, path: str, name: str) -> None:
    headers = await world.headers("owner")
    url = await _url(world, path)
    naive = await world.client.get(url, params={name: "2026-12-01T00:00:00"}, headers=headers)
    _assert_problem(naive, name, "UTC offset")
    for aware in ("2026-12-01T00:00:00Z", "2026-12-01T00:00:00+10:30", "2026-12-01T00:00:00-03:30"):
        response = await world.client.get(url, params={name: aware}, headers=headers)
        assert response.status_code == 200, (aware, response.text)


async def test_a_time_filter_compares_instants_across_offsets(world: World) -> None:
    headers = await world.headers("owner")
    listed = await world.client.get("/api/bookings?limit=200", headers=headers)
    starts = sorted(datetime.fromisoformat(b["starts_at"]) for b in listed.json()["items"])
    middle = starts[len(starts) // 2]
    answers = set()
    for offset in (UTC, timezone(timedelta(hours=10, minutes=30)), timezone(-timedelta(hours=3))):
        bound = middle.astimezone(offset).isoformat()
        page = await world.client.get(
            "/api/bookings", params={"starts_from": bound, "limit": 200}, headers=headers
        )
        assert page.status_code == 200, page.text
        answers.add(tuple(b["id"] for b in page.json()["items"]))
    assert len(answers) == 1
    assert 0 < len(next(iter(answers))) < len(starts)


async def test_a_naive_time_refusal_is_audited_and_runs_no_use_case(world: World) -> None:
    headers = await world.headers("owner")
    before = len(await world.audit("sydney"))
    response = await world.client.get("/api/tasks?due_to=2026-12-01T00:00:00", headers=headers)
    assert response.status_code == 422
    entries = (await world.audit("sydney"))[before:]
    assert [(e.status_code, e.outcome.value, e.detail) for e in entries] == [
        (422, "failed", "ValidationError: due_to")
    ]


# --- enums, bounds, unknown and repeated parameters ----------------------------------------


async def test_every_enum_parameter_takes_only_its_values(world: World) -> None:
    document = await _openapi(world)
    headers = await world.headers("owner")
    checked = set()
    for path, param in _query_params(document):
        choices = _enum(document, param["schema"])
        if choices is None:
            continue
        url, name = await _url(world, path), param["name"]
        checked.add((path, name))
        bogus = await world.client.get(url, params={name: "bogus"}, headers=headers)
        problem = _assert_problem(bogus, name, "must be one of")
        assert all(value in problem["detail"] for value in choices)
        for value in choices:
            response = await world.client.get(url, params={name: value}, headers=headers)
            assert response.status_code == 200, (path, name, value, response.text)
    assert {
        ("/api/contacts", "status"),
        ("/api/contacts", "source"),
        ("/api/contacts/{id}/touchpoints", "kind"),
        ("/api/bookings", "status"),
        ("/api/tasks", "status"),
        ("/api/tasks", "priority"),
        ("/api/admin/users", "role"),
        ("/api/admin/audit", "outcome"),
        ("/api/admin/audit/export", "outcome"),
        ("/api/admin/audit/export", "format"),
    } <= checked


async def test_limit_out_of_range_is_a_422_and_documented(world: World) -> None:
    document = await _openapi(world)
    headers = await world.headers("owner")
    limits = [(path, p) for path, p in _query_params(document) if p["name"] == "limit"]
    assert len(limits) == 12  # contacts, touchpoints, bookings, tasks, sms, campaigns,
    # automations, suppressions, admin lists
    for path, param in limits:
        assert (param["schema"]["minimum"], param["schema"]["maximum"]) == (1, 200), path
        url = await _url(world, path)
        for bad in ("0", "201", "-1", "ten", ""):
            response = await world.client.get(url, params={"limit": bad}, headers=headers)
            _assert_problem(response, "limit")
        assert (await world.client.get(url, params={"limit": 200}, headers=headers)).is_success


@pytest.mark.parametrize(
    "path",
    [
        "/api/contacts",
        "/api/contacts/{id}",
        "/api/contacts/{id}/touchpoints",
        "/api/bookings",
        "/api/tasks",
        "/api/admin/locations",
        "/api/admin/users",
        "/api/admin/ip-rules",
        "/api/admin/audit",
        "/api/admin/audit/export",
        "/auth/me",
    ],
)
async def test_an_unknown_query_parameter_is_a_422_naming_it(world: World, path: str) -> None:
    headers = await world.headers("owner")
    url = await _url(world, path)
    assert (await world.client.get(url, headers=headers)).status_code == 200
    for name in ("bogus", "Limit", "status[]", "created_from "):
        response = await world.client.get(url, params={name: "1"}, headers=headers)
        _assert_problem(response, name, "unknown query parameter")


async def test_an_unknown_query_parameter_on_a_write_stores_nothing(world: World) -> None:
    headers = await world.headers("owner")

    async def count() -> int:
        page = await world.client.get("/api/contacts?limit=200", headers=headers)
        return len(page.json()["items"])

    before = await count()
    body = {"first_name": "Query", "email": "query.param@example.com"}
    refused = await world.client.post("/api/contacts?dry_run=1", json=body, headers=headers)
    _assert_problem(refused, "dry_run", "unknown query parameter")
    assert await count() == before
    created = await world.client.post("/api/contacts", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert await count() == before + 1


async def test_the_problem_has_the_shape_of_an_unknown_body_field(world: World) -> None:
    headers = await world.headers("owner")
    body = await world.client.post(
        "/api/contacts", json={"first_name": "A", "bogus": 1}, headers=headers
    )
    query = await world.client.get("/api/contacts?bogus=1", headers=headers)
    assert body.status_code == query.status_code == 422
    assert set(body.json()) == set(query.json()) == PROBLEM_KEYS
    assert (body.json()["field"], query.json()["field"]) == ("bogus", "bogus")
    assert body.json()["title"] == query.json()["title"]


async def test_a_repeated_parameter_is_a_422_naming_it(world: World) -> None:
    headers = await world.headers("owner")
    for query in ("status=new&status=lost", "limit=3&limit=4", "cursor=a&cursor=b"):
        response = await world.client.get(f"/api/contacts?{query}", headers=headers)
        _assert_problem(response, query.split("=", 1)[0], "more than once")


async def test_text_filters_refuse_nul_and_overlong_values(world: World) -> None:
    headers = await world.headers("owner")
    for name in ("search", "email", "tag"):
        response = await world.client.get("/api/contacts", params={name: "a\x00b"}, headers=headers)
        _assert_problem(response, name, "NUL")
        response = await world.client.get(
            "/api/contacts", params={name: "x" * 501}, headers=headers
        )
        _assert_problem(response, name)


async def test_strictness_comes_after_authentication(world: World) -> None:
    # An anonymous caller learns nothing about parameters: the 401 comes first.
    response = await world.client.get("/api/contacts?bogus=1&created_from=2026-12-01T00:00:00")
    assert response.status_code == 401


# --- cursors ---------------------------------------------------------------------------------


async def _first_page_cursor(
    world: World, url: str, who: str = "owner", loc: str = "sydney"
) -> str:
    page = await world.client.get(url, params={"limit": 1}, headers=await world.headers(who, loc))
    assert page.status_code == 200, page.text
    cursor = page.json()["next_cursor"]
    assert cursor is not None, url
    return str(cursor)


async def test_cursors_walk_their_own_list(world: World) -> None:
    headers = await world.headers("owner")
    for path in ("/api/contacts", "/api/bookings", "/api/tasks"):
        everything = await world.client.get(path, params={"limit": 200}, headers=headers)
        expected = [item["id"] for item in everything.json()["items"]]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
            page = (await world.client.get(path, params=params, headers=headers)).json()
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected, path


async def test_a_forged_cursor_is_a_422(world: World) -> None:
    headers = await world.headers("owner")
    issued = await _first_page_cursor(world, "/api/contacts")
    inner, _, tag = issued.rpartition(".")
    # The bare domain cursor (the old format), one that points past every id, and edits.
    past_everything = base64.urlsafe_b64encode(b"zzzz").decode().rstrip("=")
    flipped = tag[:-1] + ("A" if tag[-1] != "A" else "B")
    for forged in (
        inner,
        past_everything,
        f"{past_everything}.{tag}",
        f"{inner}.{flipped}",
        f"{inner}.",
        f".{tag}",
        issued + "x",
        "%%%",
        "ü.ü",
    ):
        response = await world.client.get(
            "/api/contacts", params={"cursor": forged}, headers=headers
        )
        _assert_problem(response, "cursor", "not a cursor of this list")
    ok = await world.client.get("/api/contacts", params={"cursor": issued}, headers=headers)
    assert ok.status_code == 200


async def test_a_cursor_of_another_list_or_location_is_a_422(world: World) -> None:
    owner = await world.headers("owner")
    contact = await _sydney_contact(world)
    for kind in ("note", "call_inbound"):
        added = await world.client.post(
            f"/api/contacts/{contact}/touchpoints", json={"kind": kind}, headers=owner
        )
        assert added.status_code == 201, added.text
    contacts = await _first_page_cursor(world, "/api/contacts")
    touchpoints = await _first_page_cursor(world, f"/api/contacts/{contact}/touchpoints")
    melbourne = await _first_page_cursor(world, "/api/contacts", loc="melbourne")
    other = await world.client.get("/api/contacts?limit=2", headers=owner)
    other_contact = other.json()["items"][1]["id"]
    for url, cursor, headers in (
        ("/api/bookings", contacts, owner),
        ("/api/tasks", contacts, owner),
        ("/api/admin/audit", contacts, owner),
        ("/api/contacts", touchpoints, owner),
        (f"/api/contacts/{other_contact}/touchpoints", touchpoints, owner),
        ("/api/contacts", melbourne, owner),
        ("/api/contacts", contacts, await world.headers("owner", "melbourne")),
    ):
        response = await world.client.get(url, params={"cursor": cursor}, headers=headers)
        _assert_problem(response, "cursor", "not a cursor of this list")
    # Each in its own list is fine; another user of the same list may share it.
    for url, cursor, headers in (
        ("/api/contacts", contacts, await world.headers("reception")),
        (f"/api/contacts/{contact}/touchpoints", touchpoints, owner),
        ("/api/contacts/", contacts, owner),
    ):
        response = await world.client.get(url, params={"cursor": cursor}, headers=headers)
        assert response.status_code == 200, (url, response.text)


def test_a_cursor_sealed_with_another_key_does_not_open() -> None:
    mine = CursorSeal(SECRET, tenant_id="t1", path="/api/contacts")
    theirs = CursorSeal("another-key-" + "k" * 40, tenant_id="t1", path="/api/contacts")
    sealed = theirs.seal("MDFKQQ")
    assert sealed is not None
    assert theirs.open(sealed) == "MDFKQQ"
    with pytest.raises(ValidationError, match="cursor: is not a cursor of this list"):
        mine.open(sealed)
    assert mine.open(None) is None
    assert mine.seal(None) is None


async def test_a_cursor_refusal_stores_nothing_and_is_audited(world: World) -> None:
    headers = await world.headers("owner")
    before = len(await world.audit("sydney"))
    response = await world.client.get("/api/contacts?cursor=YWJj", headers=headers)
    assert response.status_code == 422
    entries = (await world.audit("sydney"))[before:]
    assert [(e.status_code, e.detail) for e in entries] == [(422, "ValidationError: cursor")]


async def test_created_to_before_created_from_is_an_empty_page(world: World) -> None:
    # Not an error: an empty interval simply holds nothing.
    headers = await world.headers("owner")
    now = world.clock.now()
    params = {
        "created_from": now.isoformat(),
        "created_to": (now - timedelta(days=1)).isoformat(),
    }
    response = await world.client.get("/api/contacts", params=params, headers=headers)
    assert response.status_code == 200
    assert response.json()["items"] == []


# --- leniency Schemathesis found ------------------------------------------------------------


async def test_a_number_is_not_a_time_in_a_query(world: World) -> None:
    headers = await world.headers("owner")
    for value in ("0", "0.5", "1796418244", "2026-12-01"):
        response = await world.client.get(
            "/api/admin/audit/export", params={"occurred_to": value}, headers=headers
        )
        _assert_problem(response, "occurred_to", "ISO 8601")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/tasks", {"title": "Call back", "due_at": 0}, "due_at"),
        ("/api/tasks", {"title": "Call back", "due_at": 1.5}, "due_at"),
        (
            "/api/contacts",
            {"first_name": "A", "email": "lax@example.com", "warmness": "50"},
            "warmness",
        ),
        (
            "/api/contacts",
            {"first_name": "A", "email": "lax@example.com", "sms_opt_in": "true"},
            "sms_opt_in",
        ),
    ],
)
async def test_bodies_are_decoded_strictly(
    world: World, path: str, body: dict[str, Any], field: str
) -> None:
    headers = await world.headers("owner")
    before = len((await world.client.get(f"{path}?limit=200", headers=headers)).json()["items"])
    response = await world.client.post(path, json=body, headers=headers)
    problem = _assert_problem(response, field)
    assert "Expected" in problem["detail"]
    after = len((await world.client.get(f"{path}?limit=200", headers=headers)).json()["items"])
    assert after == before
