"""Verifying the audit log's hash chains through the port (``crm audit verify``)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import anyio.from_thread
import anyio.to_thread
from crm_domain.audit_chain import ChainBreak, verify_chain
from crm_domain.entities import AuditEntry
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.queries import LocationQuery

#: Entries read per round trip while verifying.
BATCH = 1000


async def verify(
    gateway: DatabaseGateway, tenant_id: str | None, *, batch: int = BATCH
) -> ChainBreak | None:
    """Check one chain (a location's, or the system chain for ``None``); the first break.

    :func:`crm_domain.audit_chain.verify_chain` walks the whole chain in
    sequence order, so a deleted, edited or reordered entry anywhere is
    reported where it first shows.  It runs in a worker thread and pulls
    entries through a generator that reads ``batch`` at a time on the event
    loop, so memory stays bounded however long the chain is, and reading
    stops at the first break.
    """
    async with gateway.unit_of_work(tenant_id) as uow:

        async def read(after: int) -> list[AuditEntry]:
            return list(await uow.audit.chain(after_sequence=after, limit=batch))

        def entries() -> Iterator[AuditEntry]:
            after = 0
            while True:
                entries_read = anyio.from_thread.run(read, after)
                yield from entries_read
                if len(entries_read) < batch:
                    return
                after = entries_read[-1].sequence

        return await anyio.to_thread.run_sync(verify_chain, entries(), tenant_id)


async def verify_all(gateway: DatabaseGateway) -> ChainBreak | None:
    """Check the system chain and every location's chain; the first break found."""
    broken = await verify(gateway, None)
    if broken is not None:
        return broken
    cursor: str | None = None
    while True:
        async with gateway.unit_of_work() as uow:
            page = await uow.locations.list(LocationQuery(limit=200, cursor=cursor))
        for location in page.items:
            broken = await verify(gateway, location.id)
            if broken is not None:
                return broken
        if page.next_cursor is None:
            return None
        cursor = page.next_cursor


__all__ = ["verify", "verify_all"]
