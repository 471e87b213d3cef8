"""Report metrics against a small data set with known answers.

The data sits around midnight in Sydney (UTC+11 in March 2026) so that
bucketing in the query's timezone differs from bucketing in UTC, and has
records exactly on the range's bounds (``start`` counts, ``end`` does not).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from crm_domain.errors import PermissionDenied, ValidationError
from crm_domain.metrics import allowed_dimensions
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
        ("c5", "referral", 10, _utc("2026-02-27T23:00:00")),  # status contacted (below)
        ("c6", "website", 100, _utc("2026-04-15T00:00:00")),  # after the range
        ("c7", "meta_ad", 100, END),  # on the exclusive end
    ]
    contacts = {
        name: world.contact(
            a,
            source=source,
            warmness=warmness,
            created_at=created,
            status="contacted" if name == "c5" else "new",
        )
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
    sms = (
        [
            world.sms(a, direction="inbound", status="received", created_at=_utc(t))
            for t in ("2026-03-01T00:00:00", "2026-03-02T00:00:00", "2026-04-20T00:00:00")
        ]
        + [
            world.sms(a, direction="outbound", status="sent", created_at=_utc(t))
            for t in ("2026-03-01T01:00:00", "2026-03-03T00:00:00")
        ]
        + [
            # Replies to leads: first responses of 10, 30, 60 (c3 also had one before
            # it existed, which does not count) and 5 minutes.
            world.sms(
                a,
                direction="outbound",
                status="sent",
                contact_id=contacts[c].id,
                created_at=_utc(t),
            )
            for c, t in (
                ("c1", "2026-03-01T12:40:00"),
                ("c1", "2026-03-01T13:40:00"),
                ("c2", "2026-03-01T14:00:00"),
                ("c3", "2026-03-02T01:00:00"),
                ("c3", "2026-03-02T03:00:00"),
                ("c4", "2026-03-09T01:05:00"),
            )
        ]
    )
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


def _query(
    metric: Metric, *dimensions: Dimension, timezone: str = SYDNEY, **filters: Any
) -> MetricQuery:
    return MetricQuery(
        metric=metric, start=START, end=END, dimensions=dimensions, timezone=timezone, **filters
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
    (_query(M.SMS_OUTBOUND), [({}, 8)]),
    (_query(M.TASKS_OPEN), [({}, 2)]),
    (
        _query(M.NEW_CONTACTS, D.WARMNESS_BAND),
        [
            ({"warmness_band": "cold"}, 3),
            ({"warmness_band": "hot"}, 1),
            ({"warmness_band": "warm"}, 2),
        ],
    ),
    (_query(M.NO_SHOW_RATE), [({}, 1 / 3)]),
    (
        _query(M.NO_SHOW_RATE, D.SERVICE_TYPE),
        [({"service_type": "ct"}, 0), ({"service_type": "mri"}, 0.5)],
    ),
    (
        _query(M.NO_SHOW_RATE, D.WEEKDAY, D.HOUR),
        [({"weekday": "2-Tue", "hour": "11"}, 0), ({"weekday": "3-Wed", "hour": "11"}, 1)],
    ),
    (_query(M.BOOKINGS, sources=("meta_ad",)), [({}, 2)]),
    (_query(M.NO_SHOWS, service_types=("ct",)), []),
    (
        _query(M.BOOKINGS, D.WEEK, service_types=("mri",)),
        [({"week": "2026-03-02"}, 2), ({"week": "2026-03-09"}, 1)],
    ),
    (
        _query(M.FUNNEL),
        [
            ({"stage": "lead"}, 6),
            ({"stage": "contacted"}, 6),
            ({"stage": "booked"}, 5),
            ({"stage": "attended"}, 2),
        ],
    ),
    (
        _query(M.FUNNEL, D.SOURCE, service_types=("ct",), sources=("meta_ad", "referral")),
        [
            ({"source": "meta_ad", "stage": "lead"}, 2),
            ({"source": "meta_ad", "stage": "contacted"}, 2),
            ({"source": "meta_ad", "stage": "booked"}, 0),
            ({"source": "meta_ad", "stage": "attended"}, 0),
            ({"source": "referral", "stage": "lead"}, 3),
            ({"source": "referral", "stage": "contacted"}, 3),
            ({"source": "referral", "stage": "booked"}, 2),
            ({"source": "referral", "stage": "attended"}, 1),
        ],
    ),
    (_query(M.FIRST_RESPONSE_MINUTES), [({}, 20)]),
    (
        _query(M.FIRST_RESPONSE_MINUTES, D.SOURCE),
        [({"source": "meta_ad"}, 20), ({"source": "referral"}, 5), ({"source": "website"}, 60)],
    ),
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

    async def test_filters_a_metric_lacks_are_refused(self, world: World) -> None:
        async with world.gateway.unit_of_work(world.a.id) as uow:
            for query, field in (
                (_query(M.NEW_CONTACTS, service_types=("mri",)), "service_type"),
                (_query(M.TASKS_OPEN, sources=("website",)), "source"),
                (_query(M.BOOKINGS, D.WARMNESS_BAND), "dimensions"),
            ):
                with pytest.raises(ValidationError) as info:
                    await uow.analytics.metric(query)
                assert info.value.field == field

    async def test_local_days_follow_daylight_saving_changes(self, world: World) -> None:
        """Sydney leaves daylight saving at 03:00 on 5 April 2026 (UTC+11 → UTC+10).

        00:30 that morning is still UTC+11 and 23:30 that night already UTC+10:
        both are 5 April locally, although one offset for the whole range would
        put one of them on the 4th or the 6th.
        """
        contact = world.contact(world.a.id, created_at=_utc("2026-03-01T00:00:00"))
        starts = ("2026-04-04T13:30:00", "2026-04-05T13:30:00", "2026-04-05T14:30:00")
        bookings = [
            world.booking(
                world.a.id,
                contact.id,
                starts_at=_utc(t),
                ends_at=_utc(t) + timedelta(hours=1),
            )
            for t in starts
        ]
        await world.save(world.a.id, contact, *bookings)
        query = MetricQuery(
            metric=M.BOOKINGS,
            start=_utc("2026-04-01T00:00:00"),
            end=_utc("2026-04-10T00:00:00"),
            dimensions=(D.DAY,),
            timezone=SYDNEY,
        )
        async with world.gateway.unit_of_work(world.a.id) as uow:
            rows = await uow.analytics.metric(query)
        assert [(r.keys, r.value) for r in rows] == [
            ({"day": "2026-04-05"}, 2.0),
            ({"day": "2026-04-06"}, 1.0),
        ]

    async def test_analytics_need_a_location(self, world: World) -> None:
        async with world.gateway.unit_of_work() as uow:
            with pytest.raises(PermissionDenied):
                await uow.analytics.metric(_query(M.NEW_CONTACTS))


# --- generated data against an oracle written out by hand -------------------------------

#: Daylight-saving changes the generated times cluster around: Sydney leaves it
#: on 2026-04-05 (03:00 → 02:00 local), New York enters it on 2026-03-08.
_CHANGES = (_utc("2026-04-04T16:00:00"), _utc("2026-03-08T07:00:00"))
_ZONES = (SYDNEY, "America/New_York", "UTC")
_SOURCES = ("meta_ad", "website", "referral")
_SERVICES = ("mri", "ct")
_RANGE = (_utc("2026-03-05T00:00:00"), _utc("2026-04-08T00:00:00"))

_moments = st.builds(
    lambda change, half_hours, minute: change + timedelta(minutes=30 * half_hours + minute),
    st.sampled_from(_CHANGES),
    st.integers(-150, 150),
    st.sampled_from([0, 1, 29]),
)


@st.composite
def _data_sets(draw: st.DrawFn) -> dict[str, Any]:
    contacts = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "source": st.sampled_from(_SOURCES),
                    "status": st.sampled_from(["new", "contacted", "lost"]),
                    "warmness": st.integers(0, 100),
                    "created_at": _moments,
                }
            ),
            min_size=1,
            max_size=7,
        )
    )
    n = len(contacts)
    bookings = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "contact": st.integers(0, n - 1),
                    "service_type": st.sampled_from(_SERVICES),
                    "status": st.sampled_from(
                        ["pending", "confirmed", "completed", "cancelled", "no_show"]
                    ),
                    "starts_at": _moments,
                }
            ),
            max_size=8,
        )
    )
    sms = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "contact": st.none() | st.integers(0, n - 1),
                    "direction": st.sampled_from(["inbound", "outbound"]),
                    "created_at": _moments,
                }
            ),
            max_size=6,
        )
    )
    tasks = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "status": st.sampled_from(["open", "in_progress", "done"]),
                    "created_at": _moments,
                }
            ),
            max_size=3,
        )
    )
    queries = []
    for metric in M:
        allowed = sorted(allowed_dimensions(metric) - {D.LOCATION}, key=lambda d: d.value)
        dims = draw(st.lists(st.sampled_from(allowed), max_size=2, unique=True))
        sources: tuple[str, ...] = ()
        services: tuple[str, ...] = ()
        if D.SOURCE in allowed_dimensions(metric):
            sources = tuple(draw(st.lists(st.sampled_from(_SOURCES), max_size=2, unique=True)))
        if D.SERVICE_TYPE in allowed_dimensions(metric) or metric is M.FUNNEL:
            services = tuple(draw(st.lists(st.sampled_from(_SERVICES), max_size=1)))
        queries.append(
            MetricQuery(
                metric=metric,
                start=_RANGE[0],
                end=_RANGE[1],
                dimensions=tuple(dims),
                timezone=draw(st.sampled_from(_ZONES)),
                sources=sources,
                service_types=services,
            )
        )
    return {
        "contacts": contacts,
        "bookings": bookings,
        "sms": sms,
        "tasks": tasks,
        "queries": queries,
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _oracle(query: MetricQuery, tenant: str, data: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Each metric computed longhand from the drawn dictionaries: ``(keys, value, records)``.

    Written without :mod:`crm_domain.metrics` so the in-memory gateway (which
    uses that module) is checked too: local dates by ``astimezone``, the ISO
    week's Monday by ``isocalendar``, rules straight from the contract.
    """
    tz = ZoneInfo(query.timezone)
    start, end = query.start, query.end

    def label(when: datetime, d: Dimension, labels: dict[str, str]) -> str:
        local = when.astimezone(tz)
        if d is D.DAY:
            return local.date().isoformat()
        if d is D.WEEK:
            year, week, _ = local.isocalendar()
            return date.fromisocalendar(year, week, 1).isoformat()
        if d is D.MONTH:
            return f"{local.year:04d}-{local.month:02d}"
        if d is D.WEEKDAY:
            return f"{local.isoweekday()}-{local.strftime('%a')}"
        if d is D.HOUR:
            return local.strftime("%H")
        if d is D.LOCATION:
            return tenant
        return labels[d.value]

    def band(w: int) -> str:
        return "cold" if w < 40 else "warm" if w < 70 else "hot"

    contacts = data["contacts"]
    groups: dict[tuple[str, ...], list[Any]] = {}

    def add(when: datetime, labels: dict[str, str], value: Any) -> None:
        if start <= when < end:
            key = tuple(label(when, d, labels) for d in query.dimensions)
            groups.setdefault(key, []).append(value)

    metric = query.metric
    if metric in (M.NEW_CONTACTS, M.AVG_WARMNESS, M.FUNNEL, M.FIRST_RESPONSE_MINUTES):
        for i, c in enumerate(contacts):
            if query.sources and c["source"] not in query.sources:
                continue
            labels = {"source": c["source"], "warmness_band": band(c["warmness"])}
            mine = [
                b
                for b in data["bookings"]
                if b["contact"] == i
                and (not query.service_types or b["service_type"] in query.service_types)
            ]
            replies = [
                m["created_at"]
                for m in data["sms"]
                if m["contact"] == i and m["direction"] == "outbound"
            ]
            if metric is M.NEW_CONTACTS:
                add(c["created_at"], labels, 1.0)
            elif metric is M.AVG_WARMNESS:
                add(c["created_at"], labels, float(c["warmness"]))
            elif metric is M.FUNNEL:
                booked = bool(mine)
                attended = any(b["status"] == "completed" for b in mine)
                contacted = c["status"] != "new" or bool(replies) or booked
                add(c["created_at"], labels, (1, int(contacted), int(booked), int(attended)))
            else:
                later = [t for t in replies if t >= c["created_at"]]
                if later:
                    minutes = (min(later) - c["created_at"]).total_seconds() / 60
                    add(c["created_at"], labels, minutes)
    elif metric in (M.BOOKINGS, M.COMPLETED, M.NO_SHOWS, M.CANCELLATIONS, M.NO_SHOW_RATE):
        wanted = {
            M.BOOKINGS: None,
            M.COMPLETED: {"completed"},
            M.NO_SHOWS: {"no_show"},
            M.CANCELLATIONS: {"cancelled"},
            M.NO_SHOW_RATE: {"completed", "no_show"},
        }[metric]
        for b in data["bookings"]:
            source = contacts[b["contact"]]["source"]
            if wanted is not None and b["status"] not in wanted:
                continue
            if query.sources and source not in query.sources:
                continue
            if query.service_types and b["service_type"] not in query.service_types:
                continue
            value = 1.0 if metric is not M.NO_SHOW_RATE else float(b["status"] == "no_show")
            add(b["starts_at"], {"source": source, "service_type": b["service_type"]}, value)
    elif metric in (M.SMS_INBOUND, M.SMS_OUTBOUND):
        direction = "inbound" if metric is M.SMS_INBOUND else "outbound"
        for m in data["sms"]:
            if m["direction"] == direction:
                add(m["created_at"], {}, 1.0)
    else:
        for t in data["tasks"]:
            if t["status"] in ("open", "in_progress"):
                add(t["created_at"], {}, 1.0)

    out: list[tuple[Any, ...]] = []
    for key in sorted(groups):
        values = groups[key]
        keys = dict(zip((d.value for d in query.dimensions), key, strict=True))
        if metric is M.FUNNEL:
            for i, stage in enumerate(("lead", "contacted", "booked", "attended")):
                total = sum(v[i] for v in values)
                out.append(({**keys, "stage": stage}, float(total), len(values)))
        elif metric is M.FIRST_RESPONSE_MINUTES:
            out.append((keys, _median(values), len(values)))
        elif metric in (M.AVG_WARMNESS, M.NO_SHOW_RATE):
            out.append((keys, sum(values) / len(values), len(values)))
        else:
            out.append((keys, float(sum(values)), len(values)))
    return out


