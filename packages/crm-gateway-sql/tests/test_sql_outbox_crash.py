"""A consumer killed mid-batch loses nothing and, with an idempotent handler, duplicates nothing."""

from __future__ import annotations

import sqlite3
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from crm_domain.entities import DomainEvent, Location, OutboxMessage

from crm_gateway_sql.gateway import SqlGateway
from crm_gateway_sql.outbox import OutboxRelay

pytestmark = pytest.mark.anyio

#: The consumer process: claims everything with a 1 s lease, applies three
#: messages, completes two of them, and is SIGKILLed holding the rest.
CONSUMER = textwrap.dedent(
    """
    import os, signal, sqlite3, sys
    from datetime import UTC, datetime
    import anyio
    from crm_gateway_sql.gateway import create_gateway

    url, effects_path = sys.argv[1], sys.argv[2]

    def apply(event_id):
        db = sqlite3.connect(effects_path)
        db.execute("INSERT INTO deliveries (event_id) VALUES (?)", (event_id,))
        db.execute("INSERT OR IGNORE INTO effects (event_id) VALUES (?)", (event_id,))
        db.commit()
        db.close()

    async def main():
        gateway = create_gateway(url)
        async with gateway.unit_of_work() as uow:
            claimed = await uow.outbox.claim(datetime.now(UTC), 100, 1.0)
            await uow.commit()
        print(len(claimed), flush=True)
        for i, message in enumerate(claimed[:3]):
            apply(message.event.id)
            if i < 2:
                async with gateway.unit_of_work() as uow:
                    await uow.outbox.complete([message.event.id])
                    await uow.commit()
        os.kill(os.getpid(), signal.SIGKILL)  # dies holding the lease on the rest

    anyio.run(main)
    """
)


