"""Automation rules: CRUD, a dry run, and the engine the worker runs on each event.

A rule (per location) names a trigger — a domain event — conditions checked
against that event's PHI-free payload (``field op value``, validated here, never
code or SQL) and actions: create a task, send an SMS, add a tag, set the
contact's status.  The worker hands each event of a trigger name to
:meth:`AutomationService.run`; every enabled rule whose conditions hold runs
in its own unit of work as the location's system user, once per
``(rule, event)`` (a receipt committed with its actions), and one audit entry
says which rule did what.

Loops: an event a rule's action emits carries ``automation_depth`` one above
the event that triggered it; at :data:`MAX_AUTOMATION_DEPTH` no rule runs, so
a rule that (directly or through others) triggers itself stops there.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import (
    Action,
    AutomationRule,
    ConditionOp,
    ContactStatus,
    DomainEvent,
    Resource,
    RuleAction,
    RuleActionKind,
    RuleCondition,
    SmsKind,
    Task,
    TaskPriority,
    WebhookReceipt,
)
from crm_domain.errors import NotFound, ValidationError
from crm_domain.pagination import Page
from crm_domain.policies.rbac import Authorizer
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.queries import MAX_LIMIT, AutomationQuery
from crm_domain.services._base import Call, ServiceBase
from crm_domain.services.contacts import _facts as _contact_facts
from crm_domain.services.events import EventName
from crm_domain.services.sms import SmsService
from crm_domain.services.tasks import _facts as _task_facts

#: Events a rule may be triggered by.
AUTOMATION_TRIGGERS = frozenset(
    {
        EventName.CONTACT_CREATED,
        EventName.CONTACT_UPDATED,
        EventName.BOOKING_CREATED,
        EventName.BOOKING_CANCELLED,
        EventName.BOOKING_MARKED_NO_SHOW,
        EventName.BOOKING_COMPLETED,
        EventName.SMS_RECEIVED,
        EventName.TASK_CREATED,
    }
)
#: Payload facts a condition may test (ids, statuses, times; no free text, no PHI).
CONDITION_FIELDS = frozenset(
    {
        "status",
        "source",
        "warmness",
        "email_opt_in",
        "sms_opt_in",
        "service_type",
        "intent",
        "intent_confidence",
        "direction",
        "priority",
        "contact_id",
        "booking_id",
    }
)
#: How deep a chain of rule-triggered events may go before rules stop running.
MAX_AUTOMATION_DEPTH = 3
#: Receipt source marking a (rule, event) pair as run.
AUTOMATION_RECEIPTS = "automation"
_TAG = re.compile(r"^[\w-]{1,50}$")
_MAX_ACTIONS = 10
_MAX_CONDITIONS = 20


@attrs.frozen(kw_only=True)
class RuleSpec:
    """A rule as an admin writes it (create, full update, dry run)."""

    name: str
    trigger: str
    conditions: Sequence[Mapping[str, Any]] = ()
    actions: Sequence[Mapping[str, Any]] = ()
    enabled: bool = True


@attrs.frozen(kw_only=True)
class DryRun:
    """What a rule would do for one event payload: nothing is written."""

    matched: bool
    failed_conditions: tuple[str, ...]
    actions: tuple[str, ...]


def _field(prefix: str, error: ValidationError) -> ValidationError:
    return ValidationError(f"{prefix}.{error.field}" if error.field else prefix, error.reason)


def parse_conditions(raw: Sequence[Mapping[str, Any]]) -> tuple[RuleCondition, ...]:
    """Validate conditions (``ValidationError`` naming ``conditions[i].field`` …)."""
    if len(raw) > _MAX_CONDITIONS:
        raise ValidationError("conditions", f"at most {_MAX_CONDITIONS} conditions")
    parsed: list[RuleCondition] = []
    for index, item in enumerate(raw):
        where = f"conditions[{index}]"
        unknown = set(item) - {"field", "op", "value"}
        if unknown:
            raise ValidationError(where, f"unknown keys {sorted(unknown)}")
        field = item.get("field")
        if field not in CONDITION_FIELDS:
            raise ValidationError(f"{where}.field", f"must be one of {sorted(CONDITION_FIELDS)}")
        value = item.get("value")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValidationError(f"{where}.value", "must be a string, number, boolean or null")
        try:
            condition = RuleCondition(field=field, op=item.get("op"), value=value)
        except ValidationError as error:
            raise _field(where, error) from None
        if condition.op in _ORDERED and not isinstance(value, int | float):
            raise ValidationError(f"{where}.value", f"{condition.op.value} needs a number")
        parsed.append(condition)
    return tuple(parsed)


def parse_actions(raw: Sequence[Mapping[str, Any]]) -> tuple[RuleAction, ...]:
    """Validate actions and their parameters (``ValidationError`` naming ``actions[i]…``)."""
    if not raw:
        raise ValidationError("actions", "a rule needs at least one action")
    if len(raw) > _MAX_ACTIONS:
        raise ValidationError("actions", f"at most {_MAX_ACTIONS} actions")
    parsed: list[RuleAction] = []
    for index, item in enumerate(raw):
        where = f"actions[{index}]"
        unknown = set(item) - {"kind", "params"}
        if unknown:
            raise ValidationError(where, f"unknown keys {sorted(unknown)}")
        params = item.get("params") or {}
        if not isinstance(params, Mapping):
            raise ValidationError(f"{where}.params", "must be an object")
        try:
            action = RuleAction(kind=item.get("kind"), params=dict(params))
        except ValidationError as error:
            raise _field(where, error) from None
        _check_params(action, f"{where}.params")
        parsed.append(action)
    return tuple(parsed)


_PARAMS: dict[RuleActionKind, dict[str, bool]] = {
    # name → required
    RuleActionKind.CREATE_TASK: {"title": True, "priority": False, "due_in_hours": False},
    RuleActionKind.SEND_SMS: {"body": True, "kind": False},
    RuleActionKind.ADD_TAG: {"tag": True},
    RuleActionKind.SET_STATUS: {"status": True},
}


def _check_params(action: RuleAction, where: str) -> None:
    spec = _PARAMS[action.kind]
    params = action.params
    unknown = set(params) - set(spec)
    if unknown:
        raise ValidationError(where, f"unknown parameters {sorted(unknown)}")
    for name, required in spec.items():
        if required and name not in params:
            raise ValidationError(f"{where}.{name}", "is required")
    text_limits = {"title": 200, "body": 640}
    for name, limit in text_limits.items():
        if name in params:
            value = params[name]
            if not isinstance(value, str) or not value.strip() or len(value) > limit:
                raise ValidationError(f"{where}.{name}", f"must be 1 to {limit} characters")
    if "priority" in params and params["priority"] not in {p.value for p in TaskPriority}:
        raise ValidationError(f"{where}.priority", "unknown priority")
    if "due_in_hours" in params:
        hours = params["due_in_hours"]
        if isinstance(hours, bool) or not isinstance(hours, int) or not 0 <= hours <= 24 * 90:
            raise ValidationError(f"{where}.due_in_hours", "must be a whole number 0 to 2160")
    if "kind" in params and params["kind"] not in {k.value for k in SmsKind}:
        raise ValidationError(f"{where}.kind", "must be transactional or marketing")
    if "tag" in params and not (isinstance(params["tag"], str) and _TAG.match(params["tag"])):
        raise ValidationError(f"{where}.tag", "1-50 letters, digits, _ or -")
    if "status" in params and params["status"] not in {s.value for s in ContactStatus}:
        raise ValidationError(f"{where}.status", "unknown contact status")


_ORDERED = {ConditionOp.GT, ConditionOp.GTE, ConditionOp.LT, ConditionOp.LTE}


def condition_holds(condition: RuleCondition, payload: Mapping[str, Any]) -> bool:
    """Whether ``field op value`` holds for ``payload`` (a missing field never matches)."""
    if condition.field not in payload:
        return False
    actual = payload[condition.field]
    expected = condition.value
    op = condition.op
    if op is ConditionOp.EQ:
        return bool(actual == expected)
    if op is ConditionOp.NE:
        return bool(actual != expected)
    if op is ConditionOp.CONTAINS:
        return isinstance(actual, str) and isinstance(expected, str) and expected in actual
    if not isinstance(actual, int | float) or isinstance(actual, bool):
        return False
    assert isinstance(expected, int | float)  # parse_conditions requires a number
    return {
        ConditionOp.GT: actual > expected,
        ConditionOp.GTE: actual >= expected,
        ConditionOp.LT: actual < expected,
        ConditionOp.LTE: actual <= expected,
    }[op]


def _describe(action: RuleAction) -> str:
    params = action.params
    if action.kind is RuleActionKind.CREATE_TASK:
        return f"create_task {params['title']!r}"
    if action.kind is RuleActionKind.SEND_SMS:
        return f"send_sms ({params.get('kind', 'transactional')})"
    if action.kind is RuleActionKind.ADD_TAG:
        return f"add_tag {params['tag']}"
    return f"set_status {params['status']}"


class AutomationService:
    """Use cases on automation rules (``automations:create/read/update/delete``) and the engine.

    ``sms_numbers`` (location code → number) is where ``send_sms`` actions
    send from; without one the action is skipped (and the audit entry says so).
    """

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
        *,
        sms: SmsService,
        sms_numbers: Mapping[str, str] | None = None,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)
        self._sms = sms
        self._numbers = dict(sms_numbers or {})

    # -- CRUD -------------------------------------------------------------------

    async def create(self, ctx: Context, spec: RuleSpec) -> AutomationRule:
        """Store a validated rule (``ValidationError`` naming the field; nothing stored)."""
        base = self._base
        async with base.use_case(
            ctx,
            Resource.AUTOMATIONS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="automation",
            write=True,
        ) as call:
            now = base.clock.now()
            rule = self._build(spec, base.ids.new_id(), ctx.tenant_id, now, now)
            call.resource_id = rule.id
            await call.uow.automations.add(rule)
            call.detail = f"trigger {rule.trigger}, {len(rule.actions)} actions"
            return rule

    async def replace(self, ctx: Context, rule_id: str, spec: RuleSpec) -> AutomationRule:
        """Replace a rule's definition (also the enable switch: ``enabled``)."""

        def change(current: AutomationRule, now: datetime) -> AutomationRule:
            return self._build(spec, current.id, current.tenant_id, current.created_at, now)

        return await self._update(ctx, rule_id, change)

    async def set_enabled(self, ctx: Context, rule_id: str, enabled: bool) -> AutomationRule:
        """Switch a rule on or off."""

        def change(current: AutomationRule, now: datetime) -> AutomationRule:
            return attrs.evolve(current, enabled=enabled, updated_at=now)

        return await self._update(ctx, rule_id, change)

    async def _update(
        self,
        ctx: Context,
        rule_id: str,
        change: Callable[[AutomationRule, datetime], AutomationRule],
    ) -> AutomationRule:
        base = self._base
        async with base.use_case(
            ctx,
            Resource.AUTOMATIONS,
            Action.UPDATE,
            audit=AuditAction.UPDATE,
            resource_type="automation",
            resource_id=rule_id,
            write=True,
        ) as call:
            rule = change(await call.uow.automations.get(rule_id), base.clock.now())
            await call.uow.automations.update(rule)
            call.detail = f"{'enabled' if rule.enabled else 'disabled'}, trigger {rule.trigger}"
            return rule

    async def get(self, ctx: Context, rule_id: str) -> AutomationRule:
        """One rule of the location (another location's id is ``NotFound``)."""
        async with self._base.use_case(
            ctx,
            Resource.AUTOMATIONS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="automation",
            resource_id=rule_id,
            write=False,
        ) as call:
            return await call.uow.automations.get(rule_id)

    async def list(
        self, ctx: Context, query: AutomationQuery | None = None
    ) -> Page[AutomationRule]:
        """One page of the location's rules."""
        async with self._base.use_case(
            ctx,
            Resource.AUTOMATIONS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="automation",
            write=False,
        ) as call:
            page = await call.uow.automations.list(query or AutomationQuery())
            call.detail = f"{len(page.items)} returned"
            return page

    async def delete(self, ctx: Context, rule_id: str) -> None:
        """Delete a rule (events already handled stay handled)."""
        async with self._base.use_case(
            ctx,
            Resource.AUTOMATIONS,
            Action.DELETE,
            audit=AuditAction.DELETE,
            resource_type="automation",
            resource_id=rule_id,
            write=True,
        ) as call:
            await call.uow.automations.get(rule_id)
            await call.uow.automations.delete(rule_id)

    async def dry_run(self, ctx: Context, spec: RuleSpec, payload: Mapping[str, Any]) -> DryRun:
        """Check a rule against an example event payload: which conditions fail, what it would do.

        Needs ``automations:read``; validates like ``create`` and writes nothing.
        """
        async with self._base.use_case(
            ctx,
            Resource.AUTOMATIONS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="automation",
            write=False,
        ) as call:
            now = self._base.clock.now()
            rule = self._build(spec, "dry-run", ctx.tenant_id, now, now)
            failed = tuple(
                f"{c.field} {c.op.value} {c.value!r}"
                for c in rule.conditions
                if not condition_holds(c, payload)
            )
            call.detail = "dry run"
            return DryRun(
                matched=not failed,
                failed_conditions=failed,
                actions=tuple(_describe(a) for a in rule.actions) if not failed else (),
            )

    # -- the engine -------------------------------------------------------------

    async def run(self, ctx: Context, event: DomainEvent) -> builtins.list[str]:
        """Run every enabled rule of ``event.name`` whose conditions hold; return their ids.

        Nothing runs past :data:`MAX_AUTOMATION_DEPTH`.  Each rule runs once per
        event (a redelivered event finds its receipt); a rule whose action
        fails is rolled back and audited as failed, and the others still run.
        """
        depth = event.payload.get("automation_depth", 0)
        if not isinstance(depth, int) or depth >= MAX_AUTOMATION_DEPTH:
            return []
        async with self._base.gateway.unit_of_work(ctx.tenant_id) as uow:
            page = await uow.automations.list(
                AutomationQuery(trigger=event.name, enabled=True, limit=MAX_LIMIT)
            )
        ran: builtins.list[str] = []
        for rule in page.items:
            holds = all(condition_holds(c, event.payload) for c in rule.conditions)
            if holds and await self._run_rule(ctx, rule, event, depth):
                ran.append(rule.id)
        return ran

    async def _run_rule(
        self, ctx: Context, rule: AutomationRule, event: DomainEvent, depth: int
    ) -> bool:
        base = self._base
        async with base.use_case(
            ctx,
            Resource.AUTOMATIONS,
            Action.UPDATE,
            audit=AuditAction.UPDATE,
            resource_type="automation",
            resource_id=rule.id,
            write=True,
        ) as call:
            receipt = WebhookReceipt(
                source=AUTOMATION_RECEIPTS,
                event_id=f"{rule.id}:{event.id}",
                tenant_id=ctx.tenant_id,
                received_at=base.clock.now(),
            )
            if not await call.uow.webhook_receipts.record(receipt):
                call.detail = f"rule {rule.id} already ran for event {event.id}"
                return False
            done = [await self._act(call, action, event, depth + 1) for action in rule.actions]
            call.detail = f"rule {rule.id} on {event.name} {event.id}: " + "; ".join(done)
            return True

    async def _act(self, call: Call, action: RuleAction, event: DomainEvent, depth: int) -> str:
        base = self._base
        now = base.clock.now()
        params = action.params
        marks = {"automation_depth": depth, "automation_rule_id": call.resource_id}
        contact_id = event.payload.get("contact_id")
        if action.kind is RuleActionKind.CREATE_TASK:
            hours = params.get("due_in_hours")
            task = Task(
                id=base.ids.new_id(),
                tenant_id=call.uow.tenant_id or "",
                title=params["title"],
                contact_id=contact_id if isinstance(contact_id, str) else None,
                booking_id=_str(event.payload.get("booking_id")),
                priority=params.get("priority", TaskPriority.NORMAL.value),
                due_at=None if hours is None else now + timedelta(hours=hours),
                created_at=now,
                updated_at=now,
            )
            await call.uow.tasks.add(task)
            await call.emit(EventName.TASK_CREATED, "task", task.id, {**_task_facts(task), **marks})
            return f"task {task.id} created"
        if not isinstance(contact_id, str):
            return f"{action.kind.value} skipped: the event names no contact"
        try:
            contact = await call.uow.contacts.get(contact_id)
        except NotFound:
            return f"{action.kind.value} skipped: contact {contact_id} no longer exists"
        if action.kind is RuleActionKind.SEND_SMS:
            kind = SmsKind(params.get("kind", SmsKind.TRANSACTIONAL.value))
            location = await call.uow.locations.get(contact.tenant_id)
            refusal = await self._sms.refusal(call.uow, contact, kind, now, location.timezone)
            if refusal is not None:
                return f"send_sms skipped: {refusal}"
            number = self._numbers.get(location.code)
            if number is None:
                return "send_sms skipped: no SMS number for this location"
            message = await self._sms.queue_in(call, contact, number, params["body"], kind)
            return f"sms {message.id} queued"
        if action.kind is RuleActionKind.ADD_TAG:
            if params["tag"] in contact.tags:
                return f"tag {params['tag']} already on contact {contact.id}"
            changed = attrs.evolve(contact, tags=(*contact.tags, params["tag"]), updated_at=now)
            verb = f"tag {params['tag']} added to contact {contact.id}"
        else:
            if contact.status.value == params["status"]:
                return f"contact {contact.id} already {params['status']}"
            changed = attrs.evolve(contact, status=params["status"], updated_at=now)
            verb = f"contact {contact.id} set to {params['status']}"
        await call.uow.contacts.update(changed)
        await call.emit(
            EventName.CONTACT_UPDATED,
            "contact",
            changed.id,
            {**_contact_facts(changed), "changed": [action.kind.value], **marks},
        )
        return verb

    @staticmethod
    def _build(
        spec: RuleSpec, rule_id: str, tenant_id: str, created: Any, updated: Any
    ) -> AutomationRule:
        if spec.trigger not in {t.value for t in AUTOMATION_TRIGGERS}:
            raise ValidationError(
                "trigger", f"must be one of {sorted(t.value for t in AUTOMATION_TRIGGERS)}"
            )
        if not spec.name.strip() or len(spec.name) > 200:
            raise ValidationError("name", "must be 1 to 200 characters")
        # A dict: mypy cannot see through the entity's ``converter=tuple`` fields.
        fields: dict[str, Any] = {
            "conditions": parse_conditions(spec.conditions),
            "actions": parse_actions(spec.actions),
        }
        return AutomationRule(
            id=rule_id,
            tenant_id=tenant_id,
            name=spec.name,
            trigger=spec.trigger,
            enabled=spec.enabled,
            created_at=created,
            updated_at=updated,
            **fields,
        )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


__all__ = [
    "AUTOMATION_RECEIPTS",
    "AUTOMATION_TRIGGERS",
    "CONDITION_FIELDS",
    "MAX_AUTOMATION_DEPTH",
    "AutomationService",
    "DryRun",
    "RuleSpec",
    "condition_holds",
    "parse_actions",
    "parse_conditions",
]
