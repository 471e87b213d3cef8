"""A clinic location — the unit of tenancy."""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from typing import Any

import attrs

from crm_domain.entities._fields import aware, non_negative, optional_text, text, utc
from crm_domain.errors import ValidationError
from crm_domain.values import parse_code

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _hhmm(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ValidationError(attribute.name, "must be a 24-hour time HH:MM")


def _weekday(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 6:
        raise ValidationError(attribute.name, "must be 0 (Monday) to 6 (Sunday)")


def _closes_after_opens(instance: OpeningHours, _a: object, value: str) -> None:
    _hhmm(instance, attrs.fields(OpeningHours).closes, value)
    if value <= instance.opens:
        raise ValidationError("closes", "must be after opens")


@attrs.frozen(slots=True, kw_only=True)
class OpeningHours:
    """One weekday's opening hours, in the location's own timezone."""

    weekday: int = attrs.field(validator=_weekday)
    opens: str = attrs.field(validator=_hhmm)
    closes: str = attrs.field(validator=_closes_after_opens)


def _default_hours() -> tuple[OpeningHours, ...]:
    return tuple(OpeningHours(weekday=d, opens="08:00", closes="17:00") for d in range(5))


def _timezone(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(attribute.name, "must be an IANA timezone such as Australia/Sydney")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(attribute.name, f"unknown timezone {value!r}") from None


@attrs.frozen(slots=True, kw_only=True)
class LocationSettings:
    """Per-location operating settings."""

    operating_hours: tuple[OpeningHours, ...] = attrs.field(factory=_default_hours, converter=tuple)
    #: Minutes kept free between two bookings (scanner cleaning, patient change).
    booking_buffer_minutes: int = attrs.field(default=15, validator=non_negative)
    #: How long PHI is kept; seven years by default (Australian health-record practice).
    retention_days: int = attrs.field(default=2555, validator=non_negative)
    #: Whether this location's AI provider is covered by a BAA and may see PHI.
    ai_phi_allowed: bool = False


@attrs.frozen(slots=True, kw_only=True)
class Location:
    """A clinic location. Its ``id`` is the ``tenant_id`` of everything it owns."""

    id: str = attrs.field(validator=text(64))
    code: str = attrs.field(validator=lambda _i, a, v: parse_code(v, field=a.name))
    name: str = attrs.field(validator=text(200))
    timezone: str = attrs.field(validator=_timezone)
    address: str | None = attrs.field(default=None, validator=optional_text(500))
    is_active: bool = True
    settings: LocationSettings = attrs.field(factory=LocationSettings)
    created_at: datetime = attrs.field(converter=utc, validator=aware)

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        """The location's timezone object."""
        return zoneinfo.ZoneInfo(self.timezone)
