"""Reading settings (``CRM_*`` keys from a mapping) with errors that name the key."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

from crm_domain.errors import ValidationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def text(settings: Mapping[str, str], key: str, default: str | None = None) -> str | None:
    """A stripped value, or ``default`` when missing or blank."""
    raw = settings.get(key)
    if raw is None or not raw.strip():
        return default
    return raw.strip()


def required(settings: Mapping[str, str], key: str, why: str) -> str:
    """A value that must be set (``why`` says for what)."""
    value = text(settings, key)
    if value is None:
        raise ValidationError(key, f"is required {why}")
    return value


def flag(settings: Mapping[str, str], key: str, default: bool) -> bool:
    """A boolean written as true/false, yes/no, on/off or 1/0."""
    raw = text(settings, key)
    if raw is None:
        return default
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValidationError(key, f"must be true or false, not {raw!r}")


def number(settings: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    """A number within ``[low, high]``."""
    raw = text(settings, key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(key, f"must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise ValidationError(key, f"must be from {low:g} to {high:g}")
    return value


def integer(settings: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    """A whole number within ``[low, high]``."""
    value = number(settings, key, default, low, high)
    if value != int(value):
        raise ValidationError(key, "must be a whole number")
    return int(value)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url(settings: Mapping[str, str], key: str, default: str) -> str:
    """An http(s) base URL without a trailing slash.

    Plain ``http`` is accepted for loopback hosts only (local stand-ins in tests),
    so credentials never travel unencrypted to a real host.
    """
    url = (text(settings, key) or default).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError(key, f"must be an http(s) URL, not {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValidationError(key, "must use https (plain http only for a loopback host)")
    if parts.query or parts.fragment:
        raise ValidationError(key, "must not carry a query or a fragment")
    return url


__all__ = ["base_url", "flag", "integer", "is_loopback", "number", "required", "text"]
