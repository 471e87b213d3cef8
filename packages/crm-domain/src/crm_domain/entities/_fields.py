"""attrs validators and converters shared by the entities.

Validators raise :class:`ValidationError` with the attribute's name, so a bad
field is always named; converters only normalise and never reject.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
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


def aware(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Validator: an aware datetime."""
    require_aware(value, field=attribute.name)


def optional_aware(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Validator: ``None`` or an aware datetime."""
    if value is not None:
        require_aware(value, field=attribute.name)


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
