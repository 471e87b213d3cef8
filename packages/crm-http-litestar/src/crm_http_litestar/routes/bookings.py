"""``/api/bookings``."""

from __future__ import annotations

from typing import Any

import msgspec
from crm_domain.entities import Booking, BookingStatus
from crm_domain.errors import ValidationError
from crm_domain.queries import DEFAULT_LIMIT, BookingQuery
from crm_domain.services import CancelBooking, CreateBooking, RescheduleBooking
from litestar import Request, Response, Router, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody

from crm_http_litestar.routes._common import (
    IDEMPOTENCY_NOTE,
    before_service,
    idempotent,
    refuse_other_location,
)
from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes._docs import (
    FOREIGN_FILTER_NOTE,
    LIST_ERRORS,
    READ_ONE_ERRORS,
    WRITE_ERRORS,
    WRITE_WITH_REFERENCES_ERRORS,
    permission_doc,
    responses,
)
from crm_http_litestar.routes._query import Cursor, Instant, Limit, Text, strict_query
from crm_http_litestar.schemas import (
    BOOKING_STATUS_CHANGES,
    BookingIn,
    BookingOut,
    BookingPatch,
    Listing,
    listing,
    out,
)

_STATUS_CHANGES = BOOKING_STATUS_CHANGES


@get(
    "/",
    opt={"permission": "bookings:read"},
    summary="List bookings",
    description=permission_doc(
        "bookings:read", f"`starts_from`/`starts_to` bound the start. {FOREIGN_FILTER_NOTE}"
    ),
    responses=responses(*LIST_ERRORS),
)
async def list_bookings(
    crm: CrmDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    contact_id: Text = None,
    status: FromQuery[BookingStatus | None] = None,
    service_type: Text = None,
    starts_from: Instant = None,
    starts_to: Instant = None,
    tenant_id: Text = None,
) -> Listing[BookingOut]:
    """One page of the location's bookings."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    refuse_other_location(pipeline, tenant_id)
    cursors = crm.cursors
    query = before_service(
        pipeline,
        lambda: BookingQuery(
            limit=limit,
            cursor=cursors.open(cursor),
            contact_id=contact_id,
            status=status,
            service_type=service_type,
            starts_from=starts_from,
            starts_to=starts_to,
        ),
    )
    page = await pipeline.use_case(services.bookings.list(ctx, query))
    return listing(page, BookingOut, cursors.seal)


@post(
    "/",
    opt={"permission": "bookings:create"},
    summary="Book a scan",
    description=permission_doc(
        "bookings:create",
        "Overlapping open bookings of the same service are a 409. A `contact_id` unknown"
        " here (also another location's) is a 404 naming the field; nothing is stored."
        f" {IDEMPOTENCY_NOTE}",
    ),
    responses=responses(*WRITE_WITH_REFERENCES_ERRORS),
    status_code=201,
)
async def create_booking(
    crm: CrmDep, data: JSONBody[BookingIn], request: Request[Any, Any, Any]
) -> Response[BookingOut]:
    """Create a booking for a contact of this location."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    runtime = crm.runtime
    refuse_other_location(pipeline, data.tenant_id)
    command = before_service(
        pipeline,
        lambda: CreateBooking(
            contact_id=data.contact_id,
            service_type=data.service_type,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            notes=data.notes,
            source=data.source,
            external_id=data.external_id,
        ),
    )

    async def produce() -> BookingOut:
        return out(await pipeline.use_case(services.bookings.create(ctx, command)), BookingOut)

    return await idempotent(request, pipeline, runtime, produce)


@get(
    "/{id:str}",
    opt={"permission": "bookings:read"},
    summary="Read a booking",
    description=permission_doc("bookings:read", "Another location's id is a 404."),
    responses=responses(*READ_ONE_ERRORS),
)
async def get_booking(crm: CrmDep, id: FromPath[str]) -> BookingOut:
    """One booking."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    return out(await pipeline.use_case(services.bookings.get(ctx, id)), BookingOut)


@patch(
    "/{id:str}",
    opt={"permission": "bookings:update"},
    summary="Reschedule a booking or change its status",
    description=permission_doc(
        "bookings:update",
        "Send `starts_at` and `ends_at` to reschedule, or `status` (confirmed, cancelled, "
        "completed, no_show) to move it on; one change per request. Illegal transitions are 409.",
    ),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
)
async def update_booking(
    crm: CrmDep, id: FromPath[str], data: JSONBody[BookingPatch]
) -> BookingOut:
    """Reschedule, confirm, cancel, complete or mark a no-show."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    refuse_other_location(pipeline, data.tenant_id)
    moving = not isinstance(data.starts_at, msgspec.UnsetType) or not isinstance(
        data.ends_at, msgspec.UnsetType
    )
    changing = not isinstance(data.status, msgspec.UnsetType)

    def check() -> None:
        if moving == changing:
            raise ValidationError("status", "send either a new time or a new status")
        if changing and data.status not in _STATUS_CHANGES:
            raise ValidationError("status", f"must be one of {', '.join(_STATUS_CHANGES)}")

    before_service(pipeline, check)
    bookings = services.bookings
    result: Booking
    if moving:
        if isinstance(data.starts_at, msgspec.UnsetType) or isinstance(
            data.ends_at, msgspec.UnsetType
        ):
            before_service(pipeline, _both_times)
            raise AssertionError("unreachable")
        command = RescheduleBooking(booking_id=id, starts_at=data.starts_at, ends_at=data.ends_at)
        result = await pipeline.use_case(bookings.reschedule(ctx, command))
    elif data.status == "confirmed":
        result = await pipeline.use_case(bookings.confirm(ctx, id))
    elif data.status == "cancelled":
        cancel = CancelBooking(booking_id=id, reason=data.cancellation_reason)
        result = await pipeline.use_case(bookings.cancel(ctx, cancel))
    elif data.status == "completed":
        result = await pipeline.use_case(bookings.complete(ctx, id))
    else:
        result = await pipeline.use_case(bookings.mark_no_show(ctx, id))
    return out(result, BookingOut)


def _both_times() -> None:
    raise ValidationError("ends_at", "rescheduling needs both starts_at and ends_at")


def bookings_router() -> Router:
    """Routes under ``/api/bookings``."""
    return Router(
        path="/api/bookings",
        route_handlers=[list_bookings, create_booking, get_booking, update_booking],
        tags=["bookings"],
        before_request=strict_query,
    )
