"""CPU cost of the storage layer per operation, for A/B runs on a noisy machine.

Run:  uv run python benchmarks/store_cpu_bench.py [--label NAME] [--rounds 9]

Wall-clock figures on shared cores swing by ×2–3 from run to run; the CPU
time of this process (``time.process_time``) does not count the time spent
waiting for a core, so it shows what the gateway's own code costs.  SQLite
runs on a non-durable temporary file (no fsync), so the Python work shows:

* open + close an empty unit of work;
* a point read (unit of work + ``contacts.get``);
* an audit append + commit (one entry), and ``append_many`` of 64 and 500;
* importing 20,000 contacts with ``contacts.add_many``.

Medians of ``--rounds`` rounds.  To compare two commits, run it in a worktree
of each, alternately, and compare the medians (BENCHMARKS.md, 2026-12-06).
Uses only the public API, so it runs on older commits too.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from crm_domain.entities import AuditEntry, Contact, ContactSource, ContactStatus, Location
from crm_gateway_sql.gateway import SqlGateway, create_gateway

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def entry(serial: int) -> AuditEntry:
    return AuditEntry(
        id=f"cpu-{serial:09d}",
        tenant_id="L",
        user_id="u1",
        action="READ",
        resource_type="contact",
        resource_id="c",
        occurred_at=NOW,
    )


def contact(tenant: str, n: int) -> Contact:
    return Contact(
        id=f"{tenant}-{n:07d}",
        tenant_id=tenant,
        first_name="Ann",
        last_name="Lee",
        email=f"ann{n}@example.com",
        source=ContactSource.WEBSITE,
        status=ContactStatus.NEW,
        created_at=NOW,
        updated_at=NOW,
    )


async def add_location(gateway: SqlGateway, tenant: str) -> None:
    async with gateway.unit_of_work() as uow:
        await uow.locations.add(
            Location(id=tenant, code=tenant.lower(), name=tenant, timezone="UTC", created_at=NOW)
        )
        await uow.commit()


async def cpu_per_op(run: Callable[[int], Awaitable[None]], count: int) -> float:
    """CPU µs per call of ``run`` over ``count`` calls."""
    started = time.process_time()
    for i in range(count):
        await run(i)
    return (time.process_time() - started) / count * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    gateway = create_gateway("sqlite+aiosqlite://")
    await gateway.migrate()
    await add_location(gateway, "L")
    async with gateway.unit_of_work("L") as uow:
        await uow.contacts.add(contact("L", 1))
        await uow.commit()
    serial = 0

    async def empty(_: int) -> None:
        async with gateway.unit_of_work("L"):
            pass

    async def read(_: int) -> None:
        async with gateway.unit_of_work("L") as uow:
            await uow.contacts.get("L-0000001")

    def appending(size: int) -> Callable[[int], Awaitable[None]]:
        async def append(_: int) -> None:
            nonlocal serial
            batch = []
            for _n in range(size):
                serial += 1
                batch.append(entry(serial))
            async with gateway.unit_of_work("L") as uow:
                await uow.audit.append_many(batch)
                await uow.commit()

        return append

    figures: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for name, run, count, per in (
            ("empty unit of work, µs", empty, 2000, 1),
            ("point read, µs", read, 2000, 1),
            ("audit append + commit, µs", appending(1), 500, 1),
            ("append_many 64, µs per entry", appending(64), 20, 64),
            ("append_many 500, µs per entry", appending(500), 3, 500),
        ):
            figures.setdefault(name, []).append(await cpu_per_op(run, count) / per)
        tenant = f"I{r}"
        await add_location(gateway, tenant)
        items = [contact(tenant, n) for n in range(20_000)]

        async def import_all(_: int, items: list[Contact] = items, tenant: str = tenant) -> None:
            async with gateway.unit_of_work(tenant) as uow:
                await uow.contacts.add_many(items)
                await uow.commit()

        figures.setdefault("import 20,000 contacts, ms", []).append(
            await cpu_per_op(import_all, 1) / 1000
        )
    await gateway.close()
    for name, values in figures.items():
        print(f"{args.label}: {name:<32} median {statistics.median(values):9.2f}")


if __name__ == "__main__":
    asyncio.run(main())