class AnalyticsPropertyConformance(GatewayKit):
    """Every metric on generated data, times around daylight-saving changes, against an oracle."""

    # Everything is drawn up front (see PropertyConformance for why).
    @given(data=_data_sets())
    @settings(
        max_examples=12,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    async def test_every_metric_matches_the_oracle(
        self, world: World, data: dict[str, Any]
    ) -> None:
        location = world.location()
        await world.save(None, location)
        tenant = location.id
        contacts = [
            world.contact(tenant, **c, updated_at=c["created_at"]) for c in data["contacts"]
        ]
        bookings = [
            world.booking(
                tenant,
                contacts[b["contact"]].id,
                service_type=b["service_type"],
                status=b["status"],
                starts_at=b["starts_at"],
                ends_at=b["starts_at"] + timedelta(minutes=45),
            )
            for b in data["bookings"]
        ]
        sms = [
            world.sms(
                tenant,
                direction=m["direction"],
                status="sent" if m["direction"] == "outbound" else "received",
                contact_id=None if m["contact"] is None else contacts[m["contact"]].id,
                created_at=m["created_at"],
            )
            for m in data["sms"]
        ]
        tasks = [
            world.task(tenant, status=t["status"], created_at=t["created_at"])
            for t in data["tasks"]
        ]
        await world.save(tenant, *contacts, *bookings, *sms, *tasks)
        problems: list[str] = []
        async with world.gateway.unit_of_work(tenant) as uow:
            for query in data["queries"]:
                got = [(r.keys, r.value, r.records) for r in await uow.analytics.metric(query)]
                expected = _oracle(query, tenant, data)
                same = len(got) == len(expected) and all(
                    g[0] == e[0] and g[1] == pytest.approx(e[1]) and g[2] == e[2]
                    for g, e in zip(got, expected, strict=True)
                )
                if not same:
                    problems.append(f"{query}:\n    got      {got}\n    expected {expected}")
        assert not problems, "\n  ".join(problems)
