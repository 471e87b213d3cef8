"""A to-do for reception or clinical staff."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from crm_domain.entities._fields import (
    aware,
    coerce_enum,
    optional_aware,
    optional_text,
    optional_utc,
    text,
    utc,
)


class TaskStatus(enum.StrEnum):
    """Where a task is."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    CANCELLED = "cancelled"


class TaskPriority(enum.StrEnum):
    """How soon a task needs doing."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


def _to_status(value: object) -> TaskStatus:
    return coerce_enum(TaskStatus, value, "status")


def _to_priority(value: object) -> TaskPriority:
    return coerce_enum(TaskPriority, value, "priority")


@attrs.frozen(slots=True, kw_only=True)
class Task:
    """Something a person at a location must do, often about a contact or booking."""

    id: str = attrs.field(validator=text(64))
    tenant_id: str = attrs.field(validator=text(64))
    title: str = attrs.field(validator=text(200))
    description: str | None = attrs.field(default=None, validator=optional_text(10_000))
    contact_id: str | None = attrs.field(default=None, validator=optional_text(64))
    booking_id: str | None = attrs.field(default=None, validator=optional_text(64))
    assignee_id: str | None = attrs.field(default=None, validator=optional_text(64))
    status: TaskStatus = attrs.field(default=TaskStatus.OPEN, converter=_to_status)
    priority: TaskPriority = attrs.field(default=TaskPriority.NORMAL, converter=_to_priority)
    due_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )
    completed_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    updated_at: datetime = attrs.field(converter=utc, validator=aware)
