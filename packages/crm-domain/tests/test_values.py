"""Value objects validate at construction and name the offending field."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_domain.errors import ValidationError
from crm_domain.values import (
    Cidr,
    Email,
    Phone,
    TimeRange,
    Warmness,
    parse_cidr,
    parse_code,
    parse_email,
    parse_phone,
    parse_warmness,
    warmness_band,
)


def test_email_is_normalised_for_duplicate_detection() -> None:
    assert Email("  Jane.Citizen@Example.COM ").value == "jane.citizen@example.com"


@pytest.mark.parametrize("bad", ["", "   ", "no-at-sign", "a@", "@b.com", "a b@c.com", 42])
def test_invalid_email_names_the_field(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_email(bad, field="contact.email")
    assert info.value.field == "contact.email"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("0412 345 678", "+61412345678"),  # Australian mobile, national format
        ("+61 2 9374 4000", "+61293744000"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 (415) 555-2671", "+14155552671"),
    ],
)
def test_phone_becomes_e164(raw: str, e164: str) -> None:
    assert Phone(raw).value == e164


@pytest.mark.parametrize("bad", ["", "123", "not a phone", "+61 1234", None])
def test_invalid_phone_is_refused(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_phone(bad)
    assert info.value.field == "phone"


def test_cidr_canonical_forms() -> None:
    assert Cidr("203.0.113.0/24").value == "203.0.113.0/24"
    assert Cidr("2001:DB8::/32").value == "2001:db8::/32"
    assert Cidr("::1").value == "::1/128"
    assert Cidr("10.1.2.3").value == "10.1.2.3/32"
    assert Cidr("2001:db8::/32").version == 6


def test_cidr_with_host_bits_suggests_the_network() -> None:
    with pytest.raises(ValidationError) as info:
        parse_cidr("10.0.0.5/24", field="cidr")
    assert info.value.field == "cidr"
    assert "10.0.0.0/24" in info.value.detail
    assert "10.0.0.5/32" in info.value.detail


@pytest.mark.parametrize("bad", ["", "10.0.0.0/33", "300.1.1.1", "2001:db8::/129", "hello"])
def test_invalid_cidr_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        parse_cidr(bad)


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_cidr_agrees_with_stdlib(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int
) -> None:
    prefix = min(prefix, address.max_prefixlen)
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert parse_cidr(str(network)) == str(network)


@given(st.integers())
def test_warmness_range(value: int) -> None:
    if 0 <= value <= 100:
        assert parse_warmness(value) == value
        assert Warmness(value).band == warmness_band(value)
    else:
        with pytest.raises(ValidationError):
            parse_warmness(value)


def test_warmness_refuses_bool_and_float() -> None:
    for bad in (True, 50.0, "50"):
        with pytest.raises(ValidationError):
            parse_warmness(bad)


def test_warmness_bands() -> None:
    assert [warmness_band(s) for s in (0, 39, 40, 69, 70, 100)] == [
        "cold",
        "cold",
        "warm",
        "warm",
        "hot",
        "hot",
    ]


def test_time_range_requires_aware_and_ordered() -> None:
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    with pytest.raises(ValidationError) as info:
        TimeRange(start, start)
    assert info.value.field == "end"
    with pytest.raises(ValidationError) as info:
        TimeRange(datetime(2026, 1, 5, 9), datetime(2026, 1, 5, 10))
    assert info.value.field == "start"
    sydney = timezone(timedelta(hours=11))
    a = TimeRange(start, start + timedelta(hours=1))
    b = TimeRange(datetime(2026, 1, 5, 20, 30, tzinfo=sydney), start + timedelta(hours=2))
    assert a.overlaps(b)  # 20:30+11:00 is 09:30 UTC
    assert not a.overlaps(TimeRange(a.end, a.end + timedelta(minutes=5)))


@pytest.mark.parametrize("code", ["sydney", "melbourne-cbd", "a", "x1"])
def test_location_codes(code: str) -> None:
    assert parse_code(code) == code


@pytest.mark.parametrize("code", ["", "Sydney", "-x", "x-", "has space", "a" * 33])
def test_bad_location_codes(code: str) -> None:
    with pytest.raises(ValidationError):
        parse_code(code)
