"""Value objects that validate at construction.

Each raises :class:`~crm_domain.errors.ValidationError` naming the field, so
nothing half-valid ever reaches an entity or a store.  The ``parse_*`` helpers
return the normalised primitive that entities store.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any

import attrs
import email_validator
import netaddr
import phonenumbers

from crm_domain.errors import ValidationError

#: Region assumed for phone numbers written without a country code.
DEFAULT_PHONE_REGION = "AU"


def parse_email(value: object, *, field: str = "email") -> str:
    """Return the normalised form of an email address (domain lower-cased)."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty email address")
    try:
        info = email_validator.validate_email(
            value.strip(), check_deliverability=False, allow_smtputf8=True
        )
    except email_validator.EmailNotValidError as exc:
        raise ValidationError(field, f"not a valid email address ({exc})") from None
    # Local parts are case-sensitive by RFC but not by any mail host a clinic uses;
    # lower-casing makes duplicate detection work.
    return str(info.normalized).lower()


def parse_phone(value: object, *, field: str = "phone", region: str = DEFAULT_PHONE_REGION) -> str:
    """Return a phone number in E.164; national numbers are read in ``region``."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty phone number")
    try:
        number = phonenumbers.parse(value.strip(), region)
    except phonenumbers.NumberParseException:
        raise ValidationError(field, f"not a phone number: {value!r}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(field, f"not a valid phone number: {value!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_cidr(value: object, *, field: str = "cidr") -> str:
    """Return the canonical text of an IPv4 or IPv6 network.

    A bare address becomes a host network (/32 or /128).  Host bits set is an
    error that suggests the network address, since ``10.0.0.5/24`` is almost
    always a typo for ``10.0.0.0/24`` or ``10.0.0.5/32``.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a CIDR such as 203.0.113.0/24 or 2001:db8::/32")
    text = value.strip()
    try:
        network = netaddr.IPNetwork(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValidationError(field, f"not a CIDR: {text!r}") from None
    if "/" in text and network.ip != network.network:
        raise ValidationError(
            field,
            f"{text} has host bits set; did you mean the network {network.cidr} "
            f"or the single host {network.ip}/{32 if network.version == 4 else 128}?",
        )
    # The stdlib's text is the canonical form: netaddr writes IPv4-mapped IPv6
    # networks as ``::ffff:0.0.0.0/96`` where ipaddress (and PostgreSQL) write ``::ffff:0:0/96``.
    return str(ipaddress.ip_network(str(network.cidr)))


def cidr_version(cidr: str) -> int:
    """Return 4 or 6 for a canonical CIDR produced by :func:`parse_cidr`."""
    return 6 if ":" in cidr else 4


def parse_warmness(value: Any, *, field: str = "warmness") -> int:
    """Return a warmness score, an integer from 0 (cold) to 100 (ready to book)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be an integer from 0 to 100")
    if not 0 <= value <= 100:
        raise ValidationError(field, f"must be from 0 to 100, got {value}")
    return value


def require_aware(value: object, *, field: str) -> datetime:
    """Refuse naive datetimes: a clinic's times are meaningless without an offset."""
    if not isinstance(value, datetime):
        raise ValidationError(field, "must be a datetime with a UTC offset")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "must include a UTC offset (naive times are ambiguous)")
    return value


_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")


def parse_code(value: object, *, field: str = "code") -> str:
    """Return a location code: lower-case letters, digits and hyphens, 1–32 long."""
    if not isinstance(value, str) or not _SLUG.match(value):
        raise ValidationError(field, "must be 1-32 lower-case letters, digits or hyphens")
    return value


@attrs.frozen(slots=True)
class Email:
    """A normalised email address."""

    value: str = attrs.field(converter=parse_email)

    def __str__(self) -> str:
        return self.value


@attrs.frozen(slots=True)
class Phone:
    """A phone number in E.164 (``+61412345678``)."""

    value: str = attrs.field(converter=parse_phone)

    def __str__(self) -> str:
        return self.value


@attrs.frozen(slots=True)
class Cidr:
    """An IPv4 or IPv6 network in canonical CIDR notation."""

    value: str = attrs.field(converter=parse_cidr)

    @property
    def version(self) -> int:
        """4 or 6."""
        return cidr_version(self.value)

    def __str__(self) -> str:
        return self.value


@attrs.frozen(slots=True)
class Warmness:
    """A lead's warmness, 0–100, with the band a receptionist reads."""

    value: int = attrs.field(validator=lambda _i, _a, v: parse_warmness(v))

    @property
    def band(self) -> str:
        """``cold`` below 40, ``warm`` below 70, else ``hot``."""
        return warmness_band(self.value)


def warmness_band(score: int) -> str:
    """Return the band of a warmness score: cold (<40), warm (<70) or hot."""
    if score < 40:
        return "cold"
    if score < 70:
        return "warm"
    return "hot"


def _check_range(instance: TimeRange, _attribute: Any, end: datetime) -> None:
    require_aware(instance.start, field="start")
    require_aware(end, field="end")
    if end <= instance.start:
        raise ValidationError("end", "must be after start")


@attrs.frozen(slots=True)
class TimeRange:
    """A half-open interval ``[start, end)`` of aware datetimes."""

    start: datetime
    end: datetime = attrs.field(validator=_check_range)

    def overlaps(self, other: TimeRange) -> bool:
        """True when the two intervals share any instant."""
        return self.start < other.end and other.start < self.end


__all__ = [
    "DEFAULT_PHONE_REGION",
    "Cidr",
    "Email",
    "Phone",
    "TimeRange",
    "Warmness",
    "cidr_version",
    "parse_cidr",
    "parse_code",
    "parse_email",
    "parse_phone",
    "parse_warmness",
    "require_aware",
    "warmness_band",
]
