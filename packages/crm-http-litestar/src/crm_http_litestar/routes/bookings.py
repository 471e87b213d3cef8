"""``/api/bookings``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from crm_domain.entities import Booking, BookingStatus
from crm_domain.errors import ValidationError
from crm_domain.queries import DEFAULT_LIMIT, BookingQuery
from crm_domain.services import CancelBooking, CreateBooking, RescheduleBooking
from litestar import Request, Response, Router, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

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


class SlotOut(msgspec.Struct):
    """A free slot (UTC)."""

    starts_at: datetime
    ends_at: datetime


class SlotsOut(msgspec.Struct):
    """Free slots for one service, earliest first."""

    #: ``None``: any service (every open booking of the location counts).
    service_type: str | None
    timezone: str
    duration_minutes: int
    slots: list[SlotOut]


_TIME = (
    "ISO 8601 with a UTC offset, e.g. `2026-12-01T09:00:00+11:00` or `…Z`;"
    " a time without an offset is a 422."
)


@get(
    "/slots",
    opt={"permission": "bookings:read"},
    summary="Suggest free slots for a service",
    description=permission_doc(
        "bookings:read",
        "Slots of `duration` minutes (default 30) between `from` and `to` (at most 31 days;"
        " one bound alone: the other is 7 days away; neither: the next 7 days) inside the"
        " location's opening hours (its timezone, across daylight-saving changes), clear of"
        " every open booking of the same `service` (without one: of any service) by the"
        " location's buffer; earliest first, at most 200, on a 15-minute grid.",
    ),
    responses=responses(*LIST_ERRORS),
)
async def booking_slots(
    crm: CrmDep,
    service: Annotated[str | None, QueryParameter(max_length=100)] = None,
    start: Annotated[datetime | None, QueryParameter(name="from", description=_TIME)] = None,
    end: Annotated[datetime | None, QueryParameter(name="to", description=_TIME)] = None,
    duration: Annotated[int, QueryParameter(ge=5, le=720)] = 30,
) -> SlotsOut:
    """Free slots."""
    ctx = crm.ctx
    pipeline = crm.pipeline
    # One bound alone: the other is 7 days away from it; none: the next 7 days.
    if start is None:
        start = crm.runtime.clock.now() if end is None else end - timedelta(days=7)
    end = end or start + timedelta(days=7)
    slots = await pipeline.use_case(
        crm.services.bookings.free_slots(ctx, service, start, end, duration)
    )
    location = await crm.services.access.find_location(ctx.tenant_id)
    return SlotsOut(
        service_type=service,
        timezone=location.timezone,
        duration_minutes=duration,
        slots=[SlotOut(starts_at=a, ends_at=b) for a, b in slots],
    )


def bookings_router() -> Router:
    """Routes under ``/api/bookings``."""
    return Router(
        path="/api/bookings",
        route_handlers=[list_bookings, create_booking, booking_slots, get_booking, update_booking],
        tags=["bookings"],
        before_request=strict_query,
    )
