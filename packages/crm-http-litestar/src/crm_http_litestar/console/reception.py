"""Reception's pages: Today (bookings, replies, tasks, hot leads) and a contact's page.

Every read and write goes through the domain services with the caller's
context, exactly like the API: each service checks its own permission, scopes
to the location and writes its own audit entry (a contact page view is an
audited read of that contact).  A section the user's role may not read is not
asked for, so it is simply absent rather than a refusal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs
from crm_domain.entities import (
    Booking,
    BookingStatus,
    Contact,
    SmsDirection,
    SmsIntent,
    SmsKind,
    SmsMessage,
    Task,
    TaskPriority,
    TaskStatus,
)
from crm_domain.errors import Conflict, Unavailable, ValidationError
from crm_domain.queries import BookingQuery, ContactQuery, SmsQuery, TaskQuery
from crm_domain.services import CancelBooking, CreateBooking
from litestar import Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from crm_http_litestar.console._web import page, permissions
from crm_http_litestar.pipeline import CONSOLE_PATH
from crm_http_litestar.routes._deps import Crm, CrmDep

#: Replies older than this no longer show on Today (the contact page keeps them).
REPLY_WINDOW = timedelta(days=14)
_PRIORITY_RANK = {
    TaskPriority.URGENT: 0,
    TaskPriority.HIGH: 1,
    TaskPriority.NORMAL: 2,
    TaskPriority.LOW: 3,
}
#: The notices a redirect may ask a page to show (a fixed list: nothing from the URL is echoed).
NOTICES = {
    "confirmed": "Booking confirmed.",
    "cancelled": "Booking cancelled.",
    "no-show": "Booking marked as a no-show.",
    "task-done": "Task resolved.",
    "sms-queued": "SMS queued: the worker sends it.",
    "booked": "Booking created.",
}
_MAX_TEXT = 1600


@attrs.frozen(slots=True, kw_only=True)
class Reply:
    """An inbound SMS that reception still has to act on."""

    message: SmsMessage
    contact: Contact | None
    task: Task | None


@attrs.frozen(slots=True, kw_only=True)
class TimelineItem:
    """One line of a contact's timeline."""

    at: datetime
    kind: str
    text: str
    status: str = ""


def _local_day(now: datetime, timezone: str) -> tuple[datetime, datetime]:
    """Start and end of the location's local calendar day around ``now`` (DST-safe)."""
    tz = ZoneInfo(timezone)
    day = now.astimezone(tz).date()
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return start, end


async def _contacts(crm: Crm, ids: set[str]) -> dict[str, Contact]:
    """The named contacts, each read through the service (one audited read each)."""
    found: dict[str, Contact] = {}
    for contact_id in sorted(ids):
        found[contact_id] = await crm.pipeline.use_case(
            crm.services.contacts.get(crm.ctx, contact_id)
        )
    return found


async def _open_tasks(crm: Crm, **filters: Any) -> list[Task]:
    tasks: list[Task] = []
    for status in (TaskStatus.OPEN, TaskStatus.IN_PROGRESS):
        query = TaskQuery(status=status.value, limit=200, **filters)
        tasks += (await crm.pipeline.use_case(crm.services.tasks.list(crm.ctx, query))).items
    far = datetime.max.replace(tzinfo=ZoneInfo("UTC"))
    return sorted(tasks, key=lambda t: (_PRIORITY_RANK[t.priority], t.due_at or far, t.id))


#: A reply's task is opened in the same unit of work, a moment after the message is stored.
_TASK_LAG = timedelta(seconds=60)


def _task_for(message: SmsMessage, tasks: list[Task]) -> Task | None:
    """The task the SMS service opened for ``message``: same contact, created just after it."""
    for task in tasks:
        if (
            task.contact_id is not None
            and task.contact_id == message.contact_id
            and timedelta(0) <= task.created_at - message.created_at <= _TASK_LAG
        ):
            return task
    return None


