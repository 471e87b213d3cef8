"""``/api/contacts`` and ``/api/contacts/{id}/touchpoints``."""

from __future__ import annotations

from typing import Any

import msgspec
from crm_domain.entities import ContactSource, ContactStatus, TouchpointKind
from crm_domain.queries import DEFAULT_LIMIT, ContactQuery, TouchpointQuery
from crm_domain.services import UNSET, AddTouchpoint, CreateContact, UpdateContact
from litestar import Request, Response, Router, delete, get, patch, post
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
from crm_http_litestar.routes._query import Cursor, Instant, Limit, Text, Warmness, strict_query
from crm_http_litestar.schemas import (
    ContactIn,
    ContactOut,
    ContactPatch,
    Listing,
    TouchpointIn,
    TouchpointOut,
    listing,
    out,
    unset_to,
)


@get(
    "/",
    opt={"permission": "contacts:read"},
    summary="List contacts",
    description=permission_doc("contacts:read", "Newest first; filters combine with AND."),
    responses=responses(*LIST_ERRORS),
)
async def list_contacts(
    crm: CrmDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: FromQuery[ContactStatus | None] = None,
    source: FromQuery[ContactSource | None] = None,
    tag: Text = None,
    warmness_min: Warmness = None,
    warmness_max: Warmness = None,
    created_from: Instant = None,
    created_to: Instant = None,
    email: Text = None,
    phone: Text = None,
    email_opt_in: FromQuery[bool | None] = None,
    sms_opt_in: FromQuery[bool | None] = None,
    search: Text = None,
    tenant_id: Text = None,
) -> Listing[ContactOut]:
    """One page of the location's contacts."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    refuse_other_location(pipeline, tenant_id)
    cursors = crm.cursors
    query = before_service(
        pipeline,
        lambda: ContactQuery(
            limit=limit,
            cursor=cursors.open(cursor),
            status=status,
            source=source,
            tag=tag,
            warmness_min=warmness_min,
            warmness_max=warmness_max,
            created_from=created_from,
            created_to=created_to,
            email=email,
            phone=phone,
            email_opt_in=email_opt_in,
            sms_opt_in=sms_opt_in,
            search=search,
        ),
    )
    page = await pipeline.use_case(services.contacts.list(ctx, query))
    return listing(page, ContactOut, cursors.seal)


@post(
    "/",
    opt={"permission": "contacts:create"},
    summary="Create a contact",
    description=permission_doc("contacts:create", IDEMPOTENCY_NOTE),
    responses=responses(*WRITE_ERRORS),
    status_code=201,
)
async def create_contact(
    crm: CrmDep, data: JSONBody[ContactIn], request: Request[Any, Any, Any]
) -> Response[ContactOut]:
    """Create a lead or patient."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    runtime = crm.runtime
    refuse_other_location(pipeline, data.tenant_id)
    command = before_service(
        pipeline,
        lambda: CreateContact(
            first_name=data.first_name,
            last_name=data.last_name,
            email=data.email,
            phone=data.phone,
            source=data.source,
            status=data.status,
            warmness=data.warmness,
            tags=tuple(data.tags),
            email_opt_in=data.email_opt_in,
            sms_opt_in=data.sms_opt_in,
            service_interest=data.service_interest,
            date_of_birth=data.date_of_birth,
            notes=data.notes,
            allow_duplicate_email=data.allow_duplicate_email,
        ),
    )

    async def produce() -> ContactOut:
        return out(await pipeline.use_case(services.contacts.create(ctx, command)), ContactOut)

    return await idempotent(request, pipeline, runtime, produce)


