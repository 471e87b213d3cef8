"""``GET /api/contacts/{id}/duplicates`` and ``POST /api/contacts/{id}/merge``.

Both go through :class:`~crm_domain.services.merge.ContactMergeService`: the
candidates are read with ``contacts:read``; a merge (previewed by default,
applied with ``"apply": true``) needs ``contacts:delete``, since the
duplicate is removed once its history has moved to the survivor.
"""

from __future__ import annotations

import msgspec
from crm_domain.services.merge import ContactMergeService, MergePlan
from litestar import Router, get, post
from litestar.params import FromPath, JSONBody

from crm_http_litestar.routes._common import refuse_other_location
from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes._docs import (
    READ_ONE_ERRORS,
    WRITE_WITH_REFERENCES_ERRORS,
    permission_doc,
    responses,
)
from crm_http_litestar.routes._query import strict_query
from crm_http_litestar.schemas import Body, ContactOut, out


class DuplicateOut(msgspec.Struct):
    """A likely duplicate and why."""

    contact: ContactOut
    reasons: list[str]
    score: int


class MergeIn(Body):
    """Which contact merges into the one in the path; preview unless ``apply``."""

    duplicate_id: str
    apply: bool = False
    tenant_id: str | None = None


class MergeOut(msgspec.Struct):
    """What the merge does (``applied`` false: a preview, nothing changed)."""

    survivor: ContactOut
    merged_id: str
    touchpoints: int
    bookings: int
    tasks: int
    messages: int
    deliveries: int
    deliveries_dropped: int
    changed: list[str]
    applied: bool


def _merger(crm: CrmDep) -> ContactMergeService:
    return ContactMergeService.of(crm.services)


@get(
    "/{id:str}/duplicates",
    opt={"permission": "contacts:read"},
    summary="Likely duplicates of a contact",
    description=permission_doc(
        "contacts:read",
        "Same email, same phone, or a similar name with the same date of birth; best first.",
    ),
    responses=responses(*READ_ONE_ERRORS),
)
async def contact_duplicates(crm: CrmDep, id: FromPath[str]) -> list[DuplicateOut]:
    """Candidates to merge into this contact."""
    found = await crm.pipeline.use_case(_merger(crm).duplicates(crm.ctx, id))
    return [
        DuplicateOut(contact=out(c.contact, ContactOut), reasons=list(c.reasons), score=c.score)
        for c in found
    ]


def merge_out(plan: MergePlan) -> MergeOut:
    """The HTTP shape of a merge plan."""
    return MergeOut(
        survivor=out(plan.survivor, ContactOut),
        merged_id=plan.merged_id,
        touchpoints=plan.touchpoints,
        bookings=plan.bookings,
        tasks=plan.tasks,
        messages=plan.messages,
        deliveries=plan.deliveries,
        deliveries_dropped=plan.deliveries_dropped,
        changed=list(plan.changed),
        applied=plan.applied,
    )


@post(
    "/{id:str}/merge",
    opt={"permission": "contacts:delete"},
    summary="Merge a duplicate into this contact (preview or apply)",
    description=permission_doc(
        "contacts:delete",
        "Moves the duplicate's touchpoints, bookings, tasks, SMS messages and deliveries to "
        "this contact, fills its empty fields, keeps the latest consent, deletes the "
        "duplicate. `apply` false (the default) previews without changing anything.",
    ),
    responses=responses(*WRITE_WITH_REFERENCES_ERRORS),
    status_code=200,
)
async def merge_contact(crm: CrmDep, id: FromPath[str], data: JSONBody[MergeIn]) -> MergeOut:
    """Merge ``duplicate_id`` into this contact."""
    refuse_other_location(crm.pipeline, data.tenant_id)
    plan = await crm.pipeline.use_case(
        _merger(crm).merge(crm.ctx, id, data.duplicate_id, apply=data.apply)
    )
    return merge_out(plan)


def duplicates_router() -> Router:
    """Routes under ``/api/contacts`` for duplicates and merges."""
    return Router(
        path="/api/contacts",
        route_handlers=[contact_duplicates, merge_contact],
        tags=["contacts"],
        before_request=strict_query,
    )


__all__ = ["duplicates_router", "merge_out"]
