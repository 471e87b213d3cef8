"""Reading and verifying the audit trail."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.audit_chain import ChainBreak, verify_stored_chain
from crm_domain.context import Context
from crm_domain.entities import Action, AuditEntry, Location, Resource
from crm_domain.pagination import Page
from crm_domain.policies.rbac import Authorizer
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.queries import MAX_LIMIT, AuditQuery, LocationQuery
from crm_domain.services._base import ServiceBase

#: Entries read per round trip while verifying a chain.
CHAIN_PAGE = 1000


@attrs.frozen(slots=True, kw_only=True)
class ChainReport:
    """The verification of one chain: a location's (``tenant_id``) or the system's (``None``)."""

    tenant_id: str | None
    location_code: str | None
    #: Entries verified (up to the first break).
    entries: int
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        """True when every entry of the chain verified."""
        return self.broken is None


class AuditService:
    """Use cases on the audit trail (``audit:read``)."""

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)

    async def list(self, ctx: Context, query: AuditQuery | None = None) -> Page[AuditEntry]:
        """One page of the caller's location's audit entries, newest first.

        The listing is itself audited (after the page is read, before it is returned).
        """
        async with self._base.use_case(
            ctx,
            Resource.AUDIT,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="audit",
            write=False,
        ) as call:
            page = await call.uow.audit.list(query or AuditQuery())
            call.detail = f"{len(page.items)} returned"
            return page

    async def verify(self, ctx: Context) -> ChainReport:
        """Verify the caller's location's chain."""
        async with self._base.use_case(
            ctx,
            Resource.AUDIT,
            Action.READ,
            audit=AuditAction.VERIFY,
            resource_type="audit",
            write=False,
        ) as call:
            report = await _verify(call.uow, ctx.tenant_id, None)
            call.detail = _summary([report])
            return report

    async def verify_all(self, ctx: Context) -> tuple[ChainReport, ...]:
        """Verify every location's chain and the system chain (``crm audit verify``).

        Chains are verified one after another, each in its own unit of work
        bound to that chain; the system chain comes last.
        """
        async with self._base.use_case(
            ctx,
            Resource.AUDIT,
            Action.READ,
            audit=AuditAction.VERIFY,
            resource_type="audit",
            write=False,
        ) as call:
            locations: builtins.list[Location] = []
            query = LocationQuery(limit=MAX_LIMIT)
            while True:
                page = await call.uow.locations.list(query)
                locations.extend(page.items)
                if page.next_cursor is None:
                    break
                query = attrs.evolve(query, cursor=page.next_cursor)
            reports: builtins.list[ChainReport] = []
            for location in sorted(locations, key=lambda loc: loc.code):
                async with self._base.gateway.unit_of_work(location.id) as uow:
                    reports.append(await _verify(uow, location.id, location.code))
            async with self._base.gateway.unit_of_work(None) as uow:
                reports.append(await _verify(uow, None, None))
            call.detail = _summary(reports)
            return tuple(reports)


async def _verify(uow: UnitOfWork, tenant_id: str | None, code: str | None) -> ChainReport:
    checked, broken = await verify_stored_chain(uow.audit, tenant_id, batch=CHAIN_PAGE)
    return ChainReport(tenant_id=tenant_id, location_code=code, entries=checked, broken=broken)


def _summary(reports: Sequence[ChainReport]) -> str:
    broken = [r for r in reports if not r.ok]
    checked = sum(r.entries for r in reports)
    return f"{len(reports)} chains, {checked} entries, {len(broken)} broken"


__all__ = ["CHAIN_PAGE", "AuditService", "ChainReport"]
