"""A scan booked for a contact, and its life cycle."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from crm_domain.entities._fields import (
    aware,
    coerce_enum,
    optional_aware,
    optional_text,
    optional_utc,
    text,
    utc,
)
from crm_domain.errors import Conflict, ValidationError
from crm_domain.values import TimeRange


class BookingStatus(enum.StrEnum):
    """Where a booking is in its life cycle."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


#: Statuses a booking can still move on from.
OPEN_STATUSES = frozenset({BookingStatus.PENDING, BookingStatus.CONFIRMED})


def _after_start(instance: Booking, _a: object, value: datetime) -> None:
    aware(instance, attrs.fields(Booking).ends_at, value)
    if value <= instance.starts_at:
        raise ValidationError("ends_at", "must be after starts_at")


def _to_status(value: object) -> BookingStatus:
    return coerce_enum(BookingStatus, value, "status")


@attrs.frozen(slots=True, kw_only=True)
class Booking:
    """An appointment for a scan at a location."""

    id: str = attrs.field(validator=text(64))
    tenant_id: str = attrs.field(validator=text(64))
    contact_id: str = attrs.field(validator=text(64))
    service_type: str = attrs.field(validator=text(100))
    starts_at: datetime = attrs.field(converter=utc, validator=aware)
    ends_at: datetime = attrs.field(converter=utc, validator=_after_start)
    status: BookingStatus = attrs.field(default=BookingStatus.PENDING, converter=_to_status)
    #: The sender's id (e.g. Wix booking id) for idempotent upserts; unique per location.
    external_id: str | None = attrs.field(default=None, validator=optional_text(255))
    source: str = attrs.field(default="manual", validator=text(50))
    notes: str | None = attrs.field(default=None, validator=optional_text(10_000))
    cancellation_reason: str | None = attrs.field(default=None, validator=optional_text(500))
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    updated_at: datetime = attrs.field(converter=utc, validator=aware)
    #: When the sender's newest applied change happened (its event time): an older
    #: event delivered late never overwrites it.
    external_updated_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )

    @property
    def time_range(self) -> TimeRange:
        """The booked interval."""
        return TimeRange(self.starts_at, self.ends_at)

    def _require_open(self, verb: str) -> None:
        if self.status not in OPEN_STATUSES:
            raise Conflict(f"cannot {verb} a booking that is {self.status.value}")

    def confirmed(self, now: datetime) -> Booking:
        """Return this booking confirmed by the patient."""
        self._require_open("confirm")
        return attrs.evolve(self, status=BookingStatus.CONFIRMED, updated_at=now)

    def cancelled(self, now: datetime, reason: str | None = None) -> Booking:
        """Return this booking cancelled."""
        self._require_open("cancel")
        return attrs.evolve(
            self, status=BookingStatus.CANCELLED, cancellation_reason=reason, updated_at=now
        )

    def rescheduled(self, when: TimeRange, now: datetime) -> Booking:
        """Return this booking moved to ``when``; it needs confirming again."""
        self._require_open("reschedule")
        return attrs.evolve(
            self,
            starts_at=when.start,
            ends_at=when.end,
            status=BookingStatus.PENDING,
            updated_at=now,
        )

    def marked_no_show(self, now: datetime) -> Booking:
        """Return this booking marked as a no-show; a cancelled booking never becomes one."""
        self._require_open("mark as no-show")
        if now < self.starts_at:
            raise Conflict("cannot mark a no-show before the booking starts")
        return attrs.evolve(self, status=BookingStatus.NO_SHOW, updated_at=now)

    def completed(self, now: datetime) -> Booking:
        """Return this booking marked as attended."""
        self._require_open("complete")
        return attrs.evolve(self, status=BookingStatus.COMPLETED, updated_at=now)
