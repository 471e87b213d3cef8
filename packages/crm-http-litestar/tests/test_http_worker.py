"""The outbox relay behind ``crm worker`` and the in-process worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from crm_domain.entities import OutboxMessage

from crm_http_litestar.testing import World
from crm_http_litestar.worker import make_relay

pytestmark = pytest.mark.anyio


async def _create_contact(world: World) -> str:
    response = await world.client.post(
        "/api/contacts",
        headers=await world.headers("owner"),
        json={"first_name": "Eve", "email": "eve@example.com"},
    )
    assert response.status_code == 201
    return str(response.json()["id"])


async def test_events_reach_their_handlers_once(world: World) -> None:
    seen: list[OutboxMessage] = []

    async def record(message: OutboxMessage) -> None:
        seen.append(message)

    contact_id = await _create_contact(world)
    relay = make_relay(world.runtime, handlers={"ContactCreated": [record]})
    assert await relay.run_once() >= 1
    assert [m.event.aggregate_id for m in seen] == [contact_id]
    assert await relay.run_once() == 0  # completed messages are not delivered again
    assert len(seen) == 1


async def test_failing_handler_is_retried_then_dead_lettered(world: World) -> None:
    calls = 0

    async def broken(_message: OutboxMessage) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("mail server down")

    await _create_contact(world)
    relay = make_relay(world.runtime, handlers={"ContactCreated": [broken]}, max_attempts=2)
    assert await relay.run_once() >= 1
    assert calls == 1
    assert await relay.run_once() == 0  # backoff: not due yet
    assert calls == 1
    world.clock.advance(timedelta(hours=2))
    await relay.run_once()
    assert calls == 2
    async with world.gateway.unit_of_work(None) as uow:
        dead = await uow.outbox.list_status("dead")
    assert [m.event.name for m in dead] == ["ContactCreated"]
    assert "mail server down" in (dead[0].last_error or "")


async def test_an_outage_of_half_an_hour_is_ridden_out(world: World) -> None:
    # A provider down for 30 minutes: the event keeps being retried (with back-off)
    # and is handled once the provider is back, not dead-lettered after a few seconds.
    down_until = world.clock.now() + timedelta(minutes=30)
    handled: list[str] = []

    async def provider(message: OutboxMessage) -> None:
        if world.clock.now() < down_until:
            raise RuntimeError("provider down")
        handled.append(message.event.id)

    await _create_contact(world)
    relay = make_relay(world.runtime, handlers={"ContactCreated": [provider]})
    for _ in range(40):
        await relay.run_once()
        world.clock.advance(timedelta(minutes=2))
    assert len(handled) == 1
    async with world.gateway.unit_of_work(None) as uow:
        assert await uow.outbox.list_status("dead") == []
