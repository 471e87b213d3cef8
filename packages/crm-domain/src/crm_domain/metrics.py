"""The reference semantics of every report metric, in plain Python.

SQL gateways compute the same numbers with ``GROUP BY`` (see
``crm_gateway_sql.analytics``); the conformance kit checks every gateway
against this module on generated data.  The rules:

* a record counts when its *time column* lies in ``[start, end)``:
  contacts and tasks by ``created_at``, bookings by ``starts_at``, SMS by
  ``created_at``; the funnel and first-response time follow the *contacts
  created* in the range (a cohort), whenever their bookings or replies happen;
* ``new_contacts`` counts contacts; ``avg_warmness`` is the mean warmness of
  those contacts;
* ``bookings`` counts every booking whatever its status; ``completed``
  (attended), ``no_shows`` and ``cancellations`` count bookings in that status;
  ``no_show_rate`` is no-shows / (completed + no-shows) — bookings whose outcome
  is known — and a group with no such booking has no row;
* ``funnel``: for each group of contacts, four rows keyed also by ``stage``:
  ``lead`` (every contact), ``contacted`` (status past ``new``, or an outbound
  SMS to them, or a booking), ``booked`` (a booking), ``attended`` (a completed
  booking); a ``service_types`` filter narrows the bookings that count;
* ``first_response_minutes``: the median, over contacts that got one, of the
  minutes from the contact's creation to the first outbound SMS to them sent
  at or after it;
* ``sms_inbound`` / ``sms_outbound`` count messages by direction;
* ``tasks_open`` counts tasks created in range whose status is ``open`` or
  ``in_progress``;
* ``day`` (``YYYY-MM-DD``), ``week`` (the ISO week's Monday, ``YYYY-MM-DD``),
  ``month`` (``YYYY-MM``), ``weekday`` (``1-Mon`` … ``7-Sun``) and ``hour``
  (``00`` … ``23``) bucket the time column in ``query.timezone``;
  ``source`` is the contact's source (for bookings, their contact's; ``""``
  when the contact is unknown); ``service_type`` exists for booking metrics;
  ``warmness_band`` (cold < 40 ≤ warm < 70 ≤ hot) for contact metrics;
  ``location`` is the bound location's id.  A dimension or filter a metric
  does not have raises ``ValidationError`` naming ``dimensions``,
  ``service_type`` or ``source``;
* only groups with at least one record produce a row (no zero rows, and no
  row at all when nothing matched) — except that a funnel group shows all four
  stages; rows are sorted by their labels in dimension order (then by stage);
  values are floats and ``records`` is the count behind each value.

There are no revenue figures: bookings carry no price.
"""

from __future__ import annotations

import statistics
import zoneinfo
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_domain.entities import (
    Booking,
    BookingStatus,
    Contact,
    ContactStatus,
    SmsDirection,
    SmsMessage,
    Task,
    TaskStatus,
)
from crm_domain.errors import ValidationError
from crm_domain.ports.analytics import Dimension, FunnelStage, Metric, MetricQuery, MetricRow
from crm_domain.values import warmness_band

TIME_DIMENSIONS = frozenset(
    {Dimension.DAY, Dimension.WEEK, Dimension.MONTH, Dimension.WEEKDAY, Dimension.HOUR}
)
#: ``weekday`` labels, Monday first (ISO numbering, so they sort in week order).
WEEKDAYS = ("1-Mon", "2-Tue", "3-Wed", "4-Thu", "5-Fri", "6-Sat", "7-Sun")
#: Metrics over contacts created in the range.
CONTACT_METRICS = frozenset(
    {Metric.NEW_CONTACTS, Metric.AVG_WARMNESS, Metric.FUNNEL, Metric.FIRST_RESPONSE_MINUTES}
)
#: Metrics over bookings starting in the range, and the statuses each counts (None: all).
BOOKING_STATUSES: dict[Metric, frozenset[BookingStatus] | None] = {
    Metric.BOOKINGS: None,
    Metric.COMPLETED: frozenset({BookingStatus.COMPLETED}),
    Metric.NO_SHOWS: frozenset({BookingStatus.NO_SHOW}),
    Metric.CANCELLATIONS: frozenset({BookingStatus.CANCELLED}),
    Metric.NO_SHOW_RATE: frozenset({BookingStatus.COMPLETED, BookingStatus.NO_SHOW}),
}
#: Metrics whose value is not a count (rows of several locations cannot simply be added).
NON_ADDITIVE = frozenset({Metric.AVG_WARMNESS, Metric.NO_SHOW_RATE, Metric.FIRST_RESPONSE_MINUTES})
_SMS_DIRECTION = {
    Metric.SMS_INBOUND: SmsDirection.INBOUND,
    Metric.SMS_OUTBOUND: SmsDirection.OUTBOUND,
}
_STAGE_ORDER = {stage.value: i for i, stage in enumerate(FunnelStage)}
#: How far apart offset samples are when looking for a timezone's transitions.
_PROBE = timedelta(hours=12)


