"""IP allowlist: IPv4, IPv6, mapped addresses, zones, bad input."""

from __future__ import annotations

from typing import cast

import pytest

from crm_domain.errors import ValidationError
from crm_domain.policies import IpAllowlist


def test_empty_allowlist_allows_nobody() -> None:
    empty = IpAllowlist.from_cidrs([])
    assert not empty
    assert not empty.allows("127.0.0.1")
    assert not empty.allows("::1")
    assert not IpAllowlist.empty().allows("10.0.0.1")


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("203.0.113.0", True),
        ("203.0.113.255", True),
        ("203.0.114.0", False),
        ("203.0.112.255", False),
        ("127.0.0.1", True),
        ("127.255.255.255", True),
        ("128.0.0.0", False),
        ("::1", True),
        ("::2", False),
        ("2001:db8::1", True),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", True),
        ("2001:db9::", False),
        # IPv4-mapped IPv6 addresses match IPv4 rules.
        ("::ffff:203.0.113.5", True),
        ("::ffff:cb00:7105", True),
        ("::ffff:198.51.100.1", False),
        # Zone ids and brackets.
        ("fe80::1%eth0", True),
        ("[::1]", True),
        ("fe80::1%", True),
        # Garbage is refused, never raises.
        ("", False),
        ("not an ip", False),
        ("256.0.0.1", False),
        ("1.2.3", False),
        ("1.2.3.4/32", False),
        (":::", False),
        ("2001:db8::g", False),
        (" 127.0.0.1", False),
        ("127.0.0.1\x00", False),
    ],
)
def test_membership(ip: str, allowed: bool) -> None:
    allowlist = IpAllowlist.from_cidrs(
        ["203.0.113.0/24", "127.0.0.0/8", "::1/128", "2001:db8::/32", "fe80::/10"]
    )
    assert allowlist.allows(ip) is allowed


def test_non_string_is_not_allowed() -> None:
    allowlist = IpAllowlist.from_cidrs(["0.0.0.0/0", "::/0"])
    # Callers may pass junk from a header parser; it is refused, not raised on.
    assert allowlist.allows(cast("str", None)) is False
    assert allowlist.allows(cast("str", b"127.0.0.1")) is False


def test_ipv6_rule_in_mapped_range_applies_to_ipv4() -> None:
    allowlist = IpAllowlist.from_cidrs(["::ffff:10.0.0.0/104"])
    assert allowlist.allows("10.1.2.3")
    assert allowlist.allows("::ffff:10.1.2.3")
    assert not allowlist.allows("11.0.0.0")


def test_overlapping_and_adjacent_ranges_are_merged() -> None:
    allowlist = IpAllowlist.from_cidrs(
        ["10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25", "10.0.0.0/8", "192.168.0.0/16"]
    )
    assert allowlist.v4_starts == (0x0A000000, 0xC0A80000)
    assert allowlist.allows("10.255.255.255")
    assert not allowlist.allows("11.0.0.0")


def test_host_bits_set_is_an_error_suggesting_the_network() -> None:
    with pytest.raises(ValidationError) as caught:
        IpAllowlist.from_cidrs(["10.0.0.5/24"])
    assert caught.value.field == "cidr"
    assert "10.0.0.0/24" in caught.value.detail


def test_invalid_cidr_is_an_error_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        IpAllowlist.from_cidrs(["10.0.0.0/33"])
    assert caught.value.field == "cidr"


def test_bare_address_is_a_host_rule() -> None:
    allowlist = IpAllowlist.from_cidrs(["192.0.2.7", "2001:db8::7"])
    assert allowlist.allows("192.0.2.7")
    assert not allowlist.allows("192.0.2.8")
    assert allowlist.allows("2001:db8::7")
    assert not allowlist.allows("2001:db8::8")


def test_many_rules() -> None:
    cidrs = [f"10.{i // 256}.{i % 256}.0/25" for i in range(10_000)]
    allowlist = IpAllowlist.from_cidrs(cidrs)
    assert len(allowlist.v4_starts) == 10_000
    assert allowlist.allows("10.39.15.127")
    assert not allowlist.allows("10.39.15.128")
