"""Verifying the audit log's hash chains through the port (``crm audit verify``)."""

from __future__ import annotations

from crm_domain.audit_chain import ChainBreak, verify_chain
from crm_domain.entities import AuditEntry
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.queries import LocationQuery

#: Entries read per round trip while verifying.
BATCH = 1000


async def verify(gateway: DatabaseGateway, tenant_id: str | None) -> ChainBreak | None:
    """Check one chain (a location's, or the system chain for ``None``); the first break.

    The chain is read in sequence order in batches and checked with
    :func:`crm_domain.audit_chain.verify_chain` as a whole, so a deleted,
    edited or reordered entry anywhere is reported at the first place it shows.
    """
    entries: list[AuditEntry] = []
    after = 0
    async with gateway.unit_of_work(tenant_id) as uow:
        while True:
            batch = list(await uow.audit.chain(after_sequence=after, limit=BATCH))
            entries.extend(batch)
            if len(batch) < BATCH:
                break
            after = batch[-1].sequence
    return verify_chain(entries, tenant_id)


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