def allowed_dimensions(metric: Metric) -> frozenset[Dimension]:
    """The dimensions ``metric`` can be grouped by."""
    allowed = set(TIME_DIMENSIONS) | {Dimension.LOCATION}
    if metric in CONTACT_METRICS or metric in BOOKING_STATUSES:
        allowed.add(Dimension.SOURCE)
    if metric in BOOKING_STATUSES:
        allowed.add(Dimension.SERVICE_TYPE)
    if metric in CONTACT_METRICS:
        allowed.add(Dimension.WARMNESS_BAND)
    return frozenset(allowed)


def check_dimensions(metric: Metric, dimensions: Sequence[Dimension]) -> None:
    """Refuse a dimension ``metric`` lacks (``ValidationError('dimensions')``)."""
    allowed = allowed_dimensions(metric)
    bad = [d.value for d in dimensions if d not in allowed]
    if bad:
        raise ValidationError("dimensions", f"{metric.value} cannot be grouped by {', '.join(bad)}")


def check_query(query: MetricQuery) -> zoneinfo.ZoneInfo:
    """Refuse dimensions and filters ``query.metric`` lacks; return its timezone."""
    check_dimensions(query.metric, query.dimensions)
    allowed = allowed_dimensions(query.metric)
    if query.sources and Dimension.SOURCE not in allowed:
        raise ValidationError("source", f"{query.metric.value} cannot be filtered by source")
    if query.service_types and not (
        query.metric in BOOKING_STATUSES or query.metric is Metric.FUNNEL
    ):
        raise ValidationError(
            "service_type", f"{query.metric.value} cannot be filtered by service type"
        )
    return _timezone(query.timezone)


def bucket(when: datetime, dimension: Dimension, tz: zoneinfo.ZoneInfo) -> str:
    """The label of ``when``'s day, ISO week, month, weekday or hour in ``tz``."""
    local = when.astimezone(tz)
    if dimension is Dimension.WEEKDAY:
        return WEEKDAYS[local.weekday()]
    if dimension is Dimension.HOUR:
        return f"{local.hour:02d}"
    if dimension is Dimension.DAY:
        return local.strftime("%Y-%m-%d")
    if dimension is Dimension.WEEK:
        monday = local.date() - timedelta(days=local.weekday())
        return monday.isoformat()
    return local.strftime("%Y-%m")


def utc_offsets(
    tz: zoneinfo.ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, int]]:
    """``tz``'s UTC offset over ``[start, end)`` as ``(from, offset seconds)`` segments.

    The first segment starts at ``start``; each next one at a transition
    (found to the second by bisection between samples 12 hours apart — no zone
    changes its offset twice in 12 hours).  SQL engines without a timezone
    database (SQLite, D1) bucket local days with these segments.
    """

    def offset(at: datetime) -> int:
        delta = at.astimezone(tz).utcoffset()
        return 0 if delta is None else int(delta.total_seconds())

    start, end = start.astimezone(UTC), end.astimezone(UTC)  # arithmetic in absolute time
    segments = [(start, offset(start))]
    probe = start
    while probe < end:
        following = min(probe + _PROBE, end)
        if offset(following) != segments[-1][1]:
            low, high = probe, following  # offset(low) is the current one, high's the next
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if offset(middle) == segments[-1][1]:
                    low = middle
                else:
                    high = middle
            # Transitions fall on whole seconds: the one in (low, high].
            change = low.replace(microsecond=0) + timedelta(seconds=1)
            if change >= end:
                break
            segments.append((change, offset(change)))
        probe = following
    return segments


def _timezone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError("timezone", f"unknown timezone {name!r}") from None


#: One counted record: its time, its labels for the non-time dimensions, and
#: what it contributes (a number, or the funnel stages it reached).
_Record = tuple[datetime, dict[Dimension, str], Any]


