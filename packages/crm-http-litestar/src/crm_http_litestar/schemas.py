"""HTTP schemas: the API's shapes, kept apart from the domain entities.

Request bodies refuse unknown fields (``forbid_unknown_fields``), so a typo or
a field the client may not set (``id``, ``created_at`` …) is a 422 naming it.
Responses are built from entities with :func:`out` (``msgspec.convert`` reading
attributes), so adding a field to an entity never leaks it into the API by
accident — it must be added here too.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from crm_domain.entities import (
    Channel,
    ContactSource,
    ContactStatus,
    Effect,
    Role,
    TaskPriority,
    TaskStatus,
    TouchpointKind,
)
from crm_domain.pagination import Page

# Litestar exports no public base for struct schemas; this is the class its app uses.
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar._openapi.schema_generation.schema import SchemaCreator
from litestar.openapi.spec import Schema
from litestar.typing import FieldDefinition
from msgspec import UNSET, UnsetType

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)

#: The statuses a booking may be moved to by ``PATCH`` (the rest follow from them).
BOOKING_STATUS_CHANGES = ("confirmed", "cancelled", "completed", "no_show")


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: unknown fields are refused."""


class ClosedStructSchema(StructSchemaPlugin):
    """OpenAPI for msgspec structs that also says what ``forbid_unknown_fields`` does.

    Litestar's own plugin leaves ``additionalProperties`` open, so the document
    promised that extra body fields are accepted while the server answers 422:
    generated clients and fuzzers (Schemathesis) took the 422 for a bug.
    """

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        """The struct's schema, closed when the struct refuses unknown fields."""
        schema = super().to_openapi_schema(field_definition, schema_creator)
        config = getattr(field_definition.type_, "__struct_config__", None)
        if config is not None and config.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


def close_body_schemas(plugins: list[Any]) -> None:
    """Use :class:`ClosedStructSchema` instead of Litestar's struct plugin, in place.

    In place, not inserted: Litestar iterates this list while plugins initialise.
    """
    for index, plugin in enumerate(plugins):
        if type(plugin) is StructSchemaPlugin:
            plugins[index] = ClosedStructSchema()


class Listing(msgspec.Struct, Generic[T]):
    """One page of a list, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[T]
    next_cursor: str | None


def one_of(choices: type[enum.Enum] | tuple[str, ...], *, nullable: bool = False) -> msgspec.Meta:
    """Document a text field's allowed values in OpenAPI (``enum``); the domain still checks.

    The field stays ``str`` so a wrong value is refused by the domain's own
    message ("must be one of ..."), while clients and fuzzers see the choices.
    """
    values: list[str | None] = [str(v.value) if isinstance(v, enum.Enum) else v for v in choices]
    if nullable:
        values.append(None)
    return msgspec.Meta(extra_json_schema={"extra": {"enum": values}})


#: A name-like text: not blank, no NUL (JSON Schema patterns search, like ``re.search``).
_NOT_BLANK = r"^[^\u0000]*[^\u0000\s][^\u0000]*$"


def documented(**schema: Any) -> msgspec.Meta:
    """JSON Schema keywords for OpenAPI only (``maxLength``, ``pattern``…); the domain checks.

    The domain's validators stay the one source of truth and of the error message;
    the document just stops promising that their refusals are acceptable input.
    """
    return msgspec.Meta(extra_json_schema={"extra": schema})


def name_text(max_length: int) -> msgspec.Meta:
    """A required text the domain refuses blank, with NUL, or over ``max_length``."""
    return documented(maxLength=max_length, pattern=_NOT_BLANK)


#: A warmness score as the domain takes it.
WARMNESS = documented(minimum=0, maximum=100)


def out(entity: object, schema: type[S]) -> S:
    """Copy the schema's fields from an entity."""
    return msgspec.convert(entity, schema, from_attributes=True)


def listing(
    page: Page[Any], schema: type[S], seal: Callable[[str | None], str | None]
) -> Listing[S]:
    """A page of entities as a :class:`Listing` of ``schema``; ``seal`` wraps its cursor."""
    return Listing(
        items=[msgspec.convert(item, schema, from_attributes=True) for item in page.items],
        next_cursor=seal(page.next_cursor),
    )


def unset_to(value: Any, marker: Any) -> Any:
    """msgspec's ``UNSET`` (field absent) becomes the domain's own marker."""
    return marker if value is UNSET else value