@get(
    "/{id:str}",
    opt={"permission": "contacts:read"},
    summary="Read a contact",
    description=permission_doc("contacts:read", "Another location's id is a 404."),
    responses=responses(*READ_ONE_ERRORS),
)
async def get_contact(crm: CrmDep, id: FromPath[str]) -> ContactOut:
    """One contact."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    return out(await pipeline.use_case(services.contacts.get(ctx, id)), ContactOut)


@patch(
    "/{id:str}",
    opt={"permission": "contacts:update"},
    summary="Change a contact",
    description=permission_doc("contacts:update", "Only the fields sent change."),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
)
async def update_contact(
    crm: CrmDep, id: FromPath[str], data: JSONBody[ContactPatch]
) -> ContactOut:
    """Change some fields of a contact."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    refuse_other_location(pipeline, data.tenant_id)
    command = before_service(
        pipeline,
        lambda: UpdateContact(
            contact_id=id,
            first_name=unset_to(data.first_name, UNSET),
            last_name=unset_to(data.last_name, UNSET),
            email=unset_to(data.email, UNSET),
            phone=unset_to(data.phone, UNSET),
            source=unset_to(data.source, UNSET),
            status=unset_to(data.status, UNSET),
            warmness=unset_to(data.warmness, UNSET),
            tags=UNSET if isinstance(data.tags, msgspec.UnsetType) else tuple(data.tags),
            email_opt_in=unset_to(data.email_opt_in, UNSET),
            sms_opt_in=unset_to(data.sms_opt_in, UNSET),
            service_interest=unset_to(data.service_interest, UNSET),
            date_of_birth=unset_to(data.date_of_birth, UNSET),
            notes=unset_to(data.notes, UNSET),
        ),
    )
    return out(await pipeline.use_case(services.contacts.update(ctx, command)), ContactOut)


@delete(
    "/{id:str}",
    opt={"permission": "contacts:delete"},
    summary="Delete a contact",
    description=permission_doc("contacts:delete"),
    responses=responses(*READ_ONE_ERRORS, 409),
    status_code=204,
)
async def delete_contact(crm: CrmDep, id: FromPath[str]) -> None:
    """Delete a contact."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    await pipeline.use_case(services.contacts.delete(ctx, id))


@get(
    "/{id:str}/touchpoints",
    opt={"permission": "contacts:read"},
    summary="List a contact's touchpoints",
    description=permission_doc("contacts:read"),
    responses=responses(*READ_ONE_ERRORS),
)
async def list_touchpoints(
    crm: CrmDep,
    id: FromPath[str],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    kind: FromQuery[TouchpointKind | None] = None,
    occurred_from: Instant = None,
    occurred_to: Instant = None,
) -> Listing[TouchpointOut]:
    """One page of the contact's interactions, newest first."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    cursors = crm.cursors
    query = before_service(
        pipeline,
        lambda: TouchpointQuery(
            limit=limit,
            cursor=cursors.open(cursor),
            kind=kind,
            occurred_from=occurred_from,
            occurred_to=occurred_to,
        ),
    )
    page = await pipeline.use_case(services.contacts.list_touchpoints(ctx, id, query))
    return listing(page, TouchpointOut, cursors.seal)


@post(
    "/{id:str}/touchpoints",
    opt={"permission": "contacts:update"},
    summary="Record a touchpoint",
    description=permission_doc(
        "contacts:update",
        "An unknown contact, or a `campaign_id` unknown here (also another location's), is a"
        f" 404 (the latter naming the field); nothing is stored. {IDEMPOTENCY_NOTE}",
    ),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
    status_code=201,
)
async def add_touchpoint(
    crm: CrmDep, id: FromPath[str], data: JSONBody[TouchpointIn], request: Request[Any, Any, Any]
) -> Response[TouchpointOut]:
    """Record an interaction with the contact."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    runtime = crm.runtime
    command = before_service(
        pipeline,
        lambda: AddTouchpoint(
            contact_id=id,
            kind=data.kind,
            channel=data.channel,
            occurred_at=data.occurred_at,
            campaign_id=data.campaign_id,
            metadata=dict(data.metadata),
        ),
    )

    async def produce() -> TouchpointOut:
        touchpoint = await pipeline.use_case(services.contacts.add_touchpoint(ctx, command))
        return out(touchpoint, TouchpointOut)

    return await idempotent(request, pipeline, runtime, produce)


def contacts_router() -> Router:
    """Routes under ``/api/contacts``."""
    return Router(
        path="/api/contacts",
        route_handlers=[
            list_contacts,
            create_contact,
            get_contact,
            update_contact,
            delete_contact,
            list_touchpoints,
            add_touchpoint,
        ],
        tags=["contacts"],
        before_request=strict_query,
    )
