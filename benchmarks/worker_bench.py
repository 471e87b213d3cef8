"""Events/s through the worker's dispatch (domain handlers + a rule) vs the bare outbox relay.

Run:  uv run python benchmarks/worker_bench.py [--events 2000] [--no-postgres]

One location with one enabled rule (``ContactCreated`` → ``add_tag``).  Two
batches of ``--events`` contacts are created through the services (each
commits a ``ContactCreated`` event).  The first batch is drained by the SQL
outbox relay with a handler that does nothing (the bare relay: claim, hand
over, complete); the second by the relay with the worker's dispatcher — the
domain's handlers, so the rule runs once per event in its own transaction
(receipt, tag, ``ContactUpdated`` event, audit entry) and the events it emits
are drained too.  Figures: messages/s and source events/s, and the ratio to
the bare relay in the same run.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from crm_domain.bootstrap import Services, bootstrap
from crm_domain.context import Context
from crm_domain.entities import OutboxMessage
from crm_domain.services import CreateContact, CreateLocation, RuleSpec
from crm_gateway_sql.gateway import SqlGateway, create_gateway
from crm_gateway_sql.outbox import OutboxRelay
from crm_http_litestar.worker import EventDispatcher
from sql_bench import dsn, machine, pg_url  # the same machine line and database as P1/P2


async def _setup(gateway: SqlGateway) -> tuple[Services, Context]:
    services = bootstrap(gateway)
    location = await services.access.create_location(
        Context.system("bootstrap"),
        CreateLocation(code="bench", name="Bench", timezone="Australia/Sydney"),
    )
    ctx = Context.system(location.id)
    await services.access.seed_permissions(ctx)
    assert services.automations is not None
    await services.automations.create(
        ctx,
        RuleSpec(
            name="Tag every lead",
            trigger="ContactCreated",
            actions=[{"kind": "add_tag", "params": {"tag": "bench"}}],
        ),
    )
    return services, ctx


async def _contacts(services: Services, ctx: Context, n: int) -> None:
    for i in range(n):
        await services.contacts.create(
            ctx, CreateContact(first_name="Bench", email=f"b{i}-{secrets.token_hex(3)}@e.com")
        )


async def _drain(gateway: SqlGateway, handler: object) -> tuple[int, float]:
    relay = OutboxRelay(gateway, handler)  # type: ignore[arg-type]
    handled = 0
    t = time.perf_counter()
    while claimed := await relay.run_once():
        handled += claimed
    return handled, time.perf_counter() - t


async def _bench(name: str, gateway: SqlGateway, n: int) -> str:
    services, ctx = await _setup(gateway)
    await _contacts(services, ctx, n)

    async def nothing(_message: OutboxMessage) -> None:
        return None

    bare_count, bare_s = await _drain(gateway, nothing)
    await _contacts(services, ctx, n)
    dispatcher = EventDispatcher(services.event_handlers())
    worker_count, worker_s = await _drain(gateway, dispatcher)
    bare_rate, worker_rate = bare_count / bare_s, worker_count / worker_s
    source_rate = n / worker_s
    return (
        f"| {name} | {bare_count} in {bare_s:.1f} s: {bare_rate:.0f}/s | {worker_count} in"
        f" {worker_s:.1f} s: {worker_rate:.0f} messages/s ({source_rate:.0f} source events/s)"
        f" | {worker_rate / bare_rate:.2f}× |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"# Worker benchmark — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {machine()}")
    print("| engine | bare relay | worker (handlers + one rule) | ratio |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        gateway = create_gateway(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        await gateway.migrate()
        try:
            print(await _bench("SQLite (durable)", gateway, args.events))
        finally:
            await gateway.close()
    if args.no_postgres:
        return
    database = f"crm_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn())
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        gateway = create_gateway(pg_url(database))
        await gateway.migrate()
        try:
            print(await _bench("PostgreSQL", gateway, args.events))
        finally:
            await gateway.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