# --- contacts ------------------------------------------------------------------


class ContactOut(msgspec.Struct):
    """A contact as the API shows it."""

    id: str
    tenant_id: str
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    source: str
    status: str
    warmness: int
    warmness_reasons: list[str]
    tags: list[str]
    email_opt_in: bool
    sms_opt_in: bool
    consent_updated_at: datetime | None
    service_interest: str | None
    date_of_birth: date | None
    notes: str | None
    created_at: datetime
    updated_at: datetime


class ContactIn(Body):
    """A new contact; needs an email or a phone (E.164, or Australian national)."""

    first_name: Annotated[str, name_text(100)]
    last_name: Annotated[str, documented(maxLength=100)] = ""
    email: str | None = None
    phone: str | None = None
    source: Annotated[str, one_of(ContactSource)] = "other"
    status: Annotated[str, one_of(ContactStatus)] = "new"
    warmness: Annotated[int | None, WARMNESS] = None
    tags: list[str] = msgspec.field(default_factory=list)
    email_opt_in: bool = False
    sms_opt_in: bool = False
    service_interest: str | None = None
    date_of_birth: date | None = None
    notes: str | None = None
    allow_duplicate_email: bool = False
    #: Optional; if given it must be the caller's location (never another one).
    tenant_id: str | None = None


class ContactPatch(Body):
    """Fields to change; absent fields stay as they are, ``null`` clears optional ones."""

    first_name: Annotated[str | UnsetType, name_text(100)] = UNSET
    last_name: Annotated[str | UnsetType, documented(maxLength=100)] = UNSET
    email: str | UnsetType | None = UNSET
    phone: str | UnsetType | None = UNSET
    source: Annotated[str | UnsetType, one_of(ContactSource)] = UNSET
    status: Annotated[str | UnsetType, one_of(ContactStatus)] = UNSET
    warmness: Annotated[int | UnsetType, WARMNESS] = UNSET
    tags: list[str] | UnsetType = UNSET
    email_opt_in: bool | UnsetType = UNSET
    sms_opt_in: bool | UnsetType = UNSET
    service_interest: str | UnsetType | None = UNSET
    date_of_birth: date | UnsetType | None = UNSET
    notes: str | UnsetType | None = UNSET
    tenant_id: str | None = None


class TouchpointOut(msgspec.Struct):
    """An interaction with a contact."""

    id: str
    tenant_id: str
    contact_id: str
    kind: str
    channel: str
    occurred_at: datetime
    campaign_id: str | None
    metadata: dict[str, Any]
    created_at: datetime


class TouchpointIn(Body):
    """A new interaction (``occurred_at`` defaults to now)."""

    kind: Annotated[str, one_of(TouchpointKind)]
    channel: Annotated[str, one_of(Channel)] = "other"
    occurred_at: datetime | None = None
    campaign_id: str | None = None
    metadata: dict[str, str | int | float | bool | None] = msgspec.field(default_factory=dict)


# --- bookings ------------------------------------------------------------------


class BookingOut(msgspec.Struct):
    """A booked scan."""

    id: str
    tenant_id: str
    contact_id: str
    service_type: str
    starts_at: datetime
    ends_at: datetime
    status: str
    external_id: str | None
    source: str
    notes: str | None
    cancellation_reason: str | None
    created_at: datetime
    updated_at: datetime


class BookingIn(Body):
    """A new booking for a contact of the caller's location."""

    contact_id: str
    service_type: Annotated[str, name_text(100)]
    starts_at: datetime
    ends_at: datetime
    notes: str | None = None
    source: str = "manual"
    external_id: str | None = None
    tenant_id: str | None = None


class BookingPatch(Body):
    """A change of a booking: a new time (reschedule) or a new status.

    ``status`` may be ``confirmed``, ``cancelled`` (with ``cancellation_reason``),
    ``completed`` or ``no_show``; a new ``starts_at``/``ends_at`` pair reschedules.
    """

    status: Annotated[str | UnsetType, one_of(BOOKING_STATUS_CHANGES)] = UNSET
    starts_at: datetime | UnsetType = UNSET
    ends_at: datetime | UnsetType = UNSET
    cancellation_reason: str | None = None
    tenant_id: str | None = None


# --- tasks ---------------------------------------------------------------------


