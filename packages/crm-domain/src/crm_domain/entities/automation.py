"""Automation rules: when an event happens and conditions hold, do actions."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

from crm_domain.entities._fields import aware, coerce_enum, frozen_mapping, json_scalars, text, utc


class ConditionOp(enum.StrEnum):
    """Comparison used by a rule condition."""

    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    CONTAINS = "contains"


def _to_op(value: object) -> ConditionOp:
    return coerce_enum(ConditionOp, value, "op")


def _to_kind(value: object) -> RuleActionKind:
    return coerce_enum(RuleActionKind, value, "kind")


@attrs.frozen(slots=True, kw_only=True)
class RuleCondition:
    """``field op value`` evaluated against the triggering event's payload."""

    field: str = attrs.field(validator=text(100))
    op: ConditionOp = attrs.field(converter=_to_op)
    value: str | int | float | bool | None = None


class RuleActionKind(enum.StrEnum):
    """What a rule can do."""

    CREATE_TASK = "create_task"
    SEND_SMS = "send_sms"
    ADD_TAG = "add_tag"
    SET_STATUS = "set_status"


@attrs.frozen(slots=True, kw_only=True)
class RuleAction:
    """One action with its parameters (e.g. ``{"title": "Call back"}``)."""

    kind: RuleActionKind = attrs.field(converter=_to_kind)
    params: dict[str, Any] = attrs.field(
        factory=dict, converter=frozen_mapping, validator=json_scalars, hash=False
    )


@attrs.frozen(slots=True, kw_only=True)
class AutomationRule:
    """An automation configured by a location's admin."""

    id: str = attrs.field(validator=text(64))
    tenant_id: str = attrs.field(validator=text(64))
    name: str = attrs.field(validator=text(200))
    #: Domain event name that triggers the rule, e.g. ``ContactCreated``.
    trigger: str = attrs.field(validator=text(100))
    conditions: tuple[RuleCondition, ...] = attrs.field(default=(), converter=tuple)
    actions: tuple[RuleAction, ...] = attrs.field(default=(), converter=tuple)
    enabled: bool = True
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    updated_at: datetime = attrs.field(converter=utc, validator=aware)
