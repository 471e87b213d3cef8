"""Commands: what a caller asks a use case to do, named in the imperative.

Commands carry raw input; the service validates it while building entities, so
an invalid command raises :class:`~crm_domain.errors.ValidationError` naming the
field and stores nothing.  Update commands are partial: a field left at
:data:`UNSET` is not changed (``None`` clears an optional field).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

import attrs

from crm_domain.entities import LocationSettings, PermissionOverride


class Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: "Leave this field as it is" in an update command.
UNSET = Unset.UNSET


def changes(command: Any, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of an update command that are set (not :data:`UNSET`)."""
    skip = set(exclude)
    return {
        field.name: getattr(command, field.name)
        for field in attrs.fields(type(command))
        if field.name not in skip and getattr(command, field.name) is not UNSET
    }


def _tuple(value: Iterable[str] | None) -> tuple[str, ...]:
    return () if value is None else tuple(value)


def _overrides(value: Iterable[PermissionOverride]) -> tuple[PermissionOverride, ...]:
    return tuple(value)


def _mapping(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


# --- contacts ------------------------------------------------------------------


@attrs.frozen(slots=True, kw_only=True)
class CreateContact:
    """Create a lead or patient at the caller's location.

    ``email`` and ``phone`` are normalised (lower-cased address, E.164 number);
    at least one is required.  ``warmness`` ``None`` lets the AI provider, if
    any, score the lead.  A second contact with the same email at the location
    is refused (``Conflict``) unless ``allow_duplicate_email``.
    """

    first_name: str
    last_name: str = ""
    email: str | None = None
    phone: str | None = None
    source: str = "other"
    status: str = "new"
    warmness: int | None = None
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    email_opt_in: bool = False
    sms_opt_in: bool = False
    service_interest: str | None = None
    date_of_birth: date | None = None
    notes: str | None = None
    allow_duplicate_email: bool = False


@attrs.frozen(slots=True, kw_only=True)
class UpdateContact:
    """Change some fields of a contact; consent changes stamp ``consent_updated_at``."""

    contact_id: str
    first_name: str | Unset = UNSET
    last_name: str | Unset = UNSET
    email: str | Unset | None = UNSET
    phone: str | Unset | None = UNSET
    source: str | Unset = UNSET
    status: str | Unset = UNSET
    warmness: int | Unset = UNSET
    warmness_reasons: tuple[str, ...] | Unset = UNSET
    tags: tuple[str, ...] | Unset = UNSET
    email_opt_in: bool | Unset = UNSET
    sms_opt_in: bool | Unset = UNSET
    service_interest: str | Unset | None = UNSET
    date_of_birth: date | Unset | None = UNSET
    notes: str | Unset | None = UNSET


@attrs.frozen(slots=True, kw_only=True)
class AddTouchpoint:
    """Record an interaction with a contact (``occurred_at`` defaults to now)."""

    contact_id: str
    kind: str
    channel: str = "other"
    occurred_at: datetime | None = None
    campaign_id: str | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_mapping, hash=False)


# --- bookings ------------------------------------------------------------------


@attrs.frozen(slots=True, kw_only=True)
class CreateBooking:
    """Book a scan for a contact of the caller's location."""

    contact_id: str
    service_type: str
    starts_at: datetime
    ends_at: datetime
    notes: str | None = None
    source: str = "manual"
    external_id: str | None = None


@attrs.frozen(slots=True, kw_only=True)
class RescheduleBooking:
    """Move an open booking; it then needs confirming again."""

    booking_id: str
    starts_at: datetime
    ends_at: datetime


@attrs.frozen(slots=True, kw_only=True)
class CancelBooking:
    """Cancel an open booking."""

    booking_id: str
    reason: str | None = None


@attrs.frozen(slots=True, kw_only=True)
class UpsertExternalBooking:
    """Create or update the booking a sender (Wix, ManyChat) knows as ``external_id``.

    Idempotent: the same command twice leaves one booking and emits one event;
    with ``occurred_at``, an older command than the last applied is ignored.
    ``status`` may be ``confirmed``, ``cancelled``, ``completed`` or ``no_show``
    to move the booking there; ``None`` or ``pending`` keep it as it is.
    """

    external_id: str
    contact_id: str
    service_type: str
    starts_at: datetime
    ends_at: datetime
    status: str | None = None
    notes: str | None = None
    source: str = "webhook"
    #: When the sender made this change (its event time).  A command older than
    #: the newest one applied to the booking changes nothing (out-of-order delivery).
    occurred_at: datetime | None = None


# --- tasks ---------------------------------------------------------------------


@attrs.frozen(slots=True, kw_only=True)
class CreateTask:
    """Create a to-do, optionally about a contact or booking of the location.

    ``priority`` ``None`` lets the AI provider, if any, suggest one (``normal``
    otherwise).
    """

    title: str
    description: str | None = None
    contact_id: str | None = None
    booking_id: str | None = None
    assignee_id: str | None = None
    priority: str | None = None
    due_at: datetime | None = None


@attrs.frozen(slots=True, kw_only=True)
class UpdateTask:
    """Change some fields of a task."""

    task_id: str
    title: str | Unset = UNSET
    description: str | Unset | None = UNSET
    contact_id: str | Unset | None = UNSET
    booking_id: str | Unset | None = UNSET
    assignee_id: str | Unset | None = UNSET
    status: str | Unset = UNSET
    priority: str | Unset = UNSET
    due_at: datetime | Unset | None = UNSET


# --- access ----------------------------------------------------------------------


@attrs.frozen(slots=True, kw_only=True)
class CreateLocation:
    """Open a clinic location (nobody can reach it over HTTP until an IP rule exists)."""

    code: str
    name: str
    timezone: str
    address: str | None = None
    settings: LocationSettings = attrs.field(factory=LocationSettings)


@attrs.frozen(slots=True, kw_only=True)
class UpdateLocation:
    """Change some fields of the caller's location."""

    name: str | Unset = UNSET
    timezone: str | Unset = UNSET
    address: str | Unset | None = UNSET
    is_active: bool | Unset = UNSET
    settings: LocationSettings | Unset = UNSET


@attrs.frozen(slots=True, kw_only=True)
class AddUser:
    """Give a person a role at the caller's location, creating the user if new.

    An existing membership at the location is updated (role, custom permissions)
    and re-activated.
    """

    email: str
    role: str
    name: str = ""
    custom_permissions: tuple[PermissionOverride, ...] = attrs.field(
        default=(), converter=_overrides
    )


@attrs.frozen(slots=True, kw_only=True)
class AllowIp:
    """Add a network to the caller's location's IP allowlist."""

    cidr: str
    description: str | None = None


__all__ = [
    "UNSET",
    "AddTouchpoint",
    "AddUser",
    "AllowIp",
    "CancelBooking",
    "CreateBooking",
    "CreateContact",
    "CreateLocation",
    "CreateTask",
    "RescheduleBooking",
    "Unset",
    "UpdateContact",
    "UpdateLocation",
    "UpdateTask",
    "UpsertExternalBooking",
    "changes",
]