def _contact_records(
    query: MetricQuery,
    contacts: list[Contact],
    bookings: list[Booking],
    sms: list[SmsMessage],
) -> list[_Record]:
    sources = set(query.sources)
    services = set(query.service_types)
    records: list[_Record] = []
    booked: set[str] = set()
    attended: set[str] = set()
    for b in bookings:
        if not services or b.service_type in services:
            booked.add(b.contact_id)
            if b.status is BookingStatus.COMPLETED:
                attended.add(b.contact_id)
    outbound = [m for m in sms if m.direction is SmsDirection.OUTBOUND and m.contact_id]
    for c in contacts:
        if sources and c.source.value not in sources:
            continue
        labels = {
            Dimension.SOURCE: c.source.value,
            Dimension.WARMNESS_BAND: warmness_band(c.warmness),
        }
        value: Any = 1.0
        if query.metric is Metric.AVG_WARMNESS:
            value = float(c.warmness)
        elif query.metric is Metric.FUNNEL:
            messaged = any(m.contact_id == c.id for m in outbound)
            value = (
                1,
                int(c.status is not ContactStatus.NEW or messaged or c.id in booked),
                int(c.id in booked),
                int(c.id in attended),
            )
        elif query.metric is Metric.FIRST_RESPONSE_MINUTES:
            replies = [
                m.created_at
                for m in outbound
                if m.contact_id == c.id and m.created_at >= c.created_at
            ]
            if not replies:
                continue
            value = (min(replies) - c.created_at) / timedelta(minutes=1)
        records.append((c.created_at, labels, value))
    return records


def compute_metric(
    query: MetricQuery,
    *,
    tenant_id: str,
    contacts: Iterable[Contact],
    bookings: Iterable[Booking],
    sms: Iterable[SmsMessage],
    tasks: Iterable[Task],
) -> list[MetricRow]:
    """Compute ``query`` over one location's records."""
    tz = check_query(query)
    contact_list = list(contacts)
    booking_list = list(bookings)
    source_of = {c.id: c.source.value for c in contact_list}

    records: list[_Record]
    if query.metric in CONTACT_METRICS:
        records = _contact_records(query, contact_list, booking_list, list(sms))
    elif query.metric in BOOKING_STATUSES:
        statuses = BOOKING_STATUSES[query.metric]
        records = []
        for b in booking_list:
            source = source_of.get(b.contact_id, "")
            if statuses is not None and b.status not in statuses:
                continue
            if (query.sources and source not in query.sources) or (
                query.service_types and b.service_type not in query.service_types
            ):
                continue
            labels = {Dimension.SOURCE: source, Dimension.SERVICE_TYPE: b.service_type}
            value = (
                float(b.status is BookingStatus.NO_SHOW)
                if query.metric is Metric.NO_SHOW_RATE
                else 1.0
            )
            records.append((b.starts_at, labels, value))
    elif query.metric in _SMS_DIRECTION:
        direction = _SMS_DIRECTION[query.metric]
        records = [(m.created_at, {}, 1.0) for m in sms if m.direction is direction]
    else:
        open_statuses = {TaskStatus.OPEN, TaskStatus.IN_PROGRESS}
        records = [(t.created_at, {}, 1.0) for t in tasks if t.status in open_statuses]

    groups: dict[tuple[str, ...], list[Any]] = {}
    for when, labels, value in records:
        if not query.start <= when < query.end:
            continue
        key = tuple(
            bucket(when, d, tz)
            if d in TIME_DIMENSIONS
            else tenant_id
            if d is Dimension.LOCATION
            else labels[d]
            for d in query.dimensions
        )
        groups.setdefault(key, []).append(value)
    return sort_rows(
        [row for key, values in groups.items() for row in _rows(query, key, values)],
        query.dimensions,
    )


def _rows(query: MetricQuery, key: tuple[str, ...], values: list[Any]) -> list[MetricRow]:
    keys: dict[str, Any] = {d.value: label for d, label in zip(query.dimensions, key, strict=True)}
    n = len(values)
    if query.metric is Metric.FUNNEL:
        totals = [sum(v[i] for v in values) for i in range(len(FunnelStage))]
        return [
            MetricRow(keys={**keys, "stage": stage.value}, value=float(total), records=n)
            for stage, total in zip(FunnelStage, totals, strict=True)
        ]
    if query.metric is Metric.FIRST_RESPONSE_MINUTES:
        value = float(statistics.median(values))
    elif query.metric in (Metric.AVG_WARMNESS, Metric.NO_SHOW_RATE):
        value = float(sum(values)) / n
    else:
        value = float(sum(values))
    return [MetricRow(keys=keys, value=value, records=n)]


def sort_rows(rows: Sequence[MetricRow], dimensions: Sequence[Dimension]) -> list[MetricRow]:
    """Rows by their labels in dimension order, then funnel stage (as gateways return them)."""
    return sorted(
        rows,
        key=lambda r: (
            tuple(str(r.keys[d.value]) for d in dimensions),
            _STAGE_ORDER.get(r.keys.get("stage", ""), -1),
        ),
    )


__all__ = [
    "BOOKING_STATUSES",
    "CONTACT_METRICS",
    "NON_ADDITIVE",
    "TIME_DIMENSIONS",
    "WEEKDAYS",
    "allowed_dimensions",
    "bucket",
    "check_dimensions",
    "check_query",
    "compute_metric",
    "sort_rows",
    "utc_offsets",
]
