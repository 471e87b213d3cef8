"""Entities guard their invariants; invalid input names the field and builds nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from crm_domain.entities import (
    Booking,
    BookingStatus,
    Contact,
    ContactSource,
    IpRule,
    Location,
    LocationSettings,
    OpeningHours,
    Session,
)
from crm_domain.errors import Conflict, ValidationError
from crm_domain.values import TimeRange

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def contact(**changes: object) -> Contact:
    fields: dict[str, Any] = {
        "id": "c1",
        "tenant_id": "loc1",
        "first_name": "Zoë",
        "email": "zoe@example.com",
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(changes)
    return Contact(**fields)


def booking(**changes: object) -> Booking:
    fields: dict[str, Any] = {
        "id": "b1",
        "tenant_id": "loc1",
        "contact_id": "c1",
        "service_type": "mri",
        "starts_at": NOW + timedelta(days=1),
        "ends_at": NOW + timedelta(days=1, minutes=45),
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(changes)
    return Booking(**fields)


def test_contact_defaults_and_normalised_tags() -> None:
    c = contact(tags=[" MRI ", "mri", "Knee"], source="meta_ad")
    assert c.tags == ("knee", "mri")
    assert c.source is ContactSource.META_AD
    assert c.warmness == 0
    assert c.full_name == "Zoë"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"email": None, "phone": None}, "email"),
        ({"first_name": ""}, "first_name"),
        ({"first_name": "x" * 101}, "first_name"),
        ({"warmness": 101}, "warmness"),
        ({"warmness": -1}, "warmness"),
        ({"source": "carrier_pigeon"}, "source"),
        ({"status": "???"}, "status"),
        ({"email": "Not-Normalised@Example.com"}, "email"),
        ({"phone": "0412345678"}, "phone"),
        ({"created_at": datetime(2026, 1, 1)}, "created_at"),
        ({"date_of_birth": datetime(1990, 1, 1, tzinfo=UTC)}, "date_of_birth"),
        ({"tags": ["x" * 51]}, "tags"),
        ({"notes": "a\x00b"}, "notes"),
    ],
)
def test_invalid_contact_names_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        contact(**changes)
    assert info.value.field == field


def test_contact_with_phone_only_and_birth_date() -> None:
    c = contact(email=None, phone="+61412345678", date_of_birth=date(1980, 2, 29))
    assert c.phone == "+61412345678"


def test_booking_lifecycle() -> None:
    b = booking()
    confirmed = b.confirmed(NOW)
    assert confirmed.status is BookingStatus.CONFIRMED
    moved = confirmed.rescheduled(
        TimeRange(NOW + timedelta(days=2), NOW + timedelta(days=2, hours=1)), NOW
    )
    assert moved.status is BookingStatus.PENDING  # must be confirmed again
    assert moved.starts_at == NOW + timedelta(days=2)
    done = moved.completed(NOW)
    assert done.status is BookingStatus.COMPLETED
    with pytest.raises(Conflict):
        done.cancelled(NOW)


def test_cancelled_booking_never_becomes_no_show() -> None:
    cancelled = booking().cancelled(NOW, reason="feeling better")
    assert cancelled.cancellation_reason == "feeling better"
    with pytest.raises(Conflict):
        cancelled.marked_no_show(NOW + timedelta(days=2))


def test_no_show_only_after_start() -> None:
    b = booking()
    with pytest.raises(Conflict):
        b.marked_no_show(NOW)
    assert b.marked_no_show(NOW + timedelta(days=1, minutes=5)).status is BookingStatus.NO_SHOW


def test_booking_end_after_start() -> None:
    with pytest.raises(ValidationError) as info:
        booking(ends_at=NOW + timedelta(days=1))
    assert info.value.field == "ends_at"


def test_times_are_normalised_to_utc_on_construction() -> None:
    plus_11 = timezone(timedelta(hours=11))
    starts = datetime(2026, 12, 1, 9, 0, tzinfo=plus_11)
    built = booking(starts_at=starts, ends_at=starts + timedelta(hours=1))
    assert built.starts_at.tzinfo is UTC and built.ends_at.tzinfo is UTC
    assert built.starts_at == starts  # the same instant
    assert built.starts_at.isoformat() == "2026-11-30T22:00:00+00:00"
    moved = attrs.evolve(built, updated_at=datetime(2026, 11, 25, 8, 0, tzinfo=plus_11))
    assert moved.updated_at.isoformat() == "2026-11-24T21:00:00+00:00"
    assert contact(consent_updated_at=starts).consent_updated_at == starts.astimezone(UTC)
    assert contact(consent_updated_at=None).consent_updated_at is None


def test_a_time_that_cannot_be_expressed_in_utc_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        contact(created_at=datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=11))))
    assert info.value.field == "created_at"
    with pytest.raises(ValidationError) as naive:
        contact(updated_at=datetime(2026, 1, 1))  # still refused, not converted
    assert naive.value.field == "updated_at"


def test_location_settings_validate() -> None:
    loc = Location(
        id="loc1", code="sydney", name="Sydney", timezone="Australia/Sydney", created_at=NOW
    )
    assert len(loc.settings.operating_hours) == 5
    assert loc.tz.key == "Australia/Sydney"
    with pytest.raises(ValidationError) as info:
        attrs.evolve(loc, timezone="Mars/Olympus")
    assert info.value.field == "timezone"
    with pytest.raises(ValidationError) as info:
        OpeningHours(weekday=1, opens="17:00", closes="08:00")
    assert info.value.field == "closes"
    with pytest.raises(ValidationError) as info:
        LocationSettings(booking_buffer_minutes=-5)
    assert info.value.field == "booking_buffer_minutes"


def test_ip_rule_requires_canonical_cidr() -> None:
    rule = IpRule(id="r", tenant_id="loc1", cidr="2001:db8::/32", created_at=NOW, created_by="me")
    assert rule.ip_version == 6
    with pytest.raises(ValidationError) as info:
        attrs.evolve(rule, cidr="10.0.0.1/8")
    assert info.value.field == "cidr"


def test_session_liveness() -> None:
    s = Session(
        id="jti",
        user_id="u",
        created_at=NOW,
        last_seen_at=NOW,
        expires_at=NOW + timedelta(hours=8),
    )
    idle = timedelta(minutes=15)
    assert s.is_live(NOW + timedelta(minutes=14), idle)
    assert not s.is_live(NOW + timedelta(minutes=16), idle)  # automatic logoff
    assert not attrs.evolve(s, revoked_at=NOW).is_live(NOW, idle)
    assert not s.is_live(NOW + timedelta(hours=9), timedelta(days=1))
