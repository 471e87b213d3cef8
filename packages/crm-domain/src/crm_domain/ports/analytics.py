"""Aggregate queries behind reports (the port's value types)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import attrs

from crm_domain.errors import ValidationError
from crm_domain.values import require_aware


class Metric(enum.StrEnum):
    """What a report can count or average. Only these; never free SQL."""

    NEW_CONTACTS = "new_contacts"  # contacts by created_at
    AVG_WARMNESS = "avg_warmness"  # of contacts created in range
    BOOKINGS = "bookings"  # bookings by starts_at
    COMPLETED = "completed"  # bookings completed
    NO_SHOWS = "no_shows"
    CANCELLATIONS = "cancellations"
    SMS_INBOUND = "sms_inbound"  # by created_at
    SMS_OUTBOUND = "sms_outbound"
    TASKS_OPEN = "tasks_open"  # tasks created in range and still open
    NO_SHOW_RATE = "no_show_rate"  # no-shows / (completed + no-shows), by starts_at
    FUNNEL = "funnel"  # contacts created in range reaching lead/contacted/booked/attended
    FIRST_RESPONSE_MINUTES = "first_response_minutes"  # median, creation → first outbound SMS


class Dimension(enum.StrEnum):
    """How a report groups rows. ``location`` is resolved by the service across tenants."""

    DAY = "day"
    WEEK = "week"  # ISO week, labelled by its Monday (YYYY-MM-DD)
    MONTH = "month"  # YYYY-MM
    SOURCE = "source"  # contact source (contact metrics, and bookings via their contact)
    SERVICE_TYPE = "service_type"  # booking metrics only
    LOCATION = "location"  # gateways label it with the bound location id
    WARMNESS_BAND = "warmness_band"  # cold (<40), warm (<70), hot: contact metrics only
    WEEKDAY = "weekday"  # local day of the week, ``1-Mon`` … ``7-Sun`` (so labels sort)
    HOUR = "hour"  # local hour of the day, ``00`` … ``23``


class FunnelStage(enum.StrEnum):
    """The steps of the conversion funnel, in order (the ``stage`` key of funnel rows)."""

    LEAD = "lead"  # created in the range
    CONTACTED = "contacted"  # status past ``new``, or an outbound SMS, or a booking
    BOOKED = "booked"  # at least one booking (of the filtered service types)
    ATTENDED = "attended"  # at least one completed booking (of those service types)


def to_dimensions(value: Iterable[Dimension | str]) -> tuple[Dimension, ...]:
    """Dimensions from names (``ValidationError('dimensions')`` for an unknown one)."""
    try:
        return tuple(Dimension(d) for d in value)
    except ValueError as exc:
        raise ValidationError("dimensions", str(exc)) from None


def to_metric(value: Metric | str) -> Metric:
    """A metric from its name (``ValidationError('metric')`` for an unknown one)."""
    try:
        return Metric(value)
    except ValueError:
        raise ValidationError("metric", f"{value!r} is not a known metric") from None


def _labels(value: Iterable[str], field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    labels = tuple(dict.fromkeys(str(v) for v in value))
    if len(labels) > 20 or any(not 0 < len(v) <= 100 for v in labels):
        raise ValidationError(field, "at most 20 values of 1-100 characters")
    return labels


def _service_types(value: Iterable[str]) -> tuple[str, ...]:
    return _labels(value, "service_type")


def _sources(value: Iterable[str]) -> tuple[str, ...]:
    return _labels(value, "source")


def _range_ok(instance: MetricQuery, _a: object, value: datetime) -> None:
    require_aware(instance.start, field="start")
    require_aware(value, field="end")
    if value <= instance.start:
        raise ValidationError("end", "must be after start")


@attrs.frozen(slots=True, kw_only=True)
class MetricQuery:
    """One metric over ``[start, end)`` grouped by at most two dimensions.

    Day/week/month buckets are computed in ``timezone`` (the location's).
    ``service_types`` and ``sources`` keep only records with one of those
    labels (empty: no filter); see :mod:`crm_domain.metrics` for which
    metrics have them.
    """

    metric: Metric = attrs.field(converter=to_metric)
    start: datetime
    end: datetime = attrs.field(validator=_range_ok)
    dimensions: tuple[Dimension, ...] = attrs.field(default=(), converter=to_dimensions)
    timezone: str = "UTC"
    service_types: tuple[str, ...] = attrs.field(default=(), converter=_service_types)
    sources: tuple[str, ...] = attrs.field(default=(), converter=_sources)

    @dimensions.validator
    def _dims(self, _a: object, value: tuple[Dimension, ...]) -> None:
        if len(value) > 2:
            raise ValidationError("dimensions", "at most two")
        if len(set(value)) != len(value):
            raise ValidationError("dimensions", "must not repeat")


@attrs.frozen(slots=True, kw_only=True)
class MetricRow:
    """One group's value: ``keys`` maps each dimension to its label (str).

    ``records`` is how many records stand behind ``value`` (the denominator of
    an average or a rate, the contacts behind a median), so rows of several
    locations can be merged exactly where the metric allows it.  Funnel rows
    also carry the key ``stage`` (a :class:`FunnelStage` value).
    """

    keys: dict[str, Any] = attrs.field(factory=dict, hash=False)
    value: float
    records: int = 0


__all__ = [
    "Dimension",
    "FunnelStage",
    "Metric",
    "MetricQuery",
    "MetricRow",
    "to_dimensions",
    "to_metric",
]
