"""Verifying the audit log's hash chains through the port (``crm audit verify``)."""

from __future__ import annotations

from crm_domain.audit_chain import ChainBreak, verify_stored_chain
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.queries import LocationQuery

#: Entries read per round trip while verifying.
BATCH = 1000


async def verify(
    gateway: DatabaseGateway, tenant_id: str | None, *, batch: int = BATCH
) -> ChainBreak | None:
    """Check one chain (a location's, or the system chain for ``None``); the first break.

    :func:`crm_domain.audit_chain.verify_stored_chain` walks the whole chain in
    sequence order, ``batch`` entries at a time (bounded memory however long
    the chain is), so a deleted, edited, reordered or undecodable entry
    anywhere is reported where it first shows, and reading stops there.
    """
    async with gateway.unit_of_work(tenant_id) as uow:
        _, broken = await verify_stored_chain(uow.audit, tenant_id, batch=batch)
        return broken


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
