"""The AI wired through the HTTP runtime: demo warmness, rescoring in the worker, tasks.

The runtime loads the configured provider (``heuristic``, from ``crm-ai``);
the store is SQLite through the SQL gateway, as in the other e2e tests.
"""

from __future__ import annotations

import pytest
from crm_ai import HeuristicProvider
from crm_domain.context import Context
from crm_domain.entities import SmsIntent, TaskPriority
from crm_domain.queries import SmsQuery, TaskQuery

from crm_http_litestar.testing import World
from crm_http_litestar.worker import InProcessWorker

pytestmark = pytest.mark.anyio


async def _contact(world: World) -> dict[str, object]:
    response = await world.client.post(
        "/api/contacts",
        headers=await world.headers("owner"),
        json={"first_name": "Eve", "email": "eve@example.com", "source": "website"},
    )
    assert response.status_code == 201
    body: dict[str, object] = response.json()
    return body


async def test_runtime_uses_the_configured_heuristic_provider(world: World) -> None:
    assert isinstance(world.runtime.ai, HeuristicProvider)
    assert world.runtime.services.sms is not None


async def test_demo_contacts_have_an_explained_warmness(world: World) -> None:
    response = await world.client.get(
        "/api/contacts?limit=100", headers=await world.headers("owner")
    )
    assert response.status_code == 200
    items = response.json()["items"]
    assert items
    assert all(item["warmness_reasons"] for item in items)
    assert len({item["warmness"] for item in items}) > 1


async def test_worker_rescores_warmness_on_a_touchpoint_once(world: World) -> None:
    contact = await _contact(world)
    relay = InProcessWorker(world.runtime).relay
    await relay.run_once()  # ContactCreated: no warmness handler
    headers = await world.headers("owner")
    for kind in ("form_submit", "call_inbound", "email_clicked"):
        response = await world.client.post(
            f"/api/contacts/{contact['id']}/touchpoints",
            headers=headers,
            json={"kind": kind, "channel": "web"},
        )
        assert response.status_code == 201
    assert await relay.run_once() >= 3

    rescored = (await world.client.get(f"/api/contacts/{contact['id']}", headers=headers)).json()
    assert rescored["warmness"] != contact["warmness"]
    assert rescored["warmness_reasons"] != contact["warmness_reasons"]
    async with world.gateway.unit_of_work(None) as uow:
        done = await uow.outbox.list_status("done", limit=10_000)
        pending = await uow.outbox.list_status("pending", limit=10_000)
    touch_events = [m.event for m in done if m.event.name == "TouchpointAdded"]
    assert len(touch_events) == 3
    # Emitted by the handlers, waiting for the next relay pass.
    assert [m for m in pending if m.event.name == "ContactWarmnessChanged"]

    # At-least-once delivery: the same event handled again changes nothing.
    handlers = world.runtime.services.event_handlers()
    for message in done:
        for handler in handlers.get(message.event.name, ()):
            await handler(message)
    again = (await world.client.get(f"/api/contacts/{contact['id']}", headers=headers)).json()
    assert again == rescored


async def test_inbound_stop_and_task_priority_through_the_runtime(world: World) -> None:
    services = world.runtime.services
    sydney = world.locations["sydney"]
    created = await world.client.post(
        "/api/contacts",
        headers=await world.headers("owner"),
        json={"first_name": "Sam", "phone": "+61411222333", "sms_opt_in": True},
    )
    assert created.status_code == 201
    message = await services.sms.receive_inbound(
        Context.system(sydney), "+61411222333", "+61292000000", "STOP", "clicksend", "abc-1"
    )
    assert message.intent is SmsIntent.OPT_OUT
    contact = await services.contacts.get(Context.system(sydney), created.json()["id"])
    assert contact.sms_opt_in is False

    # Replayed webhook delivery: the stored message, nothing new.
    again = await services.sms.receive_inbound(
        Context.system(sydney), "+61411222333", "+61292000000", "STOP", "clicksend", "abc-1"
    )
    assert again.id == message.id
    async with world.gateway.unit_of_work(sydney) as uow:
        assert await uow.sms.count(SmsQuery(provider_message_id="abc-1")) == 1

    # A task created over HTTP without a priority gets the provider's suggestion.
    response = await world.client.post(
        "/api/tasks",
        headers=await world.headers("owner"),
        json={"title": "Urgent: patient called about results"},
    )
    assert response.status_code == 201
    assert response.json()["priority"] == "urgent"
    given = await world.client.post(
        "/api/tasks",
        headers=await world.headers("owner"),
        json={"title": "Urgent: patient called again", "priority": "low"},
    )
    assert given.json()["priority"] == "low"
    async with world.gateway.unit_of_work(sydney) as uow:
        stored = {t.id: t for t in (await uow.tasks.list(TaskQuery(limit=200))).items}
    assert stored[response.json()["id"]].priority is TaskPriority.URGENT
