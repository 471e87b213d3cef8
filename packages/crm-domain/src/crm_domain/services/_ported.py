"""What the data lifecycle services share: their construction, and reading whole listings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Self, TypeVar

import attrs

from crm_domain.audit import AuditRecorder
from crm_domain.pagination import Page
from crm_domain.policies.rbac import Authorizer
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.queries import ListQuery
from crm_domain.services._base import ServiceBase

if TYPE_CHECKING:
    from crm_domain.bootstrap import Services

E = TypeVar("E")
Q = TypeVar("Q", bound=ListQuery)


class PortedService:
    """A use-case service built from the five ports every service takes."""

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)

    @classmethod
    def of(cls, services: Services) -> Self:
        """The service on the same ports as the bootstrapped ``services``."""
        return cls(
            services.gateway,
            services.authorizer,
            services.audit_recorder,
            services.clock,
            services.ids,
        )


async def every(list_page: Callable[[Q], Awaitable[Page[E]]], query: Q) -> list[E]:
    """Every item of a keyset-paged listing, following its cursors."""
    items: list[E] = []
    while True:
        page = await list_page(query)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        query = attrs.evolve(query, cursor=page.next_cursor)


__all__ = ["PortedService", "every"]