class TaskOut(msgspec.Struct):
    """A to-do."""

    id: str
    tenant_id: str
    title: str
    description: str | None
    contact_id: str | None
    booking_id: str | None
    assignee_id: str | None
    status: str
    priority: str
    due_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TaskIn(Body):
    """A new task."""

    title: Annotated[str, name_text(200)]
    description: str | None = None
    contact_id: str | None = None
    booking_id: str | None = None
    assignee_id: str | None = None
    #: Omitted: the AI provider suggests one (``normal`` without a provider).
    priority: Annotated[str | None, one_of(TaskPriority, nullable=True)] = None
    due_at: datetime | None = None
    tenant_id: str | None = None


class TaskPatch(Body):
    """Fields of a task to change."""

    title: Annotated[str | UnsetType, name_text(200)] = UNSET
    description: str | UnsetType | None = UNSET
    contact_id: str | UnsetType | None = UNSET
    booking_id: str | UnsetType | None = UNSET
    assignee_id: str | UnsetType | None = UNSET
    status: Annotated[str | UnsetType, one_of(TaskStatus)] = UNSET
    priority: Annotated[str | UnsetType, one_of(TaskPriority)] = UNSET
    due_at: datetime | UnsetType | None = UNSET
    tenant_id: str | None = None


# --- admin ---------------------------------------------------------------------


class LocationOut(msgspec.Struct):
    """A clinic location."""

    id: str
    code: str
    name: str
    timezone: str
    address: str | None
    is_active: bool
    created_at: datetime


class LocationIn(Body):
    """A new location (unreachable over HTTP until it has an IP rule)."""

    code: Annotated[str, documented(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")]
    name: Annotated[str, name_text(200)]
    timezone: str
    address: str | None = None


class LocationPatch(Body):
    """Changes to the caller's location."""

    name: Annotated[str | UnsetType, name_text(200)] = UNSET
    timezone: str | UnsetType = UNSET
    address: str | UnsetType | None = UNSET


class PermissionOverrideIO(Body):
    """One grant added to (``allow``) or removed from (``deny``) a member's role."""

    resource: Annotated[str, name_text(64)]
    action: Annotated[str, name_text(64)]
    effect: Annotated[str, one_of(Effect)] = "allow"


class MemberOut(msgspec.Struct):
    """A staff user and their membership at the caller's location."""

    user_id: str
    membership_id: str
    email: str
    name: str
    role: str
    is_active: bool
    user_is_active: bool
    custom_permissions: list[PermissionOverrideIO]
    created_at: datetime


class MemberIn(Body):
    """Give someone a role at the caller's location (creates the user if new)."""

    email: str
    role: Annotated[str, one_of(Role)]
    name: str = ""
    custom_permissions: list[PermissionOverrideIO] = msgspec.field(default_factory=list)


class IpRuleOut(msgspec.Struct):
    """An allowed network of the caller's location."""

    id: str
    tenant_id: str
    cidr: str
    description: str | None
    is_active: bool
    created_at: datetime
    created_by: str


class IpRuleIn(Body):
    """A network to allow (IPv4 or IPv6 CIDR; a bare address is one host)."""

    cidr: str
    description: str | None = None


class AuditEntryOut(msgspec.Struct):
    """One audit entry (ids and request facts, never field values)."""

    id: str
    tenant_id: str | None
    user_id: str | None
    action: str
    resource_type: str
    resource_id: str | None
    outcome: str
    ip_address: str | None
    user_agent: str | None
    request_id: str | None
    request_method: str | None
    request_path: str | None
    status_code: int | None
    duration_ms: int | None
    detail: str | None
    occurred_at: datetime
    sequence: int
    prev_hash: str
    hash: str


__all__ = [
    "BOOKING_STATUS_CHANGES",
    "AuditEntryOut",
    "BookingIn",
    "BookingOut",
    "BookingPatch",
    "ClosedStructSchema",
    "ContactIn",
    "ContactOut",
    "ContactPatch",
    "IpRuleIn",
    "IpRuleOut",
    "Listing",
    "LocationIn",
    "LocationOut",
    "LocationPatch",
    "MemberIn",
    "MemberOut",
    "PermissionOverrideIO",
    "TaskIn",
    "TaskOut",
    "TaskPatch",
    "TouchpointIn",
    "TouchpointOut",
    "close_body_schemas",
    "documented",
    "listing",
    "name_text",
    "one_of",
    "out",
    "unset_to",
]
