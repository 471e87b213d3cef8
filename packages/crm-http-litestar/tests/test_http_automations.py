"""``/api/automations`` over HTTP, and the rules run by the worker's relay."""

from __future__ import annotations

from typing import Any

import pytest

from crm_http_litestar.testing import World
from crm_http_litestar.worker import domain_handlers, make_relay

pytestmark = pytest.mark.anyio

RULE: dict[str, Any] = {
    "name": "Tag web leads",
    "trigger": "ContactCreated",
    "conditions": [{"field": "source", "op": "eq", "value": "website"}],
    "actions": [
        {"kind": "add_tag", "params": {"tag": "web"}},
        {"kind": "create_task", "params": {"title": "Call the web lead", "due_in_hours": 4}},
    ],
}


async def _rules(world: World, who: str = "owner", loc: str = "sydney") -> list[Any]:
    response = await world.client.get("/api/automations", headers=await world.headers(who, loc))
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trigger": "Anything"}, "trigger"),
        ({"conditions": [{"field": "email", "op": "eq", "value": "x"}]}, "conditions[0].field"),
        ({"actions": [{"kind": "create_task", "params": {}}]}, "actions[0].params.title"),
        ({"actions": [{"kind": "add_tag", "params": {"tag": "bad tag"}}]}, "actions[0].params.tag"),
    ],
)
async def test_a_bad_rule_is_a_422_naming_the_field(
    world: World, change: dict[str, Any], field: str
) -> None:
    response = await world.client.post(
        "/api/automations", headers=await world.headers("owner"), json={**RULE, **change}
    )
    assert response.status_code == 422, response.text
    assert field in response.text
    assert await _rules(world) == []


async def test_crud_switch_dry_run_and_other_locations(world: World) -> None:
    headers = await world.headers("owner")
    created = await world.client.post("/api/automations", headers=headers, json=RULE)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["actions"][0] == {"kind": "add_tag", "params": {"tag": "web"}}
    assert [r["id"] for r in await _rules(world)] == [rule["id"]]
    # Melbourne's admin sees nothing of Sydney's rule.
    melbourne = await world.headers("owner", "melbourne")
    other = await world.client.get(f"/api/automations/{rule['id']}", headers=melbourne)
    assert other.status_code == 404
    switched = await world.client.patch(
        f"/api/automations/{rule['id']}", headers=headers, json={"enabled": False}
    )
    assert switched.status_code == 200 and switched.json()["enabled"] is False
    dry = await world.client.post(
        "/api/automations/dry-run",
        headers=headers,
        json={"rule": RULE, "payload": {"source": "walk_in"}},
    )
    assert dry.status_code == 200, dry.text
    assert dry.json() == {
        "matched": False,
        "failed_conditions": ["source eq 'website'"],
        "actions": [],
    }
    gone = await world.client.delete(f"/api/automations/{rule['id']}", headers=headers)
    assert gone.status_code == 204
    assert await _rules(world) == []


async def test_the_worker_runs_a_rule_once_per_event(world: World) -> None:
    headers = await world.headers("owner")
    assert (await world.client.post("/api/automations", headers=headers, json=RULE)).is_success
    contact = await world.client.post(
        "/api/contacts",
        headers=headers,
        json={"first_name": "Wen", "email": "wen@example.com", "source": "website"},
    )
    assert contact.status_code == 201, contact.text
    relay = make_relay(world.runtime, handlers=domain_handlers(world.runtime))
    while await relay.run_once():
        pass
    contact_id = contact.json()["id"]
    stored = await world.client.get(f"/api/contacts/{contact_id}", headers=headers)
    assert stored.json()["tags"] == ["web"]
    tasks = await world.client.get("/api/tasks", headers=headers, params={"contact_id": contact_id})
    assert [t["title"] for t in tasks.json()["items"]] == ["Call the web lead"]
