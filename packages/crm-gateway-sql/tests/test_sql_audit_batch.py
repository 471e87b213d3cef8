"""``AuditRepository.append_many``: one lock, one head read, one insert; all or nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from crm_domain.audit_chain import verify_chain
from crm_domain.entities import AuditEntry, Location
from crm_domain.errors import Conflict, ValidationError

from crm_gateway_sql.audit import verify
from crm_gateway_sql.gateway import SqlGateway, create_gateway

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _entry(entry_id: str, tenant: str | None = "A", i: int = 0) -> AuditEntry:
    return AuditEntry(
        id=entry_id,
        tenant_id=tenant,
        user_id="u1",
        action="READ",
        resource_type="contact",
        resource_id=f"c{i}",
        occurred_at=NOW + timedelta(seconds=i),
    )


async def _location(gateway: SqlGateway, tenant: str = "A") -> None:
    async with gateway.unit_of_work() as uow:
        await uow.locations.add(
            Location(id=tenant, code=tenant.lower(), name=tenant, timezone="UTC", created_at=NOW)
        )
        await uow.commit()


async def test_a_large_batch_continues_the_chain(any_gateway: SqlGateway) -> None:
    await _location(any_gateway)
    async with any_gateway.unit_of_work("A") as uow:
        first = await uow.audit.append(_entry("e-0000"))
        batch = [_entry(f"e-{i:04d}", i=i) for i in range(1, 1201)]
        stored = await uow.audit.append_many(batch)
        last = await uow.audit.append(_entry("e-1201", i=1201))
        await uow.commit()
    assert [e.id for e in stored] == [e.id for e in batch]
    assert [e.sequence for e in stored] == list(range(2, 1202))
    assert stored[0].prev_hash == first.hash
    assert last.sequence == 1202 and last.prev_hash == stored[-1].hash
    async with any_gateway.unit_of_work("A") as uow:
        chain = list(await uow.audit.chain(limit=5000))
    assert chain == [first, *stored, last]
    assert verify_chain(chain, "A") is None
    assert await verify(any_gateway, "A", batch=500) is None


async def test_the_system_chain_batches_too(any_gateway: SqlGateway) -> None:
    async with any_gateway.unit_of_work() as uow:
        stored = await uow.audit.append_many([_entry(f"s-{i}", None, i) for i in range(3)])
        await uow.commit()
    assert [e.sequence for e in stored] == [1, 2, 3]
    assert await verify(any_gateway, None) is None


async def test_an_empty_batch_writes_nothing(any_gateway: SqlGateway) -> None:
    await _location(any_gateway)
    async with any_gateway.unit_of_work("A") as uow:
        assert list(await uow.audit.append_many([])) == []
        assert list(await uow.audit.chain()) == []


@pytest.mark.parametrize("where", ["stored", "batch"])
async def test_a_taken_id_refuses_the_whole_batch_and_keeps_the_unit_of_work(
    any_gateway: SqlGateway, where: str
) -> None:
    await _location(any_gateway)
    async with any_gateway.unit_of_work("A") as uow:
        kept = await uow.audit.append(_entry("taken"))
        duplicate = "taken" if where == "stored" else "twice"
        batch = [_entry("new-1", i=1), _entry(duplicate, i=2), _entry("new-3", i=3)]
        if where == "batch":
            batch.append(_entry("twice", i=4))
        with pytest.raises(Conflict, match="already exists" if where == "stored" else "twice"):
            await uow.audit.append_many(batch)
        # Nothing of the batch was written and the chain goes on from the kept entry.
        after = await uow.audit.append_many([_entry("after-1", i=5), _entry("after-2", i=6)])
        await uow.commit()
    assert [e.sequence for e in after] == [2, 3] and after[0].prev_hash == kept.hash
    async with any_gateway.unit_of_work("A") as uow:
        assert [e.id for e in await uow.audit.chain()] == ["taken", "after-1", "after-2"]
    assert await verify(any_gateway, "A") is None


async def test_a_batch_for_a_missing_location_names_tenant_id(any_gateway: SqlGateway) -> None:
    async with any_gateway.unit_of_work("nowhere") as uow:
        with pytest.raises(ValidationError) as raised:
            await uow.audit.append_many([_entry("x-1", "nowhere"), _entry("x-2", "nowhere", 1)])
    assert raised.value.field == "tenant_id"


async def test_sqlite_heads_cached_by_one_process_notice_another_s_appends(
    sqlite_gateway: SqlGateway,
) -> None:
    # Two gateways on one file stand for two processes: each has its own
    # writer connection and its own cache of chain heads.
    db = sqlite_gateway.sqlite_database
    assert db is not None
    other = create_gateway(f"sqlite+aiosqlite:///{db.path}")
    try:
        await _location(sqlite_gateway)
        serial = 0
        for gateway in (sqlite_gateway, other, other, sqlite_gateway, other, sqlite_gateway):
            async with gateway.unit_of_work("A") as uow:
                serial += 1
                await uow.audit.append(_entry(f"p-{serial}", i=serial))
                serial += 1
                await uow.audit.append_many([_entry(f"p-{serial}", i=serial)])
                await uow.commit()
        # A rolled-back append leaves the cached head where it was.
        async with sqlite_gateway.unit_of_work("A") as uow:
            await uow.audit.append(_entry("rolled-back", i=99))
            await uow.rollback()
        async with sqlite_gateway.unit_of_work("A") as uow:
            last = await uow.audit.append(_entry("last", i=100))
            await uow.commit()
    finally:
        await other.close()
    assert last.sequence == serial + 1
    async with sqlite_gateway.unit_of_work("A") as uow:
        ids = [e.id for e in await uow.audit.chain()]
    assert ids == [f"p-{n}" for n in range(1, serial + 1)] + ["last"]
    assert await verify(sqlite_gateway, "A") is None
