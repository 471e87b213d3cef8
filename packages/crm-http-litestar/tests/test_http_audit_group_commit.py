"""The read-audit group commit: many entries per transaction, none lost, bounded queue."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from crm_domain.audit_chain import verify_chain
from crm_domain.clock import UlidFactory
from crm_domain.entities import AuditEntry, Location
from crm_domain.errors import Unavailable
from crm_domain.plugins import load_gateway
from crm_domain.ports.gateway import DatabaseGateway, SupportsMigrations

from crm_http_litestar.audit import GroupCommitAuditRecorder

pytestmark = pytest.mark.anyio


async def _gateway(tmp_path: Path) -> tuple[DatabaseGateway, list[str]]:
    gateway = load_gateway(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
    if isinstance(gateway, SupportsMigrations):
        await gateway.migrate()
    ids = UlidFactory()
    tenants = []
    async with gateway.unit_of_work(None) as uow:
        for code in ("a", "b"):
            location = Location(
                id=ids.new_id(), code=code, name=code, timezone="UTC", created_at=datetime.now(UTC)
            )
            await uow.locations.add(location)
            tenants.append(location.id)
        await uow.commit()
    return gateway, tenants


def _entry(ids: UlidFactory, tenant: str | None) -> AuditEntry:
    return AuditEntry(
        id=ids.new_id(),
        tenant_id=tenant,
        action="READ",
        resource_type="contact",
        resource_id="c1",
        occurred_at=datetime.now(UTC),
    )


async def test_concurrent_entries_share_transactions_and_all_land(tmp_path: Path) -> None:
    gateway, tenants = await _gateway(tmp_path)
    recorder = GroupCommitAuditRecorder(gateway, max_batch=200, max_queue=5000)
    ids = UlidFactory()
    entries = [_entry(ids, tenants[i % 2] if i % 5 else None) for i in range(1000)]
    await asyncio.gather(*(recorder.record(e) for e in entries))
    assert recorder.entries_written == 1000
    # Far fewer commits than entries: that is the point.
    assert recorder.flushes < 100
    for tenant in (*tenants, None):
        async with gateway.unit_of_work(tenant) as uow:
            chain = list(await uow.audit.chain(0, 10_000))
        assert verify_chain(chain, tenant) is None
        assert {e.id for e in chain} == {e.id for e in entries if e.tenant_id == tenant}
    await recorder.aclose()
    await gateway.close()


async def test_full_queue_refuses_instead_of_dropping(tmp_path: Path) -> None:
    gateway, tenants = await _gateway(tmp_path)
    recorder = GroupCommitAuditRecorder(gateway, max_batch=10, max_queue=50)
    ids = UlidFactory()
    results = await asyncio.gather(
        *(recorder.record(_entry(ids, tenants[0])) for _ in range(200)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, Unavailable)]
    accepted = [r for r in results if r is None]
    assert refused, "a bounded queue must refuse when full"
    assert len(accepted) + len(refused) == 200
    async with gateway.unit_of_work(tenants[0]) as uow:
        stored = await uow.audit.chain(0, 10_000)
    # Every accepted entry is durable; every refused one was reported to its caller.
    assert len(stored) == len(accepted) == recorder.entries_written
    await recorder.aclose()
    with pytest.raises(Unavailable):
        await recorder.record(_entry(ids, tenants[0]))
    await gateway.close()


async def test_a_failed_flush_fails_its_requests(tmp_path: Path) -> None:
    gateway, _tenants = await _gateway(tmp_path)
    recorder = GroupCommitAuditRecorder(gateway)
    ids = UlidFactory()
    await gateway.close()
    with pytest.raises(Unavailable):
        await recorder.record(_entry(ids, None))


async def test_a_cancelled_request_still_has_its_entry_written(tmp_path: Path) -> None:
    """A client that disconnects while its entry waits for a flush: the entry lands anyway."""
    gateway, tenants = await _gateway(tmp_path)
    recorder = GroupCommitAuditRecorder(gateway, max_batch=50, max_queue=500)
    ids = UlidFactory()
    entries = [_entry(ids, tenants[0]) for _ in range(20)]
    tasks = [asyncio.create_task(recorder.record(e)) for e in entries]
    await asyncio.sleep(0)  # every task has queued its entry and waits for the flush
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [isinstance(r, asyncio.CancelledError) for r in results] == [
        i % 2 == 0 for i in range(20)
    ]
    await recorder.aclose()
    async with gateway.unit_of_work(tenants[0]) as uow:
        chain = list(await uow.audit.chain(0, 1000))
    assert verify_chain(chain, tenants[0]) is None
    assert sorted(e.id for e in chain) == sorted(e.id for e in entries)
    await gateway.close()
