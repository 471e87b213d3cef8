"""Staff users and their memberships at locations."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

import attrs

from crm_domain.entities._fields import (
    aware,
    coerce_enum,
    email_or_none,
    optional_aware,
    optional_text,
    optional_utc,
    text,
    utc,
)


class Role(enum.StrEnum):
    """A staff role at one location."""

    ADMIN = "admin"
    DOCTOR = "doctor"
    RECEPTIONIST = "receptionist"
    READONLY = "readonly"


def _to_effect(value: object) -> Effect:
    return coerce_enum(Effect, value, "effect")


def _to_role(value: object) -> Role:
    return coerce_enum(Role, value, "role")


@attrs.frozen(slots=True, kw_only=True)
class StaffUser:
    """A person who signs in to the CRM (never a patient)."""

    id: str = attrs.field(validator=text(64))
    email: str = attrs.field(validator=email_or_none)
    name: str = attrs.field(default="", validator=text(200, allow_empty=True))
    is_active: bool = True
    #: Google account subject, bound at first Google sign-in.
    google_sub: str | None = attrs.field(default=None, validator=optional_text(255))
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    last_login_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )


class Effect(enum.StrEnum):
    """Whether a custom permission adds or removes a grant."""

    ALLOW = "allow"
    DENY = "deny"


@attrs.frozen(slots=True, kw_only=True)
class PermissionOverride:
    """One grant added to or removed from a membership's role, e.g. ``deny contacts:delete``."""

    resource: str = attrs.field(validator=text(64))
    action: str = attrs.field(validator=text(64))
    effect: Effect = attrs.field(default=Effect.ALLOW, converter=_to_effect)


def _overrides(value: Iterable[PermissionOverride]) -> tuple[PermissionOverride, ...]:
    # A typed converter (not bare ``tuple``) so mypy sees the __init__ parameter's type.
    return tuple(value)


@attrs.frozen(slots=True, kw_only=True)
class Membership:
    """A user's role at one location."""

    id: str = attrs.field(validator=text(64))
    user_id: str = attrs.field(validator=text(64))
    location_id: str = attrs.field(validator=text(64))
    role: Role = attrs.field(converter=_to_role)
    custom_permissions: tuple[PermissionOverride, ...] = attrs.field(
        default=(), converter=_overrides
    )
    is_active: bool = True
    created_at: datetime = attrs.field(converter=utc, validator=aware)