async def _replies(crm: Crm, open_tasks: list[Task], now: datetime) -> list[Reply]:
    """Questions and reschedule requests of the last two weeks not yet answered or resolved.

    Answered: an SMS went to the contact after the reply.  Resolved: the task the
    SMS service opened for it (same contact, created with the message) is closed.
    """
    sms = crm.services.sms
    use = crm.pipeline.use_case
    inbound: list[SmsMessage] = []
    for intent in (SmsIntent.QUESTION, SmsIntent.RESCHEDULE):
        query = SmsQuery(direction=SmsDirection.INBOUND.value, intent=intent.value, limit=50)
        inbound += (await use(sms.list(crm.ctx, query))).items
    inbound = [m for m in inbound if now - m.created_at <= REPLY_WINDOW]
    if not inbound:
        return []
    outbound_query = SmsQuery(direction=SmsDirection.OUTBOUND.value, limit=200)
    outbound = (await use(sms.list(crm.ctx, outbound_query))).items
    last_sent: dict[str, datetime] = {}
    for message in outbound:
        if message.contact_id is not None:
            previous = last_sent.get(message.contact_id)
            if previous is None or message.created_at > previous:
                last_sent[message.contact_id] = message.created_at
    closed: list[Task] = []
    for status in (TaskStatus.DONE, TaskStatus.CANCELLED):
        done = TaskQuery(status=status.value, limit=200)
        closed += (await use(crm.services.tasks.list(crm.ctx, done))).items
    waiting: list[tuple[SmsMessage, Task | None]] = []
    for message in inbound:
        if message.contact_id is not None:
            answered = last_sent.get(message.contact_id)
            if answered is not None and answered > message.created_at:
                continue
        task = _task_for(message, open_tasks)
        if task is None and _task_for(message, closed) is not None:
            continue  # its task was resolved
        waiting.append((message, task))
    waiting.sort(key=lambda pair: pair[0].created_at, reverse=True)
    waiting = waiting[:20]
    contacts = await _contacts(crm, {m.contact_id for m, _ in waiting if m.contact_id})
    return [
        Reply(
            message=m,
            contact=contacts.get(m.contact_id) if m.contact_id else None,
            task=task,
        )
        for m, task in waiting
    ]


def _notice(done: str | None) -> str | None:
    return None if done is None else NOTICES.get(done)


@get(
    "/today",
    opt={"permission": "bookings:read", "audit_resource": "console"},
    include_in_schema=False,
)
async def today(crm: CrmDep, done: FromQuery[str | None] = None) -> Template:
    """Reception's day: bookings, replies waiting, open tasks, hot leads."""
    can = await permissions(crm)
    location = await crm.services.access.find_location(crm.ctx.tenant_id)
    now = crm.services.clock.now()
    start, end = _local_day(now, location.timezone)
    query = BookingQuery(starts_from=start, starts_to=end, limit=200)
    bookings = sorted(
        (await crm.pipeline.use_case(crm.services.bookings.list(crm.ctx, query))).items,
        key=lambda b: (b.starts_at, b.id),
    )
    tasks = await _open_tasks(crm) if can["tasks:read"] else []
    replies = await _replies(crm, tasks, now) if can["sms:read"] else []
    hot: list[Contact] = []
    if can["contacts:read"]:
        leads = ContactQuery(warmness_min=70, limit=10)
        hot = list((await crm.pipeline.use_case(crm.services.contacts.list(crm.ctx, leads))).items)
    ids = {b.contact_id for b in bookings} | {t.contact_id for t in tasks[:30] if t.contact_id}
    names = await _contacts(crm, ids) if can["contacts:read"] else {}
    return await page(
        crm,
        "today.html",
        title="Today",
        day=start,
        bookings=bookings,
        tasks=tasks[:30],
        more_tasks=max(0, len(tasks) - 30),
        replies=replies,
        hot=hot,
        names=names,
        notice=_notice(done),
        open_statuses={BookingStatus.PENDING, BookingStatus.CONFIRMED},
        now=now,
    )


def _back(done: str) -> Redirect:
    """303 back to Today (where these buttons are), with a notice from the fixed list."""
    return Redirect(f"{CONSOLE_PATH}/today?done={done}", status_code=303)


def _booking_action(name: str, done: str, act: Callable[[Crm, str], Awaitable[Any]]) -> Any:
    @post(
        f"/bookings/{{id:str}}/{name}",
        opt={"permission": "bookings:update"},
        include_in_schema=False,
        name=f"console-booking-{name}",
    )
    async def handler(crm: CrmDep, id: FromPath[str]) -> Redirect:
        await act(crm, id)
        return _back(done)

    handler.fn.__doc__ = f"Booking action from a console page: {name}."
    return handler


