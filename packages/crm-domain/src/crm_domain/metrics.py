"""The reference semantics of every report metric, in plain Python.

SQL gateways compute the same numbers with ``GROUP BY``; the conformance kit
checks them against a known data set.  The rules:

* a record counts when its *time column* lies in ``[start, end)``:
  contacts and tasks by ``created_at``, bookings by ``starts_at``, SMS by
  ``created_at``;
* ``new_contacts`` counts contacts; ``avg_warmness`` is the mean warmness of
  those contacts;
* ``bookings`` counts every booking whatever its status; ``completed``,
  ``no_shows`` and ``cancellations`` count bookings in that status;
* ``sms_inbound`` / ``sms_outbound`` count messages by direction;
* ``tasks_open`` counts tasks created in range whose status is ``open`` or
  ``in_progress``;
* ``day`` (``YYYY-MM-DD``), ``week`` (the ISO week's Monday, ``YYYY-MM-DD``) and
  ``month`` (``YYYY-MM``) bucket the time column in ``query.timezone``;
  ``source`` is the contact's source (for bookings, their contact's);
  ``service_type`` exists for booking metrics only; ``location`` is the bound
  location's id.  Asking for a dimension a metric does not have raises
  ``ValidationError('dimensions')``;
* only groups with at least one record produce a row (no zero rows, and no
  row at all when nothing matched); rows are sorted by their labels in
  dimension order; values are floats.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from crm_domain.entities import (
    Booking,
    BookingStatus,
    Contact,
    SmsDirection,
    SmsMessage,
    Task,
    TaskStatus,
)
from crm_domain.errors import ValidationError
from crm_domain.ports.analytics import Dimension, Metric, MetricQuery, MetricRow

_TIME = frozenset({Dimension.DAY, Dimension.WEEK, Dimension.MONTH})
_CONTACT_METRICS = frozenset({Metric.NEW_CONTACTS, Metric.AVG_WARMNESS})
_BOOKING_STATUS: dict[Metric, BookingStatus | None] = {
    Metric.BOOKINGS: None,
    Metric.COMPLETED: BookingStatus.COMPLETED,
    Metric.NO_SHOWS: BookingStatus.NO_SHOW,
    Metric.CANCELLATIONS: BookingStatus.CANCELLED,
}
_SMS_DIRECTION = {
    Metric.SMS_INBOUND: SmsDirection.INBOUND,
    Metric.SMS_OUTBOUND: SmsDirection.OUTBOUND,
}


def allowed_dimensions(metric: Metric) -> frozenset[Dimension]:
    """The dimensions ``metric`` can be grouped by."""
    allowed = set(_TIME) | {Dimension.LOCATION}
    if metric in _CONTACT_METRICS or metric in _BOOKING_STATUS:
        allowed.add(Dimension.SOURCE)
    if metric in _BOOKING_STATUS:
        allowed.add(Dimension.SERVICE_TYPE)
    return frozenset(allowed)


def bucket(when: datetime, dimension: Dimension, tz: zoneinfo.ZoneInfo) -> str:
    """The label of ``when``'s day, ISO week or month in ``tz``."""
    local = when.astimezone(tz)
    if dimension is Dimension.DAY:
        return local.strftime("%Y-%m-%d")
    if dimension is Dimension.WEEK:
        monday = local.date() - timedelta(days=local.weekday())
        return monday.isoformat()
    return local.strftime("%Y-%m")


def _timezone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError("timezone", f"unknown timezone {name!r}") from None


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
    allowed = allowed_dimensions(query.metric)
    for dimension in query.dimensions:
        if dimension not in allowed:
            raise ValidationError(
                "dimensions", f"{query.metric.value} cannot be grouped by {dimension.value}"
            )
    tz = _timezone(query.timezone)
    contact_list = list(contacts)
    source_of = {c.id: c.source.value for c in contact_list}

    records: list[tuple[datetime, dict[Dimension, str], float]] = []
    if query.metric in _CONTACT_METRICS:
        for c in contact_list:
            value = float(c.warmness) if query.metric is Metric.AVG_WARMNESS else 1.0
            records.append((c.created_at, {Dimension.SOURCE: c.source.value}, value))
    elif query.metric in _BOOKING_STATUS:
        status = _BOOKING_STATUS[query.metric]
        for b in bookings:
            if status is None or b.status is status:
                labels = {
                    Dimension.SOURCE: source_of.get(b.contact_id, ""),
                    Dimension.SERVICE_TYPE: b.service_type,
                }
                records.append((b.starts_at, labels, 1.0))
    elif query.metric in _SMS_DIRECTION:
        direction = _SMS_DIRECTION[query.metric]
        records.extend((m.created_at, {}, 1.0) for m in sms if m.direction is direction)
    else:
        open_statuses = {TaskStatus.OPEN, TaskStatus.IN_PROGRESS}
        records.extend((t.created_at, {}, 1.0) for t in tasks if t.status in open_statuses)

    groups: dict[tuple[str, ...], list[float]] = {}
    for when, labels, value in records:
        if not query.start <= when < query.end:
            continue
        key = tuple(
            bucket(when, d, tz)
            if d in _TIME
            else tenant_id
            if d is Dimension.LOCATION
            else labels[d]
            for d in query.dimensions
        )
        groups.setdefault(key, []).append(value)

    rows: list[MetricRow] = []
    for key in sorted(groups):
        values = groups[key]
        total = sum(values) / len(values) if query.metric is Metric.AVG_WARMNESS else sum(values)
        keys: dict[str, Any] = {
            d.value: label for d, label in zip(query.dimensions, key, strict=True)
        }
        rows.append(MetricRow(keys=keys, value=float(total)))
    return rows


def sort_rows(rows: Sequence[MetricRow], dimensions: Sequence[Dimension]) -> list[MetricRow]:
    """Rows ordered by their labels in dimension order (how every gateway returns them)."""
    return sorted(rows, key=lambda r: tuple(str(r.keys[d.value]) for d in dimensions))


__all__ = ["allowed_dimensions", "bucket", "compute_metric", "sort_rows"]
