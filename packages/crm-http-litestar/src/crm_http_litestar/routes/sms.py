"""``/api/sms``: queue an SMS to a contact, read a conversation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from crm_domain.context import Context
from crm_domain.entities import SmsDirection, SmsKind, SmsStatus
from crm_domain.queries import DEFAULT_LIMIT, SmsQuery
from litestar import Request, Response, Router, get, post
from litestar.params import FromQuery, JSONBody

from crm_http_litestar.routes._common import (
    IDEMPOTENCY_NOTE,
    before_service,
    idempotent,
    refuse_other_location,
)
from crm_http_litestar.routes._deps import Crm, CrmDep
from crm_http_litestar.routes._docs import (
    FOREIGN_FILTER_NOTE,
    LIST_ERRORS,
    WRITE_WITH_REFERENCES_ERRORS,
    permission_doc,
    responses,
)
from crm_http_litestar.routes._query import Cursor, Limit, Text, strict_query
from crm_http_litestar.schemas import Body, Listing, documented, listing, one_of, out


class SmsOut(msgspec.Struct):
    """One SMS, sent or received (``error`` says why sending failed, if it did)."""

    id: str
    tenant_id: str
    contact_id: str | None
    direction: str
    from_number: str
    to_number: str
    body: str
    status: str
    provider: str | None
    provider_message_id: str | None
    intent: str | None
    intent_confidence: float | None
    booking_id: str | None
    created_at: datetime
    sent_at: datetime | None
    error: str | None


class SmsIn(Body):
    """An SMS to queue for a contact of the location."""

    contact_id: str
    body: Annotated[str, documented(minLength=1, maxLength=1600)]
    #: ``transactional`` (a reminder: any hour) or ``marketing`` (08:00–21:00 local time only).
    kind: Annotated[str, one_of(SmsKind)]
    tenant_id: str | None = None


_SEND_NOTE = (
    "Queues the message (`status: queued`, 202); the worker sends it through the configured"
    " provider and records `sent`/`failed`, the provider's id and any error on it."
    " A contact without a phone, without SMS consent or who opted out (STOP) is a 409 and"
    " nothing is stored; so is a `marketing` message outside 08:00-21:00 in the location's"
    " timezone. The location's number is `CRM_SMS_NUMBERS`; without it, or without"
    f" `CRM_SMS_PROVIDER`, a 503. {IDEMPOTENCY_NOTE}"
)


async def _clinic_number(crm: Crm, ctx: Context) -> str | None:
    """The location's number (``CRM_SMS_NUMBERS``); ``None`` is refused after validation."""
    location = await crm.services.access.find_location(ctx.tenant_id)
    return crm.runtime.messaging.sms_numbers.get(location.code)


@post(
    "/",
    opt={"permission": "sms:send"},
    summary="Send an SMS to a contact",
    description=permission_doc("sms:send", _SEND_NOTE),
    responses=responses(*WRITE_WITH_REFERENCES_ERRORS),
    status_code=202,
)
async def send_sms(
    crm: CrmDep, data: JSONBody[SmsIn], request: Request[Any, Any, Any]
) -> Response[SmsOut]:
    """Queue an SMS; the worker sends it."""
    ctx = crm.ctx
    pipeline = crm.pipeline
    refuse_other_location(pipeline, data.tenant_id)
    from_number = await _clinic_number(crm, ctx)
    sms = crm.services.sms

    async def produce() -> SmsOut:
        message = await pipeline.use_case(
            sms.send(ctx, data.contact_id, data.body, kind=data.kind, from_number=from_number)
        )
        return out(message, SmsOut)

    return await idempotent(request, pipeline, crm.runtime, produce, status_code=202)


@get(
    "/",
    opt={"permission": "sms:read"},
    summary="List SMS (a conversation with contact_id)",
    description=permission_doc(
        "sms:read",
        "Both directions, newest first; `contact_id` gives one contact's conversation. "
        + FOREIGN_FILTER_NOTE,
    ),
    responses=responses(*LIST_ERRORS),
)
async def list_sms(
    crm: CrmDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    contact_id: Text = None,
    direction: FromQuery[SmsDirection | None] = None,
    status: FromQuery[SmsStatus | None] = None,
    tenant_id: Text = None,
) -> Listing[SmsOut]:
    """One page of the location's SMS."""
    ctx = crm.ctx
    pipeline = crm.pipeline
    refuse_other_location(pipeline, tenant_id)
    cursors = crm.cursors
    query = before_service(
        pipeline,
        lambda: SmsQuery(
            limit=limit,
            cursor=cursors.open(cursor),
            contact_id=contact_id,
            direction=direction,
            status=status,
        ),
    )
    page = await pipeline.use_case(crm.services.sms.list(ctx, query))
    return listing(page, SmsOut, cursors.seal)


def sms_router() -> Router:
    """Routes under ``/api/sms``."""
    return Router(
        path="/api/sms",
        route_handlers=[send_sms, list_sms],
        tags=["sms"],
        before_request=strict_query,
    )


__all__ = ["SmsIn", "SmsOut", "sms_router"]