def _effects_db(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE deliveries (n INTEGER PRIMARY KEY, event_id TEXT NOT NULL)")
    db.execute("CREATE TABLE effects (event_id TEXT PRIMARY KEY)")
    db.commit()
    db.close()


async def test_killed_consumer_loses_and_duplicates_nothing(
    any_gateway: SqlGateway, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    async with any_gateway.unit_of_work() as uow:
        await uow.locations.add(
            Location(id="A", code="a", name="A", timezone="UTC", created_at=now)
        )
        await uow.commit()
    events = [
        DomainEvent(
            id=f"01EVENT{i:02d}",
            tenant_id="A",
            name="ContactCreated",
            aggregate_type="contact",
            aggregate_id=f"c{i}",
            occurred_at=now - timedelta(seconds=10),
        )
        for i in range(6)
    ]
    async with any_gateway.unit_of_work("A") as uow:
        for event in events:
            await uow.outbox.add(event)
        await uow.commit()

    effects = tmp_path / "effects.db"
    _effects_db(effects)
    script = tmp_path / "consumer.py"
    script.write_text(CONSUMER)
    result = await anyio.run_process(
        [sys.executable, str(script), any_gateway.url, str(effects)], check=False
    )
    assert result.returncode == -9, result.stderr.decode()
    assert result.stdout.decode().strip() == "6"

    # The dead consumer's lease still holds: nobody else may take those messages yet.
    async with any_gateway.unit_of_work() as uow:
        assert await uow.outbox.claim(datetime.now(UTC), 100, 1.0) == []
        await uow.commit()
    await anyio.sleep(1.2)

    def apply(message: OutboxMessage) -> None:
        db = sqlite3.connect(effects)
        db.execute("INSERT INTO deliveries (event_id) VALUES (?)", (message.event.id,))
        db.execute("INSERT OR IGNORE INTO effects (event_id) VALUES (?)", (message.event.id,))
        db.commit()
        db.close()

    async def handler(message: OutboxMessage) -> None:
        apply(message)

    relay = OutboxRelay(any_gateway, handler, lease_seconds=30)
    assert await relay.run_once() == 4  # the two completed ones are not redelivered
    assert await relay.run_once() == 0

    db = sqlite3.connect(effects)
    delivered = [r[0] for r in db.execute("SELECT event_id FROM deliveries ORDER BY n")]
    applied = sorted(r[0] for r in db.execute("SELECT event_id FROM effects"))
    db.close()
    assert applied == [e.id for e in events]  # nothing lost, each applied once
    # The one message applied but not completed before the kill came again,
    # and the idempotent handler absorbed it.
    assert len(delivered) == 7
    assert delivered.count(events[2].id) == 2
    async with any_gateway.unit_of_work() as uow:
        done = await uow.outbox.list_status("done")
        pending = await uow.outbox.list_status("pending")
        dead = await uow.outbox.list_status("dead")
    assert [m.event.id for m in done] == [e.id for e in events]
    assert pending == []
    assert dead == []


async def test_relay_retries_with_backoff_then_dead_letters(sqlite_gateway: SqlGateway) -> None:
    now = datetime.now(UTC)
    async with sqlite_gateway.unit_of_work() as uow:
        await uow.locations.add(
            Location(id="A", code="a", name="A", timezone="UTC", created_at=now)
        )
        await uow.commit()
    event = DomainEvent(
        id="01EVENTX",
        tenant_id="A",
        name="CampaignSendRequested",
        aggregate_type="campaign",
        aggregate_id="k1",
        occurred_at=now - timedelta(seconds=1),
    )
    async with sqlite_gateway.unit_of_work("A") as uow:
        await uow.outbox.add(event)
        await uow.commit()
    calls: list[int] = []

    async def failing(message: OutboxMessage) -> None:
        calls.append(message.attempts)
        raise RuntimeError("smtp 451")

    relay = OutboxRelay(sqlite_gateway, failing, max_attempts=3, backoff_base=0.0)
    for _ in range(5):
        await relay.run_once()
    assert calls == [1, 2, 3]
    async with sqlite_gateway.unit_of_work() as uow:
        dead = list(await uow.outbox.list_status("dead"))
    assert [m.event.id for m in dead] == [event.id]
    assert dead[0].last_error == "RuntimeError: smtp 451"
    assert relay.backoff(1) == 0.0
    assert OutboxRelay(sqlite_gateway, failing, backoff_base=2.0).backoff(4) == 16.0


async def test_a_stop_midway_leaves_the_rest_of_the_batch_for_later(
    sqlite_gateway: SqlGateway,
) -> None:
    # A worker asked to stop finishes the message in hand only (a whole batch under load
    # outlasted the 30 s a service manager waits); the rest is taken once its lease ends.
    now = datetime.now(UTC)
    async with sqlite_gateway.unit_of_work() as uow:
        await uow.locations.add(
            Location(id="A", code="a", name="A", timezone="UTC", created_at=now)
        )
        await uow.commit()
    async with sqlite_gateway.unit_of_work("A") as uow:
        for n in range(3):
            await uow.outbox.add(
                DomainEvent(
                    id=f"01EVENT{n}",
                    tenant_id="A",
                    name="ContactCreated",
                    aggregate_type="contact",
                    aggregate_id=f"c{n}",
                    occurred_at=now - timedelta(seconds=1),
                )
            )
        await uow.commit()
    stop = anyio.Event()
    handled: list[str] = []

    async def handler(message: OutboxMessage) -> None:
        handled.append(message.event.id)
        stop.set()  # the signal arrives while the first message is handled

    relay = OutboxRelay(sqlite_gateway, handler, lease_seconds=0.5)
    assert await relay.run_once(stop) == 3
    assert handled == ["01EVENT0"]
    await anyio.sleep(0.6)  # the leases of the two left run out
    assert await relay.run_once() == 2
    assert handled == ["01EVENT0", "01EVENT1", "01EVENT2"]
    async with sqlite_gateway.unit_of_work() as uow:
        assert list(await uow.outbox.list_status("pending")) == []
