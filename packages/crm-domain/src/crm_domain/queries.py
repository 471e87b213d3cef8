"""List queries: filters, page size and cursor for every repository.

Each filter field declares how it applies through :func:`filter_spec`
metadata, so every gateway interprets queries the same way: SQL gateways turn
the specs into ``WHERE`` clauses, and key-value gateways use :func:`matches`.
All lists are ordered by ``id`` descending (ids are time-sortable, so newest
first) and paginated by keyset on ``id``; the cursor is opaque to callers.

Queries validate their values as entities do, so a bad filter is a
:class:`~crm_domain.errors.ValidationError` naming the field when the query is
built, never a ``TypeError`` deep in a gateway: times must be aware (a naive
time cannot be compared with stored instants), a filter on an enum attribute
takes one of the enum's values (a typo would silently match nothing), and
text filters are strings without NUL characters (which PostgreSQL refuses).
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import attrs

from crm_domain.entities import (
    AuditOutcome,
    BookingStatus,
    CampaignStatus,
    ContactSource,
    ContactStatus,
    DeliveryStatus,
    Role,
    SmsDirection,
    SmsIntent,
    SmsStatus,
    SuppressionChannel,
    SuppressionReason,
    TaskPriority,
    TaskStatus,
    TouchpointKind,
)
from crm_domain.errors import ValidationError
from crm_domain.values import require_aware

#: Largest page any list returns.
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class Op(enum.StrEnum):
    """How a filter field compares with an entity attribute."""

    EQ = "eq"  # attribute == value
    GTE = "gte"  # attribute >= value (attribute None never matches)
    LT = "lt"  # attribute < value (attribute None never matches)
    HAS = "has"  # value in attribute (a tuple, e.g. tags)
    SEARCH = "search"  # case-insensitive substring of any of ``columns``


@attrs.frozen(slots=True)
class FilterSpec:
    """How one query field filters: ``op`` against entity attribute(s) ``columns``."""

    op: Op
    columns: tuple[str, ...]


def filter_spec(op: Op, *columns: str) -> dict[str, FilterSpec]:
    """attrs field metadata declaring a filter (``columns`` default to the field's name)."""
    return {"filter": FilterSpec(op, columns)}


def _limit(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise ValidationError("limit", f"must be from 1 to {MAX_LIMIT}")


def encode_cursor(last_id: str) -> str:
    """Make an opaque cursor from the id of a page's last item."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Return the id a cursor points after, or raise ``ValidationError('cursor')``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise ValidationError("cursor", "is not a cursor this server issued") from None
    if not value or len(value) > 64:
        raise ValidationError("cursor", "is not a cursor this server issued")
    return value


def _cursor(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        if not isinstance(value, str):
            raise ValidationError("cursor", "must be a string")
        decode_cursor(value)


@attrs.frozen(slots=True, kw_only=True)
class ListQuery:
    """Paging shared by every list query."""

    limit: int = attrs.field(default=DEFAULT_LIMIT, validator=_limit)
    cursor: str | None = attrs.field(default=None, validator=_cursor)

    @property
    def after_id(self) -> str | None:
        """Items returned have an id strictly below this one."""
        return None if self.cursor is None else decode_cursor(self.cursor)


#: Longest text a filter takes (longer than any stored value, so it would match nothing).
MAX_FILTER_LENGTH = 500


def _text(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ValidationError(attribute.name, "must be a string")
    if len(value) > MAX_FILTER_LENGTH:
        raise ValidationError(attribute.name, f"must be at most {MAX_FILTER_LENGTH} characters")
    if "\x00" in value:
        raise ValidationError(attribute.name, "must not contain NUL characters")


def _integer(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValidationError(attribute.name, "must be an integer")


def _boolean(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise ValidationError(attribute.name, "must be true or false")


def _instant(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # A naive time has no instant: comparing it with stored (aware) times is a
    # TypeError in every gateway, so it is refused here, naming the filter.
    if value is not None:
        require_aware(value, field=attribute.name)


def _one_of(choices: type[enum.Enum]) -> Any:
    allowed = frozenset(str(member.value) for member in choices)
    listed = ", ".join(str(member.value) for member in choices)

    def check(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None or isinstance(value, choices):
            return
        if not isinstance(value, str) or value not in allowed:
            raise ValidationError(attribute.name, f"must be one of {listed}")

    return check


def _f(op: Op, *columns: str, validator: Any = _text) -> Any:
    return attrs.field(default=None, metadata=filter_spec(op, *columns), validator=validator)


def _choice(choices: type[enum.Enum], *columns: str) -> Any:
    """An equality filter on an enum attribute: only the enum's values are accepted."""
    return _f(Op.EQ, *columns, validator=_one_of(choices))


def _when(op: Op, *columns: str) -> Any:
    """A bound on a time attribute: an aware datetime."""
    return _f(op, *columns, validator=_instant)


def _count(op: Op, *columns: str) -> Any:
    return _f(op, *columns, validator=_integer)


def _flag() -> Any:
    return _f(Op.EQ, validator=_boolean)


@attrs.frozen(slots=True, kw_only=True)
class ContactQuery(ListQuery):
    """Filters for contacts."""

    status: str | None = _choice(ContactStatus)
    source: str | None = _choice(ContactSource)
    tag: str | None = _f(Op.HAS, "tags")
    warmness_min: int | None = _count(Op.GTE, "warmness")
    warmness_max: int | None = _count(Op.LT, "warmness")  # exclusive
    created_from: datetime | None = _when(Op.GTE, "created_at")
    created_to: datetime | None = _when(Op.LT, "created_at")
    email: str | None = _f(Op.EQ)
    phone: str | None = _f(Op.EQ)
    email_opt_in: bool | None = _flag()
    sms_opt_in: bool | None = _flag()
    search: str | None = _f(Op.SEARCH, "first_name", "last_name", "email", "phone")


@attrs.frozen(slots=True, kw_only=True)
class TouchpointQuery(ListQuery):
    """Filters for touchpoints."""

    contact_id: str | None = _f(Op.EQ)
    kind: str | None = _choice(TouchpointKind)
    campaign_id: str | None = _f(Op.EQ)
    occurred_from: datetime | None = _when(Op.GTE, "occurred_at")
    occurred_to: datetime | None = _when(Op.LT, "occurred_at")


@attrs.frozen(slots=True, kw_only=True)
class BookingQuery(ListQuery):
    """Filters for bookings; ``starts_from``/``starts_to`` bound the start time."""

    contact_id: str | None = _f(Op.EQ)
    status: str | None = _choice(BookingStatus)
    service_type: str | None = _f(Op.EQ)
    external_id: str | None = _f(Op.EQ)
    starts_from: datetime | None = _when(Op.GTE, "starts_at")
    starts_to: datetime | None = _when(Op.LT, "starts_at")


@attrs.frozen(slots=True, kw_only=True)
class TaskQuery(ListQuery):
    """Filters for tasks."""

    status: str | None = _choice(TaskStatus)
    priority: str | None = _choice(TaskPriority)
    assignee_id: str | None = _f(Op.EQ)
    contact_id: str | None = _f(Op.EQ)
    booking_id: str | None = _f(Op.EQ)
    due_to: datetime | None = _when(Op.LT, "due_at")


@attrs.frozen(slots=True, kw_only=True)
class SmsQuery(ListQuery):
    """Filters for SMS messages."""

    contact_id: str | None = _f(Op.EQ)
    direction: str | None = _choice(SmsDirection)
    status: str | None = _choice(SmsStatus)
    intent: str | None = _choice(SmsIntent)
    provider_message_id: str | None = _f(Op.EQ)


@attrs.frozen(slots=True, kw_only=True)
class CampaignQuery(ListQuery):
    """Filters for email campaigns."""

    status: str | None = _choice(CampaignStatus)


@attrs.frozen(slots=True, kw_only=True)
class DeliveryQuery(ListQuery):
    """Filters for campaign deliveries."""

    campaign_id: str | None = _f(Op.EQ)
    contact_id: str | None = _f(Op.EQ)
    status: str | None = _choice(DeliveryStatus)


@attrs.frozen(slots=True, kw_only=True)
class AutomationQuery(ListQuery):
    """Filters for automation rules."""

    trigger: str | None = _f(Op.EQ)
    enabled: bool | None = _flag()


@attrs.frozen(slots=True, kw_only=True)
class SuppressionQuery(ListQuery):
    """Filters for a location's suppression list (``address`` as stored: E.164 or lower-cased)."""

    channel: str | None = _choice(SuppressionChannel)
    address: str | None = _f(Op.EQ)
    reason: str | None = _choice(SuppressionReason)


@attrs.frozen(slots=True, kw_only=True)
class AuditQuery(ListQuery):
    """Filters for the audit trail."""

    user_id: str | None = _f(Op.EQ)
    action: str | None = _f(Op.EQ)
    resource_type: str | None = _f(Op.EQ)
    resource_id: str | None = _f(Op.EQ)
    outcome: str | None = _choice(AuditOutcome)
    occurred_from: datetime | None = _when(Op.GTE, "occurred_at")
    occurred_to: datetime | None = _when(Op.LT, "occurred_at")


@attrs.frozen(slots=True, kw_only=True)
class IpRuleQuery(ListQuery):
    """Filters for a location's IP rules."""

    is_active: bool | None = _flag()


@attrs.frozen(slots=True, kw_only=True)
class LocationQuery(ListQuery):
    """Filters for locations (a global list)."""

    code: str | None = _f(Op.EQ)
    is_active: bool | None = _flag()


@attrs.frozen(slots=True, kw_only=True)
class UserQuery(ListQuery):
    """Filters for staff users (a global list)."""

    email: str | None = _f(Op.EQ)
    is_active: bool | None = _flag()


@attrs.frozen(slots=True, kw_only=True)
class MembershipQuery(ListQuery):
    """Filters for memberships (a global list)."""

    user_id: str | None = _f(Op.EQ)
    location_id: str | None = _f(Op.EQ)
    role: str | None = _choice(Role)
    is_active: bool | None = _flag()


def active_filters(query: ListQuery) -> Iterator[tuple[str, FilterSpec, Any]]:
    """Yield ``(field name, spec, value)`` for each filter the query sets (not ``None``)."""
    for field in attrs.fields(type(query)):
        spec = field.metadata.get("filter")
        if spec is None:
            continue
        value = getattr(query, field.name)
        if value is None:
            continue
        columns = spec.columns or (field.name,)
        yield field.name, FilterSpec(spec.op, columns), _plain(value)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def matches(query: ListQuery, entity: object) -> bool:
    """True when ``entity`` passes every filter of ``query`` (the reference semantics)."""
    for _name, spec, value in active_filters(query):
        if spec.op is Op.SEARCH:
            needle = str(value).casefold()
            if not any(needle in str(getattr(entity, c) or "").casefold() for c in spec.columns):
                return False
            continue
        actual = _plain(getattr(entity, spec.columns[0]))
        if spec.op is Op.EQ and actual != value:
            return False
        if spec.op is Op.GTE and (actual is None or actual < value):
            return False
        if spec.op is Op.LT and (actual is None or actual >= value):
            return False
        if spec.op is Op.HAS and value not in (actual or ()):
            return False
    return True


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_FILTER_LENGTH",
    "MAX_LIMIT",
    "AuditQuery",
    "AutomationQuery",
    "BookingQuery",
    "CampaignQuery",
    "ContactQuery",
    "DeliveryQuery",
    "FilterSpec",
    "IpRuleQuery",
    "ListQuery",
    "LocationQuery",
    "MembershipQuery",
    "Op",
    "SmsQuery",
    "SuppressionQuery",
    "TaskQuery",
    "TouchpointQuery",
    "UserQuery",
    "active_filters",
    "decode_cursor",
    "encode_cursor",
    "filter_spec",
    "matches",
]
