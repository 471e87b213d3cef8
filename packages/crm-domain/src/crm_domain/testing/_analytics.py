"""Report metrics against a small data set with known answers.

The data sits around midnight in Sydney (UTC+11 in March 2026) so that
bucketing in the query's timezone differs from bucketing in UTC, and has
records exactly on the range's bounds (``start`` counts, ``end`` does not).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_domain.errors import PermissionDenied, ValidationError
from crm_domain.ports.analytics import Dimension, Metric, MetricQuery
from crm_domain.testing._base import GatewayKit
from crm_domain.testing._world import World

SYDNEY = "Australia/Sydney"
START = datetime(2026, 1, 31, 13, 0, tzinfo=UTC)  # 2026-02-01 00:00 in Sydney
END = datetime(2026, 3, 31, 13, 0, tzinfo=UTC)  # 2026-04-01 00:00 in Sydney


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def _load(world: World) -> None:
    """Store the known data set in location A, and noise in location B."""
    a, b = world.a.id, world.b.id
    rows: list[tuple[str, str, int, datetime]] = [
        ("c0", "referral", 30, START),
        ("c1", "meta_ad", 20, _utc("2026-03-01T12:30:00")),
        ("c2", "meta_ad", 60, _utc("2026-03-01T13:30:00")),
        ("c3", "website", 90, _utc("2026-03-02T02:00:00")),
        ("c4", "referral", 40, _utc("2026-03-09T01:00:00")),
        ("c5", "referral", 10, _utc("2026-02-27T23:00:00")),
        ("c6", "website", 100, _utc("2026-04-15T00:00:00")),  # after the range
        ("c7", "meta_ad", 100, END),  # on the exclusive end
    ]
    contacts = {
        name: world.contact(a, source=source, warmness=warmness, created_at=created)
        for name, source, warmness, created in rows
    }

    def booking(contact: str, service: str, status: str, starts: str) -> Any:
        start = _utc(starts)
        return world.booking(
            a,
            contacts[contact].id,
            service_type=service,
            status=status,
            starts_at=start,
            ends_at=start + timedelta(hours=1),
        )

    bookings = [
        booking("c1", "mri", "completed", "2026-03-03T00:00:00"),
        booking("c2", "mri", "no_show", "2026-03-04T00:00:00"),
        booking("c3", "ct", "cancelled", "2026-03-05T00:00:00"),
        booking("c3", "mri", "pending", "2026-03-10T00:00:00"),
        booking("c4", "ct", "confirmed", "2026-05-01T00:00:00"),  # after the range
        booking("c0", "ct", "completed", "2026-02-10T00:00:00"),
    ]
    sms = [
        world.sms(a, direction="inbound", status="received", created_at=_utc(t))
        for t in ("2026-03-01T00:00:00", "2026-03-02T00:00:00", "2026-04-20T00:00:00")
    ] + [
        world.sms(a, direction="outbound", status="sent", created_at=_utc(t))
        for t in ("2026-03-01T01:00:00", "2026-03-03T00:00:00")
    ]
    tasks = [
        world.task(a, status=status, created_at=_utc(t))
        for status, t in (
            ("open", "2026-03-01T00:00:00"),
            ("in_progress", "2026-03-02T00:00:00"),
            ("done", "2026-03-03T00:00:00"),
            ("cancelled", "2026-03-04T00:00:00"),
            ("open", "2026-04-20T00:00:00"),  # after the range
        )
    ]
    await world.save(a, *contacts.values(), *bookings, *sms, *tasks)

    noise = world.contact(b, source="meta_ad", warmness=99, created_at=_utc("2026-03-02T00:00:00"))
    await world.save(
        b,
        noise,
        world.booking(
            b,
            noise.id,
            status="completed",
            starts_at=_utc("2026-03-03T00:00:00"),
            ends_at=_utc("2026-03-03T01:00:00"),
        ),
        world.sms(
            b, direction="inbound", status="received", created_at=_utc("2026-03-02T00:00:00")
        ),
        world.task(b, created_at=_utc("2026-03-02T00:00:00")),
    )


def _query(metric: Metric, *dimensions: Dimension, timezone: str = SYDNEY) -> MetricQuery:
    return MetricQuery(
        metric=metric, start=START, end=END, dimensions=dimensions, timezone=timezone
    )


D, M = Dimension, Metric

#: (query, expected rows as (keys, value)), in the order the gateway must return them.
EXPECTED: list[tuple[MetricQuery, list[tuple[dict[str, str], float]]]] = [
    (_query(M.NEW_CONTACTS), [({}, 6)]),
    (
        _query(M.NEW_CONTACTS, D.DAY),
        [
            ({"day": "2026-02-01"}, 1),
            ({"day": "2026-02-28"}, 1),
            ({"day": "2026-03-01"}, 1),
            ({"day": "2026-03-02"}, 2),
            ({"day": "2026-03-09"}, 1),
        ],
    ),
    (
        _query(M.NEW_CONTACTS, D.DAY, timezone="UTC"),
        [
            ({"day": "2026-01-31"}, 1),
            ({"day": "2026-02-27"}, 1),
            ({"day": "2026-03-01"}, 2),
            ({"day": "2026-03-02"}, 1),
            ({"day": "2026-03-09"}, 1),
        ],
    ),
    (
        _query(M.NEW_CONTACTS, D.WEEK),
        [
            ({"week": "2026-01-26"}, 1),
            ({"week": "2026-02-23"}, 2),
            ({"week": "2026-03-02"}, 2),
            ({"week": "2026-03-09"}, 1),
        ],
    ),
    (
        _query(M.NEW_CONTACTS, D.MONTH, D.SOURCE),
        [
            ({"month": "2026-02", "source": "referral"}, 2),
            ({"month": "2026-03", "source": "meta_ad"}, 2),
            ({"month": "2026-03", "source": "referral"}, 1),
            ({"month": "2026-03", "source": "website"}, 1),
        ],
    ),
    (_query(M.AVG_WARMNESS), [({}, 250 / 6)]),
    (
        _query(M.AVG_WARMNESS, D.SOURCE),
        [
            ({"source": "meta_ad"}, 40),
            ({"source": "referral"}, 80 / 3),
            ({"source": "website"}, 90),
        ],
    ),
    (_query(M.BOOKINGS), [({}, 5)]),
    (
        _query(M.BOOKINGS, D.SERVICE_TYPE, D.SOURCE),
        [
            ({"service_type": "ct", "source": "referral"}, 1),
            ({"service_type": "ct", "source": "website"}, 1),
            ({"service_type": "mri", "source": "meta_ad"}, 2),
            ({"service_type": "mri", "source": "website"}, 1),
        ],
    ),
    (_query(M.COMPLETED, D.MONTH), [({"month": "2026-02"}, 1), ({"month": "2026-03"}, 1)]),
    (_query(M.NO_SHOWS), [({}, 1)]),
    (_query(M.CANCELLATIONS, D.SERVICE_TYPE), [({"service_type": "ct"}, 1)]),
    (
        _query(M.SMS_INBOUND, D.DAY),
        [({"day": "2026-03-01"}, 1), ({"day": "2026-03-02"}, 1)],
    ),
    (_query(M.SMS_OUTBOUND), [({}, 2)]),
    (_query(M.TASKS_OPEN), [({}, 2)]),
]


class AnalyticsConformance(GatewayKit):
    """Every metric, grouped by every dimension, with exact expected numbers."""

    async def test_metrics_match_the_known_answers(self, world: World) -> None:
        await _load(world)
        problems: list[str] = []
        async with world.gateway.unit_of_work(world.a.id) as uow:
            for query, expected in EXPECTED:
                rows = await uow.analytics.metric(query)
                got = [(dict(r.keys), r.value) for r in rows]
                same = len(got) == len(expected) and all(
                    g[0] == e[0] and g[1] == pytest.approx(e[1])
                    for g, e in zip(got, expected, strict=False)
                )
                if not same:
                    dims = ",".join(d.value for d in query.dimensions)
                    problems.append(
                        f"{query.metric.value} by [{dims}] in {query.timezone}: "
                        f"got {got}, expected {expected}"
                    )
            by_location = await uow.analytics.metric(_query(M.BOOKINGS, D.LOCATION))
        assert not problems, "metrics:\n  " + "\n  ".join(problems)
        assert [(r.keys, r.value) for r in by_location] == [({"location": world.a.id}, 5.0)]

    async def test_nothing_in_range_gives_no_rows(self, world: World) -> None:
        await _load(world)
        query = MetricQuery(
            metric=M.NEW_CONTACTS,
            start=_utc("2025-01-01T00:00:00"),
            end=_utc("2025-02-01T00:00:00"),
            dimensions=(D.DAY,),
        )
        async with world.gateway.unit_of_work(world.a.id) as uow:
            assert list(await uow.analytics.metric(query)) == []
            assert list(await uow.analytics.metric(_query(M.NEW_CONTACTS)))  # data exists

    async def test_dimensions_a_metric_lacks_are_refused(self, world: World) -> None:
        async with world.gateway.unit_of_work(world.a.id) as uow:
            for metric, dimension in (
                (M.SMS_INBOUND, D.SOURCE),
                (M.TASKS_OPEN, D.SERVICE_TYPE),
                (M.NEW_CONTACTS, D.SERVICE_TYPE),
            ):
                with pytest.raises(ValidationError) as info:
                    await uow.analytics.metric(_query(metric, dimension))
                assert info.value.field == "dimensions"

    async def test_analytics_need_a_location(self, world: World) -> None:
        async with world.gateway.unit_of_work() as uow:
            with pytest.raises(PermissionDenied):
                await uow.analytics.metric(_query(M.NEW_CONTACTS))
