"""attrs validators and converters shared by the entities.

Validators raise :class:`ValidationError` with the attribute's name, so a bad
field is always named; converters only normalise and never reject.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import attrs

from crm_domain.errors import ValidationError
from crm_domain.values import parse_email, parse_phone, parse_warmness, require_aware


def text(max_length: int, *, allow_empty: bool = False) -> Any:
    """Validator: a string of at most ``max_length`` characters (non-blank unless allowed)."""

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str):
            raise ValidationError(attribute.name, "must be a string")
        if not allow_empty and not value.strip():
            raise ValidationError(attribute.name, "must not be empty")
        if len(value) > max_length:
            raise ValidationError(attribute.name, f"must be at most {max_length} characters")
        if "\x00" in value:
            raise ValidationError(attribute.name, "must not contain NUL characters")

    return check


def optional_text(max_length: int) -> Any:
    """Validator: ``None`` or a string of at most ``max_length`` characters."""
    inner = text(max_length, allow_empty=True)

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            inner(instance, attribute, value)

    return check


def utc(value: datetime) -> datetime:
    """Converter: an aware datetime becomes the same instant in UTC.

    The one timezone rule of the library (and so of the API): every time an
    entity holds — and so every time a gateway or a service returns — is UTC,
    whatever offset it was given with, so create, get, list and update agree on
    every gateway.  A location's timezone is for bucketing reports and display
    only.  Anything else is left as it is for the validator to refuse.
    """
    if isinstance(value, datetime) and value.tzinfo is not UTC and value.utcoffset() is not None:
        try:
            return value.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 shifted past the range: the validator says so
            return value
    return value


def optional_utc(value: datetime | None) -> datetime | None:
    """Converter: :func:`utc`, with ``None`` kept."""
    return None if value is None else utc(value)


def aware(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Validator: an aware datetime, in UTC (see :func:`utc`)."""
    moment = require_aware(value, field=attribute.name)
    if moment.utcoffset() != _ZERO:
        # Only a moment at the very edge of the calendar fails to convert.
        raise ValidationError(attribute.name, "is out of the supported range of dates")


def optional_aware(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Validator: ``None`` or an aware datetime, in UTC."""
    if value is not None:
        aware(instance, attribute, value)


_ZERO = timedelta(0)


def email_or_none(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Validator: ``None`` or an already-normalised email address."""
    if value is not None and parse_email(value, field=attribute.name) != value:
        raise ValidationError(attribute.name, "must be normalised (use Email(...).value)")


def phone_or_none(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Validator: ``None`` or a phone number in E.164."""
    if value is not None and parse_phone(value, field=attribute.name) != value:
        raise ValidationError(attribute.name, "must be in E.164, e.g. +61412345678")


def warmness(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Validator: an integer 0–100."""
    parse_warmness(value, field=attribute.name)


def non_negative(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Validator: an integer ≥ 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(attribute.name, "must be a non-negative integer")


E = TypeVar("E", bound=enum.Enum)


def coerce_enum(kind: type[E], value: object, field: str) -> E:
    """Turn a string into the ``kind`` member, or raise ``ValidationError`` naming ``field``."""
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise ValidationError(field, f"{value!r} is not one of: {allowed}") from None


def str_tuple(value: Iterable[str] | None) -> tuple[str, ...]:
    """Converter: any iterable of strings becomes a tuple (``None`` becomes empty)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def tags(value: Iterable[str] | None) -> tuple[str, ...]:
    """Converter: tags are trimmed, lower-cased, de-duplicated and sorted."""
    return tuple(sorted({t.strip().lower() for t in str_tuple(value) if t.strip()}))


def tag_rules(_instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    """Validator: at most 50 tags of at most 50 characters each."""
    if len(value) > 50:
        raise ValidationError(attribute.name, "at most 50 tags")
    for tag in value:
        if len(tag) > 50 or not isinstance(tag, str):
            raise ValidationError(attribute.name, f"tag {tag[:20]!r}… is longer than 50 characters")


def frozen_mapping(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """Converter: copy a mapping so an entity never shares mutable state with its caller."""
    return dict(value or {})


def json_scalars(_instance: object, attribute: attrs.Attribute[Any], value: dict[str, Any]) -> None:
    """Validator: a flat mapping of string keys to JSON scalars."""
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValidationError(attribute.name, "keys must be strings")
        if item is not None and not isinstance(item, str | int | float | bool):
            raise ValidationError(f"{attribute.name}.{key}", "must be a string, number or bool")