async def _confirm(crm: Crm, booking_id: str) -> Booking:
    return await crm.pipeline.use_case(crm.services.bookings.confirm(crm.ctx, booking_id))


async def _cancel(crm: Crm, booking_id: str) -> Booking:
    command = CancelBooking(booking_id=booking_id, reason="cancelled at reception")
    return await crm.pipeline.use_case(crm.services.bookings.cancel(crm.ctx, command))


async def _no_show(crm: Crm, booking_id: str) -> Booking:
    return await crm.pipeline.use_case(crm.services.bookings.mark_no_show(crm.ctx, booking_id))


@post(
    "/tasks/{id:str}/complete",
    opt={"permission": "tasks:update"},
    include_in_schema=False,
)
async def complete_task(crm: CrmDep, id: FromPath[str]) -> Redirect:
    """Resolve a task (a reply answered by phone, a call made)."""
    await crm.pipeline.use_case(crm.services.tasks.complete(crm.ctx, id))
    return _back("task-done")


# ---------------------------------------------------------------------------- contact


async def _timeline(crm: Crm, contact: Contact) -> list[TimelineItem]:
    can = await permissions(crm)
    ctx = crm.ctx
    use = crm.pipeline.use_case
    items: list[TimelineItem] = []
    touchpoints = await use(crm.services.contacts.list_touchpoints(ctx, contact.id))
    for touch in touchpoints.items:
        items.append(
            TimelineItem(
                at=touch.occurred_at,
                kind="touchpoint",
                text=f"{touch.kind.value.replace('_', ' ')} ({touch.channel.value})",
            )
        )
    if can["sms:read"]:
        messages = await use(crm.services.sms.list(ctx, SmsQuery(contact_id=contact.id, limit=100)))
        for message in messages.items:
            way = "SMS in" if message.direction is SmsDirection.INBOUND else "SMS out"
            intent = f" — understood as {message.intent.value}" if message.intent else ""
            items.append(
                TimelineItem(
                    at=message.created_at,
                    kind="sms",
                    text=f"{way}: {message.body}{intent}",
                    status=message.status.value,
                )
            )
    bookings = await use(
        crm.services.bookings.list(ctx, BookingQuery(contact_id=contact.id, limit=100))
    )
    for booking in bookings.items:
        items.append(
            TimelineItem(
                at=booking.starts_at,
                kind="booking",
                text=f"Booking: {booking.service_type}",
                status=booking.status.value,
            )
        )
    if can["tasks:read"]:
        tasks = await use(crm.services.tasks.list(ctx, TaskQuery(contact_id=contact.id, limit=100)))
        for task in tasks.items:
            items.append(
                TimelineItem(
                    at=task.completed_at or task.created_at,
                    kind="task",
                    text=f"Task: {task.title}",
                    status=task.status.value,
                )
            )
    items.sort(key=lambda i: i.at, reverse=True)
    return items


