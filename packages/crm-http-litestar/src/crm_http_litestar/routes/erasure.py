"""``POST /api/contacts/{id}/erase``: a patient's request to be forgotten.

Through :class:`~crm_domain.services.lifecycle.LifecycleService`: the contact
and everything linked to it are deleted in one unit of work; the audit trail
keeps every entry and gains the erasure marker.  ``contacts:delete``; a
contact under legal hold (the ``legal-hold`` tag) is a 409.
"""

from __future__ import annotations

import msgspec
from crm_domain.services.lifecycle import LifecycleService
from litestar import Router, post
from litestar.params import FromPath

from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes._docs import (
    READ_ONE_ERRORS,
    WRITE_ERRORS,
    permission_doc,
    responses,
)
from crm_http_litestar.routes._query import strict_query


class ErasureOut(msgspec.Struct):
    """What was erased (counts only)."""

    contact_id: str
    touchpoints: int
    bookings: int
    tasks: int
    messages: int


@post(
    "/{id:str}/erase",
    opt={"permission": "contacts:delete"},
    summary="Erase a contact and its data (right to erasure)",
    description=permission_doc(
        "contacts:delete",
        "Deletes the contact with its touchpoints, bookings, tasks, SMS messages and "
        "deliveries; the audit trail keeps its entries and records the erasure. "
        "409 under legal hold (tag `legal-hold`).",
    ),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
    status_code=200,
)
async def erase_contact(crm: CrmDep, id: FromPath[str]) -> ErasureOut:
    """Erase one contact."""
    service = LifecycleService.of(crm.services)
    erasure = await crm.pipeline.use_case(service.erase(crm.ctx, id))
    return ErasureOut(
        contact_id=erasure.contact_id,
        touchpoints=erasure.touchpoints,
        bookings=erasure.bookings,
        tasks=erasure.tasks,
        messages=erasure.messages,
    )


def erasure_router() -> Router:
    """The erasure route under ``/api/contacts``."""
    return Router(
        path="/api/contacts",
        route_handlers=[erase_contact],
        tags=["contacts"],
        before_request=strict_query,
    )


__all__ = ["erasure_router"]
