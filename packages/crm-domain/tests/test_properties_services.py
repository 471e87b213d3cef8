"""Property: a Context of location A never yields, changes or deletes an entity of location B.

Hypothesis draws the data at both locations, the role of A's caller and a
sequence of operations aimed at B's ids through every service; whatever each
operation answers (an error, or A's own data), nothing of B comes back and B's
stored state is unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import attrs
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crm_domain.bootstrap import bootstrap
from crm_domain.clock import FixedClock, UlidFactory
from crm_domain.context import Context
from crm_domain.entities import Role
from crm_domain.errors import CrmError
from crm_domain.memory import InMemoryGateway
from crm_domain.pagination import Page
from crm_domain.queries import BookingQuery, ContactQuery, TaskQuery, TouchpointQuery
from crm_domain.services import (
    AddTouchpoint,
    CancelBooking,
    CreateBooking,
    CreateContact,
    CreateLocation,
    CreateTask,
    RescheduleBooking,
    UpdateContact,
    UpdateTask,
)

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

OPERATIONS = (
    "contact.get",
    "contact.update",
    "contact.delete",
    "contact.add_touchpoint",
    "contact.list_touchpoints",
    "contact.list_by_email",
    "booking.get",
    "booking.create_for_contact",
    "booking.confirm",
    "booking.cancel",
    "booking.reschedule",
    "booking.no_show",
    "booking.complete",
    "booking.list",
    "task.get",
    "task.create_for_contact",
    "task.create_for_booking",
    "task.update",
    "task.complete",
    "task.delete",
    "task.list",
)


@attrs.define
class Scenario:
    """What Hypothesis chose."""

    contacts_a: int
    contacts_b: int
    bookings_per_contact: int
    role: Role
    operations: list[tuple[str, int]]


scenarios = st.builds(
    Scenario,
    contacts_a=st.integers(0, 2),
    contacts_b=st.integers(1, 3),
    bookings_per_contact=st.integers(0, 2),
    role=st.sampled_from(list(Role)),
    operations=st.lists(
        st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 10)), min_size=1, max_size=12
    ),
)


async def _populate(
    services: Any, ctx: Context, contacts: int, bookings: int
) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {"contact": [], "booking": [], "task": []}
    for i in range(contacts):
        contact = await services.contacts.create(
            ctx,
            CreateContact(first_name=f"C{i}", email=f"c{i}@example.com", phone=f"+6141234560{i}"),
        )
        ids["contact"].append(contact.id)
        await services.contacts.add_touchpoint(
            ctx, AddTouchpoint(contact_id=contact.id, kind="note")
        )
        for j in range(bookings):
            start = START + timedelta(days=1 + i, hours=j * 2)
            booking = await services.bookings.create(
                ctx,
                CreateBooking(
                    contact_id=contact.id,
                    service_type="MRI",
                    starts_at=start,
                    ends_at=start + timedelta(minutes=30),
                ),
            )
            ids["booking"].append(booking.id)
        task = await services.tasks.create(
            ctx, CreateTask(title=f"Call C{i}", contact_id=contact.id)
        )
        ids["task"].append(task.id)
    return ids


async def _snapshot(gateway: InMemoryGateway, tenant: str) -> tuple[Any, ...]:
    async with gateway.unit_of_work(tenant) as uow:
        return (
            (await uow.contacts.list(ContactQuery(limit=200))).items,
            (await uow.bookings.list(BookingQuery(limit=200))).items,
            (await uow.tasks.list(TaskQuery(limit=200))).items,
            (await uow.touchpoints.list(TouchpointQuery(limit=200))).items,
        )


def _tenants_in(result: object) -> set[str]:
    """Every ``tenant_id`` reachable from a service's answer."""
    if isinstance(result, Page):
        return set().union(*(_tenants_in(item) for item in result.items))
    tenant = getattr(result, "tenant_id", None)
    return {tenant} if isinstance(tenant, str) else set()