async def _contact_page(
    crm: Crm,
    contact_id: str,
    *,
    done: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    contact = await crm.pipeline.use_case(crm.services.contacts.get(crm.ctx, contact_id))
    timeline = await _timeline(crm, contact)
    location = await crm.services.access.find_location(crm.ctx.tenant_id)
    now_local = crm.services.clock.now().astimezone(ZoneInfo(location.timezone))
    suggested = (now_local + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    return await page(
        crm,
        "contact.html",
        title=f"{contact.first_name} {contact.last_name}".strip(),
        contact=contact,
        timeline=timeline,
        notice=_notice(done),
        errors=errors or {},
        values={
            "service_type": "MRI",
            "date": suggested.strftime("%Y-%m-%d"),
            "time": suggested.strftime("%H:%M"),
            "minutes": "30",
            "body": "",
            **(values or {}),
        },
        status_code=status_code,
    )


@get(
    "/contacts/{id:str}",
    opt={"permission": "contacts:read", "audit_resource": "contact"},
    include_in_schema=False,
)
async def contact_page(
    crm: CrmDep, id: FromPath[str], done: FromQuery[str | None] = None
) -> Template:
    """A contact: details, consents, warmness explained, timeline, SMS and booking forms."""
    return await _contact_page(crm, id, done=done)


def _field(form: Any, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return "" if value is None else str(value).strip()[:limit]


@post(
    "/contacts/{id:str}/sms",
    opt={"permission": "sms:send", "audit_resource": "sms"},
    include_in_schema=False,
)
async def send_sms(
    crm: CrmDep, request: Request[Any, Any, Any], id: FromPath[str]
) -> Template | Redirect:
    """Send the contact an SMS (queued; the worker sends it) — a transactional reply."""
    form = await request.form()
    body = _field(form, "body", _MAX_TEXT + 1)
    error = None
    if not body:
        error = "Message: write the text to send."
    elif len(body) > _MAX_TEXT:
        error = f"Message: at most {_MAX_TEXT} characters."
    status = 422
    if error is None:
        location = await crm.services.access.find_location(crm.ctx.tenant_id)
        from_number = crm.runtime.messaging.sms_numbers.get(location.code)
        try:
            await crm.pipeline.use_case(
                crm.services.sms.send(
                    crm.ctx, id, body, kind=SmsKind.TRANSACTIONAL, from_number=from_number
                )
            )
        except (Conflict, Unavailable) as exc:
            # No consent, no phone, no sender configured: nothing was stored; say why.
            error, status = f"Message: not sent — {exc.detail}", 409
    if error is not None:
        crm.pipeline.detail = f"console form refused: body ({error})"
        return await _contact_page(
            crm, id, errors={"body": error}, values={"body": body}, status_code=status
        )
    return Redirect(f"{CONSOLE_PATH}/contacts/{id}?done=sms-queued#timeline", status_code=303)


def _parse_booking(form: Any, timezone: str) -> tuple[dict[str, str], dict[str, str], Any]:
    values = {
        "service_type": _field(form, "service_type", 101),
        "date": _field(form, "date", 20),
        "time": _field(form, "time", 20),
        "minutes": _field(form, "minutes", 10),
    }
    errors: dict[str, str] = {}
    if not values["service_type"]:
        errors["service_type"] = "Service: name the scan (for example MRI)."
    elif len(values["service_type"]) > 100:
        errors["service_type"] = "Service: at most 100 characters."
    starts: datetime | None = None
    try:
        local = datetime.strptime(f"{values['date']} {values['time']}", "%Y-%m-%d %H:%M")
        starts = local.replace(tzinfo=ZoneInfo(timezone))
    except ValueError:
        errors["date"] = "Date and time: use a date like 2026-05-20 and a time like 09:30."
    minutes = 0
    if not values["minutes"].isdigit() or not 5 <= int(values["minutes"]) <= 480:
        errors["minutes"] = "Length: a number of minutes from 5 to 480."
    else:
        minutes = int(values["minutes"])
    return values, errors, (starts, minutes)


@post(
    "/contacts/{id:str}/bookings",
    opt={"permission": "bookings:create", "audit_resource": "booking"},
    include_in_schema=False,
)
async def book(
    crm: CrmDep, request: Request[Any, Any, Any], id: FromPath[str]
) -> Template | Redirect:
    """Book a scan for the contact (times in the location's timezone)."""
    form = await request.form()
    location = await crm.services.access.find_location(crm.ctx.tenant_id)
    values, errors, (starts, minutes) = _parse_booking(form, location.timezone)
    if not errors:
        command = CreateBooking(
            contact_id=id,
            service_type=values["service_type"],
            starts_at=starts,
            ends_at=starts + timedelta(minutes=minutes),
            source="console",
        )
        try:
            await crm.pipeline.use_case(crm.services.bookings.create(crm.ctx, command))
        except ValidationError as exc:
            # The domain's own rules name their field; the form shows it beside that field.
            field = {"starts_at": "date", "ends_at": "minutes"}.get(exc.field, exc.field)
            errors[field if field in values else "date"] = f"{exc.field}: {exc.reason}"
        except Conflict as exc:
            errors["date"] = f"Date and time: {exc.detail}"
    if errors:
        crm.pipeline.detail = "console form refused: " + ", ".join(sorted(errors))
        return await _contact_page(crm, id, errors=errors, values=values, status_code=422)
    return Redirect(f"{CONSOLE_PATH}/contacts/{id}?done=booked#timeline", status_code=303)


ROUTES = [
    today,
    _booking_action("confirm", "confirmed", _confirm),
    _booking_action("cancel", "cancelled", _cancel),
    _booking_action("no-show", "no-show", _no_show),
    complete_task,
    contact_page,
    send_sms,
    book,
]

__all__ = ["NOTICES", "ROUTES", "Reply", "TimelineItem"]
