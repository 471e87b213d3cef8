"""Role grants: which role may do which action on which resource."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from crm_domain.entities._fields import aware, coerce_enum, text, utc
from crm_domain.entities.staff import Role


class Resource(enum.StrEnum):
    """Things a permission can be about."""

    CONTACTS = "contacts"
    BOOKINGS = "bookings"
    TASKS = "tasks"
    SMS = "sms"
    CAMPAIGNS = "campaigns"
    REPORTS = "reports"
    AUTOMATIONS = "automations"
    #: The location's suppression list (addresses never to text or email).
    SUPPRESSIONS = "suppressions"
    LOCATIONS = "locations"
    USERS = "users"
    IP_RULES = "ip_rules"
    AUDIT = "audit"


class Action(enum.StrEnum):
    """What a permission allows."""

    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    SEND = "send"
    #: Bulk export of a location's records (``contacts:export``: every patient at once).
    EXPORT = "export"


def _to_role(value: object) -> Role:
    return coerce_enum(Role, value, "role")


def _to_resource(value: object) -> Resource:
    return coerce_enum(Resource, value, "resource")


def _to_action(value: object) -> Action:
    return coerce_enum(Action, value, "action")


@attrs.frozen(slots=True, kw_only=True)
class PermissionConditions:
    """Conditions attached to a grant."""

    #: The grant applies only to data of the location the membership is at.
    #: Always true for the default matrix; a grant without it is refused by the
    #: policy unless the caller asks for a cross-location check explicitly.
    own_location_only: bool = True


@attrs.frozen(slots=True, kw_only=True)
class Permission:
    """A grant of ``action`` on ``resource`` to every member holding ``role``."""

    id: str = attrs.field(validator=text(64))
    role: Role = attrs.field(converter=_to_role)
    resource: Resource = attrs.field(converter=_to_resource)
    action: Action = attrs.field(converter=_to_action)
    conditions: PermissionConditions = attrs.field(factory=PermissionConditions)
    created_at: datetime = attrs.field(converter=utc, validator=aware)

    @property
    def key(self) -> str:
        """``resource:action``, the form routes declare."""
        return f"{self.resource.value}:{self.action.value}"
