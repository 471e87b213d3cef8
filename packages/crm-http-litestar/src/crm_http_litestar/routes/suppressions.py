"""``/api/suppressions``: the location's suppression list (numbers and emails never messaged)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from crm_domain.entities import SuppressionChannel, SuppressionReason
from crm_domain.queries import DEFAULT_LIMIT, SuppressionQuery
from crm_domain.services import AddSuppression, SuppressionService
from litestar import Request, Response, Router, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from crm_http_litestar.routes._common import (
    IDEMPOTENCY_NOTE,
    before_service,
    idempotent,
    refuse_other_location,
)
from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes._docs import (
    LIST_ERRORS,
    READ_ONE_ERRORS,
    WRITE_ERRORS,
    permission_doc,
    responses,
)
from crm_http_litestar.routes._query import Cursor, Limit, Text, strict_query
from crm_http_litestar.schemas import Body, Listing, documented, listing, one_of, out


class SuppressionOut(msgspec.Struct):
    """One address on the location's suppression list."""

    id: str
    tenant_id: str
    channel: str
    #: E.164 for ``sms``, lower-cased for ``email``.
    address: str
    reason: str
    note: str | None
    created_at: datetime
    #: The staff user's id, or ``system`` (a STOP reply, an unsubscribe link).
    created_by: str


class SuppressionIn(Body):
    """An address to suppress at the location."""

    channel: Annotated[str, one_of(SuppressionChannel)]
    #: A phone number for ``sms`` (national numbers are read as Australian), an email for ``email``.
    address: Annotated[str, documented(minLength=1, maxLength=320)]
    reason: Annotated[str, one_of(SuppressionReason)] = SuppressionReason.MANUAL.value
    note: Annotated[str | None, documented(maxLength=500)] = None
    tenant_id: str | None = None


def _service(crm: CrmDep) -> SuppressionService:
    service = crm.services.suppressions
    assert service is not None  # bootstrap always wires it
    return service


_LIST_NOTE = (
    "Newest first. `address` is read like the body's (`0412 345 678` finds `+61412345678`;"
    " without `channel`, an address with `@` is an email); a bad one is a 422 naming it."
)
_ADD_NOTE = (
    "No SMS (not even a reminder; only the confirmation of an opt-out) and no campaign email"
    " goes to a suppressed address, whatever its contact's consent says; a message already"
    " queued fails unsent and a campaign delivery is skipped. STOP replies and unsubscribe"
    " links add entries themselves (`created_by: system`). The address is normalised (E.164,"
    " lower-cased email); a bad channel, address, reason or note is a 422 naming it; an"
    f" address already on the list is a 409. {IDEMPOTENCY_NOTE}"
)


@get(
    "/",
    opt={"permission": "suppressions:read"},
    summary="List the location's suppression list",
    description=permission_doc("suppressions:read", _LIST_NOTE),
    responses=responses(*LIST_ERRORS),
)
async def list_suppressions(
    crm: CrmDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    channel: FromQuery[SuppressionChannel | None] = None,
    address: Text = None,
    reason: FromQuery[SuppressionReason | None] = None,
    tenant_id: Text = None,
) -> Listing[SuppressionOut]:
    """One page of the location's suppressions."""
    pipeline = crm.pipeline
    refuse_other_location(pipeline, tenant_id)
    cursors = crm.cursors
    query = before_service(
        pipeline,
        lambda: SuppressionQuery(
            limit=limit,
            cursor=cursors.open(cursor),
            channel=channel,
            address=address,
            reason=reason,
        ),
    )
    page = await pipeline.use_case(_service(crm).list(crm.ctx, query))
    return listing(page, SuppressionOut, cursors.seal)


@post(
    "/",
    opt={"permission": "suppressions:create"},
    summary="Suppress a phone number or email address",
    description=permission_doc("suppressions:create", _ADD_NOTE),
    responses=responses(*WRITE_ERRORS),
    status_code=201,
)
async def add_suppression(
    crm: CrmDep, data: JSONBody[SuppressionIn], request: Request[Any, Any, Any]
) -> Response[SuppressionOut]:
    """Put an address on the list."""
    pipeline = crm.pipeline
    refuse_other_location(pipeline, data.tenant_id)
    command = AddSuppression(
        channel=data.channel, address=data.address, reason=data.reason, note=data.note
    )

    async def produce() -> SuppressionOut:
        return out(await pipeline.use_case(_service(crm).add(crm.ctx, command)), SuppressionOut)

    return await idempotent(request, pipeline, crm.runtime, produce)


@delete(
    "/{id:str}",
    opt={"permission": "suppressions:delete"},
    summary="Take an address off the suppression list",
    description=permission_doc(
        "suppressions:delete",
        "Does not give consent back: a contact who opted out stays opted out."
        " Another location's id is a 404.",
    ),
    responses=responses(*READ_ONE_ERRORS),
    status_code=204,
)
async def remove_suppression(crm: CrmDep, id: FromPath[str]) -> None:
    """Remove an entry."""
    await crm.pipeline.use_case(_service(crm).remove(crm.ctx, id))


def suppressions_router() -> Router:
    """Routes under ``/api/suppressions``."""
    return Router(
        path="/api/suppressions",
        route_handlers=[list_suppressions, add_suppression, remove_suppression],
        tags=["suppressions"],
        before_request=strict_query,
    )


__all__ = ["SuppressionIn", "SuppressionOut", "suppressions_router"]