async def _attempt(
    services: Any, ctx: Context, name: str, index: int, pick: Callable[[str, int], str]
) -> object:
    """Run one operation aimed at the other location's entities."""
    contact, booking, task = pick("contact", index), pick("booking", index), pick("task", index)
    when = START + timedelta(days=20, hours=index)
    until = when + timedelta(minutes=30)
    result: Awaitable[object]
    match name:
        case "contact.get":
            result = services.contacts.get(ctx, contact)
        case "contact.update":
            result = services.contacts.update(
                ctx, UpdateContact(contact_id=contact, first_name="Mallory")
            )
        case "contact.delete":
            result = services.contacts.delete(ctx, contact)
        case "contact.add_touchpoint":
            result = services.contacts.add_touchpoint(
                ctx, AddTouchpoint(contact_id=contact, kind="note")
            )
        case "contact.list_touchpoints":
            result = services.contacts.list_touchpoints(ctx, contact)
        case "contact.list_by_email":
            result = services.contacts.list(ctx, ContactQuery(email=f"c{index % 3}@example.com"))
        case "booking.get":
            result = services.bookings.get(ctx, booking)
        case "booking.create_for_contact":
            result = services.bookings.create(
                ctx,
                CreateBooking(contact_id=contact, service_type="CT", starts_at=when, ends_at=until),
            )
        case "booking.confirm":
            result = services.bookings.confirm(ctx, booking)
        case "booking.cancel":
            result = services.bookings.cancel(ctx, CancelBooking(booking_id=booking))
        case "booking.reschedule":
            result = services.bookings.reschedule(
                ctx, RescheduleBooking(booking_id=booking, starts_at=when, ends_at=until)
            )
        case "booking.no_show":
            result = services.bookings.mark_no_show(ctx, booking)
        case "booking.complete":
            result = services.bookings.complete(ctx, booking)
        case "booking.list":
            result = services.bookings.list(ctx, BookingQuery(contact_id=contact))
        case "task.get":
            result = services.tasks.get(ctx, task)
        case "task.create_for_contact":
            result = services.tasks.create(ctx, CreateTask(title="t", contact_id=contact))
        case "task.create_for_booking":
            result = services.tasks.create(ctx, CreateTask(title="t", booking_id=booking))
        case "task.update":
            result = services.tasks.update(ctx, UpdateTask(task_id=task, title="Mallory"))
        case "task.complete":
            result = services.tasks.complete(ctx, task)
        case "task.delete":
            result = services.tasks.delete(ctx, task)
        case "task.list":
            result = services.tasks.list(ctx, TaskQuery(contact_id=contact))
        case _:
            raise AssertionError(name)
    return await result


async def _run(scenario: Scenario) -> None:
    gateway = InMemoryGateway()
    clock = FixedClock(START)
    services = bootstrap(gateway, clock=clock, ids=UlidFactory())
    operator = Context.system("bootstrap")
    a = await services.access.create_location(
        operator, CreateLocation(code="a", name="A", timezone="Australia/Sydney")
    )
    b = await services.access.create_location(
        operator, CreateLocation(code="b", name="B", timezone="Australia/Sydney")
    )
    await _populate(
        services, Context.system(a.id), scenario.contacts_a, scenario.bookings_per_contact
    )
    theirs = await _populate(
        services, Context.system(b.id), scenario.contacts_b, scenario.bookings_per_contact
    )
    before = await _snapshot(gateway, b.id)
    ctx = Context.for_roles(a.id, "attacker", [scenario.role])
    clock.advance(timedelta(days=10))  # every booking has started: no-show is possible

    def pick(kind: str, index: int) -> str:
        pool = theirs[kind] or theirs["contact"]
        return pool[index % len(pool)]

    for name, index in scenario.operations:
        try:
            result = await _attempt(services, ctx, name, index, pick)
        except CrmError as error:
            event(f"{name}: {type(error).__name__}")
            continue
        event(f"{name}: answered")
        assert _tenants_in(result) <= {a.id}, (name, result)

    assert await _snapshot(gateway, b.id) == before


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios)
def test_a_context_of_one_location_never_reaches_another(scenario: Scenario) -> None:
    anyio.run(_run, scenario)
