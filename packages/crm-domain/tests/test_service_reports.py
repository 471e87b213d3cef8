"""ReportingService on the in-memory gateway: permissions, locations, merging, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_domain.context import Context
from crm_domain.entities import Booking, PermissionOverride, Role, SmsMessage
from crm_domain.errors import NotFound, PermissionDenied, Unavailable, ValidationError
from crm_domain.ports.analytics import Dimension, Metric, MetricRow
from crm_domain.services import AddUser, ReportQuery
from crm_domain.services.reports import merge_rows

pytestmark = pytest.mark.anyio

START = datetime(2026, 2, 1, tzinfo=UTC)
END = datetime(2026, 3, 1, tzinfo=UTC)


async def _bookings(world: Any, location: Any, statuses: list[str], day: int = 10) -> str:
    """Bookings with these statuses on 2026-02-``day`` 01:00 UTC, for one new contact."""
    contact_id = await world.new_contact(location)
    now = world.clock.now()
    rows = []
    for i, status in enumerate(statuses):
        starts = datetime(2026, 2, day, 1, tzinfo=UTC) + timedelta(hours=i)
        rows.append(
            Booking(
                id=world.ids.new_id(),
                tenant_id=location.id,
                contact_id=contact_id,
                service_type="mri",
                starts_at=starts,
                ends_at=starts + timedelta(minutes=30),
                status=status,
                created_at=now,
                updated_at=now,
            )
        )
    async with world.gateway.unit_of_work(location.id) as uow:
        for booking in rows:
            await uow.bookings.add(booking)
        await uow.commit()
    return contact_id


async def _member(world: Any, *, deny_melbourne: bool) -> Context:
    """A doctor at both locations (reports:read denied at Melbourne when asked)."""
    admin_sydney, admin_melbourne = world.ctx(), world.ctx(location=world.melbourne)
    member = await world.services.access.add_user(
        admin_sydney, AddUser(email="dr@example.com", role="doctor")
    )
    deny = (PermissionOverride(resource="reports", action="read", effect="deny"),)
    await world.services.access.add_user(
        admin_melbourne,
        AddUser(
            email="dr@example.com",
            role="doctor",
            custom_permissions=deny if deny_melbourne else (),
        ),
    )
    return Context(
        tenant_id=world.sydney.id,
        user_id=member.user.id,
        roles=frozenset({Role.DOCTOR}),
        request_id=world.ids.new_id(),
    )


def _query(metric: Metric, *dims: Dimension, locations: tuple[str, ...] = ()) -> ReportQuery:
    return ReportQuery(metric=metric, start=START, end=END, dimensions=dims, locations=locations)


async def test_a_report_covers_the_callers_location_and_is_audited(world: Any) -> None:
    await _bookings(world, world.sydney, ["completed", "no_show", "no_show"])
    await _bookings(world, world.melbourne, ["no_show"])
    before = len(await world.audit())
    report = await world.services.reports.report(world.ctx(Role.READONLY), _query(Metric.NO_SHOWS))
    assert [(r.keys, r.value) for r in report.rows] == [({}, 2.0)]
    assert [loc.code for loc in report.locations] == ["sydney"]
    entries = (await world.audit())[before:]
    assert [(e.action, e.resource_type, e.outcome) for e in entries] == [
        ("READ", "report", "success")
    ]
    assert "no_shows" in (entries[0].detail or "")


async def test_without_reports_read_the_report_is_refused_and_audited(world: Any) -> None:
    member = await _member(world, deny_melbourne=True)
    refused = Context(
        tenant_id=world.melbourne.id,
        user_id=member.user_id,
        roles=frozenset({Role.DOCTOR}),
        custom_permissions=(PermissionOverride(resource="reports", action="read", effect="deny"),),
    )
    with pytest.raises(PermissionDenied):
        await world.services.reports.report(refused, _query(Metric.BOOKINGS))
    [entry] = (await world.audit(world.melbourne))[-1:]
    assert (entry.resource_type, entry.outcome) == ("report", "denied")


async def test_cross_location_only_where_the_user_holds_reports_read(world: Any) -> None:
    await _bookings(world, world.sydney, ["completed", "no_show"])
    await _bookings(world, world.melbourne, ["no_show", "no_show", "completed"])
    reports = world.services.reports
    denied = await _member(world, deny_melbourne=True)
    everywhere = await reports.report(denied, _query(Metric.NO_SHOWS, locations=("*",)))
    assert [loc.code for loc in everywhere.locations] == ["sydney"]
    assert [r.value for r in everywhere.rows] == [1.0]
    with pytest.raises(NotFound):  # like a code that does not exist
        await reports.report(denied, _query(Metric.NO_SHOWS, locations=("melbourne",)))
    with pytest.raises(NotFound):
        await reports.report(denied, _query(Metric.NO_SHOWS, locations=("nowhere",)))

    allowed = await _member(world, deny_melbourne=False)
    both = await reports.report(allowed, _query(Metric.NO_SHOWS, locations=("*",)))
    assert [r.value for r in both.rows] == [3.0]
    by_location = await reports.report(
        allowed, _query(Metric.NO_SHOW_RATE, Dimension.LOCATION, locations=("*",))
    )
    assert sorted((r.keys["location"], r.value) for r in by_location.rows) == sorted(
        [(world.sydney.id, 0.5), (world.melbourne.id, 2 / 3)]
    )
    merged = await reports.report(allowed, _query(Metric.NO_SHOW_RATE, locations=("*",)))
    assert [(r.value, r.records) for r in merged.rows] == [(3 / 5, 5)]  # weighted, not 0.58


async def test_a_median_over_several_locations_is_shown_per_location(world: Any) -> None:
    allowed = await _member(world, deny_melbourne=False)
    for location, minutes in ((world.sydney, 10), (world.melbourne, 40)):
        contact_id = await world.new_contact(location)
        async with world.gateway.unit_of_work(location.id) as uow:
            contact = await uow.contacts.get(contact_id)
            await uow.sms.add(
                SmsMessage(
                    id=world.ids.new_id(),
                    tenant_id=location.id,
                    contact_id=contact_id,
                    direction="outbound",
                    from_number="+61298765432",
                    to_number="+61412345678",
                    body="Hello",
                    status="sent",
                    created_at=contact.created_at + timedelta(minutes=minutes),
                )
            )
            await uow.commit()
    query = ReportQuery(
        metric=Metric.FIRST_RESPONSE_MINUTES,
        start=world.clock.now() - timedelta(days=1),
        end=world.clock.now() + timedelta(days=1),
        locations=("*",),
    )
    report = await world.services.reports.report(allowed, query)
    assert report.dimensions == (Dimension.LOCATION,)
    assert report.note is not None
    assert sorted(r.value for r in report.rows) == [10.0, 40.0]


async def test_bad_queries_are_validation_errors_naming_the_field(world: Any) -> None:
    reports = world.services.reports
    cases = [
        ({"metric": "vibes"}, "metric"),
        ({"metric": "bookings", "dimensions": ("colour",)}, "dimensions"),
    ]
    for fields, name in cases:
        with pytest.raises(ValidationError) as caught:
            ReportQuery(start=START, end=END, **fields)
        assert caught.value.field == name
    for query, name in (
        (_query(Metric.TASKS_OPEN, Dimension.SOURCE), "dimensions"),
        (ReportQuery(metric=Metric.BOOKINGS, start=END, end=START), "end"),
        (ReportQuery(metric=Metric.BOOKINGS, start=START - timedelta(days=4000), end=END), "end"),
    ):
        with pytest.raises(ValidationError) as caught:
            await reports.report(world.ctx(), query)
        assert caught.value.field == name


def test_merging_adds_counts_and_weights_rates() -> None:
    counts = merge_rows(
        Metric.BOOKINGS,
        [
            MetricRow(keys={"day": "d"}, value=2, records=2),
            MetricRow(keys={"day": "d"}, value=3, records=3),
        ],
    )
    assert [(r.value, r.records) for r in counts] == [(5.0, 5)]
    rates = merge_rows(
        Metric.NO_SHOW_RATE,
        [MetricRow(keys={}, value=1.0, records=1), MetricRow(keys={}, value=0.0, records=3)],
    )
    assert [(r.value, r.records) for r in rates] == [(0.25, 4)]


async def test_questions_need_an_ai_provider_and_say_so(world: Any) -> None:
    before = len(await world.audit())
    with pytest.raises(Unavailable):
        await world.services.reports.ask(world.ctx(), "no-shows by week")
    with pytest.raises(ValidationError) as caught:
        await world.services.reports.ask(world.ctx(), "   ")
    assert caught.value.field == "question"
    entries = (await world.audit())[before:]
    assert [(e.resource_type, e.outcome) for e in entries] == [("report", "failed")] * 2
