"""``/api/automations``: rules per location, their enable switch and a dry run.

The schemas live here rather than in :mod:`crm_http_litestar.schemas`: they
are used by these routes only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from crm_domain.entities import AutomationRule, ConditionOp, RuleActionKind
from crm_domain.queries import DEFAULT_LIMIT, AutomationQuery
from crm_domain.services import AutomationService, RuleSpec
from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from crm_http_litestar.routes._common import (
    IDEMPOTENCY_NOTE,
    before_service,
    idempotent,
    refuse_other_location,
)
from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes._docs import (
    FOREIGN_FILTER_NOTE,
    LIST_ERRORS,
    READ_ONE_ERRORS,
    WRITE_ERRORS,
    permission_doc,
    responses,
)
from crm_http_litestar.routes._query import Cursor, Limit, Text, strict_query
from crm_http_litestar.schemas import Body, Listing, name_text, one_of

Scalar = str | int | float | bool | None


class ConditionBody(Body):
    """``field op value`` tested against the triggering event's payload."""

    field: str
    op: Annotated[str, one_of(ConditionOp)]
    value: Scalar = None


class ActionBody(Body):
    """One action and its parameters."""

    kind: Annotated[str, one_of(RuleActionKind)]
    params: dict[str, Scalar] = msgspec.field(default_factory=dict)


class AutomationIn(Body):
    """A rule as written by an admin (create, replace, dry run)."""

    name: Annotated[str, name_text(200)]
    trigger: str
    conditions: list[ConditionBody] = msgspec.field(default_factory=list)
    actions: list[ActionBody] = msgspec.field(default_factory=list)
    enabled: bool = True
    tenant_id: str | None = None


class AutomationSwitch(Body):
    """The enable switch."""

    enabled: bool
    tenant_id: str | None = None


class DryRunIn(Body):
    """A rule and an example event payload to test it against."""

    rule: AutomationIn
    payload: dict[str, Scalar] = msgspec.field(default_factory=dict)


class ConditionOut(msgspec.Struct):
    """A stored condition."""

    field: str
    op: str
    value: Scalar


class ActionOut(msgspec.Struct):
    """A stored action."""

    kind: str
    params: dict[str, Scalar]


class AutomationOut(msgspec.Struct):
    """An automation rule."""

    id: str
    tenant_id: str
    name: str
    trigger: str
    conditions: list[ConditionOut]
    actions: list[ActionOut]
    enabled: bool
    created_at: datetime
    updated_at: datetime


class DryRunOut(msgspec.Struct):
    """What the rule would do for the payload (nothing was written)."""

    matched: bool
    failed_conditions: list[str]
    actions: list[str]


def _out(rule: AutomationRule) -> AutomationOut:
    return AutomationOut(
        id=rule.id,
        tenant_id=rule.tenant_id,
        name=rule.name,
        trigger=rule.trigger,
        conditions=[ConditionOut(c.field, c.op.value, c.value) for c in rule.conditions],
        actions=[ActionOut(a.kind.value, dict(a.params)) for a in rule.actions],
        enabled=rule.enabled,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def _spec(data: AutomationIn) -> RuleSpec:
    return RuleSpec(
        name=data.name,
        trigger=data.trigger,
        conditions=[msgspec.structs.asdict(c) for c in data.conditions],
        actions=[msgspec.structs.asdict(a) for a in data.actions],
        enabled=data.enabled,
    )


def _service(crm: CrmDep) -> AutomationService:
    service = crm.services.automations
    assert service is not None  # bootstrap always wires it
    return service


_RULE_NOTE = (
    "Triggers: ContactCreated, ContactUpdated, BookingCreated, BookingCancelled,"
    " BookingMarkedNoShow, BookingCompleted, SmsReceived, TaskCreated. A condition is"
    " `{field, op, value}` over the event's PHI-free facts (ops eq ne gt gte lt lte contains);"
    " actions: `create_task` {title, priority?, due_in_hours?}, `send_sms` {body, kind?},"
    " `add_tag` {tag}, `set_status` {status}. A bad rule is a 422 naming the field"
    " (e.g. `actions[0].params.title`); nothing is stored."
)


@get(
    "/",
    opt={"permission": "automations:read"},
    summary="List automation rules",
    description=permission_doc("automations:read", FOREIGN_FILTER_NOTE),
    responses=responses(*LIST_ERRORS),
)
async def list_automations(
    crm: CrmDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    trigger: Text = None,
    enabled: FromQuery[bool | None] = None,
    tenant_id: Text = None,
) -> Listing[AutomationOut]:
    """One page of the location's rules."""
    pipeline = crm.pipeline
    refuse_other_location(pipeline, tenant_id)
    cursors = crm.cursors
    query = before_service(
        pipeline,
        lambda: AutomationQuery(
            limit=limit, cursor=cursors.open(cursor), trigger=trigger, enabled=enabled
        ),
    )
    page = await pipeline.use_case(_service(crm).list(crm.ctx, query))
    return Listing(items=[_out(r) for r in page.items], next_cursor=cursors.seal(page.next_cursor))


@post(
    "/",
    opt={"permission": "automations:create"},
    summary="Create an automation rule",
    description=permission_doc("automations:create", f"{_RULE_NOTE} {IDEMPOTENCY_NOTE}"),
    responses=responses(*WRITE_ERRORS),
    status_code=201,
)
async def create_automation(
    crm: CrmDep, data: JSONBody[AutomationIn], request: Request[Any, Any, Any]
) -> Response[AutomationOut]:
    """Create a rule."""
    pipeline = crm.pipeline
    refuse_other_location(pipeline, data.tenant_id)
    spec = _spec(data)

    async def produce() -> AutomationOut:
        return _out(await pipeline.use_case(_service(crm).create(crm.ctx, spec)))

    return await idempotent(request, pipeline, crm.runtime, produce)


@post(
    "/dry-run",
    opt={"permission": "automations:read"},
    summary="Test a rule against an example event payload",
    description=permission_doc(
        "automations:read",
        "Validates the rule like a create and says whether its conditions hold for `payload`"
        " and which actions it would take. Nothing is stored or sent.",
    ),
    responses=responses(*WRITE_ERRORS),
    status_code=200,
)
async def dry_run_automation(crm: CrmDep, data: JSONBody[DryRunIn]) -> DryRunOut:
    """Dry run."""
    pipeline = crm.pipeline
    refuse_other_location(pipeline, data.rule.tenant_id)
    result = await pipeline.use_case(
        _service(crm).dry_run(crm.ctx, _spec(data.rule), dict(data.payload))
    )
    return DryRunOut(
        matched=result.matched,
        failed_conditions=list(result.failed_conditions),
        actions=list(result.actions),
    )


@get(
    "/{id:str}",
    opt={"permission": "automations:read"},
    summary="Read an automation rule",
    description=permission_doc("automations:read", "Another location's id is a 404."),
    responses=responses(*READ_ONE_ERRORS),
)
async def get_automation(crm: CrmDep, id: FromPath[str]) -> AutomationOut:
    """One rule."""
    return _out(await crm.pipeline.use_case(_service(crm).get(crm.ctx, id)))


@put(
    "/{id:str}",
    opt={"permission": "automations:update"},
    summary="Replace an automation rule",
    description=permission_doc("automations:update", _RULE_NOTE),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
)
async def replace_automation(
    crm: CrmDep, id: FromPath[str], data: JSONBody[AutomationIn]
) -> AutomationOut:
    """Replace a rule's definition."""
    pipeline = crm.pipeline
    refuse_other_location(pipeline, data.tenant_id)
    return _out(await pipeline.use_case(_service(crm).replace(crm.ctx, id, _spec(data))))


@patch(
    "/{id:str}",
    opt={"permission": "automations:update"},
    summary="Switch an automation rule on or off",
    description=permission_doc("automations:update", 'Body: `{"enabled": false}`.'),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
)
async def switch_automation(
    crm: CrmDep, id: FromPath[str], data: JSONBody[AutomationSwitch]
) -> AutomationOut:
    """The enable switch."""
    pipeline = crm.pipeline
    refuse_other_location(pipeline, data.tenant_id)
    return _out(await pipeline.use_case(_service(crm).set_enabled(crm.ctx, id, data.enabled)))


@delete(
    "/{id:str}",
    opt={"permission": "automations:delete"},
    summary="Delete an automation rule",
    description=permission_doc("automations:delete"),
    responses=responses(*READ_ONE_ERRORS),
    status_code=204,
)
async def delete_automation(crm: CrmDep, id: FromPath[str]) -> None:
    """Delete a rule."""
    await crm.pipeline.use_case(_service(crm).delete(crm.ctx, id))


def automations_router() -> Router:
    """Routes under ``/api/automations``."""
    return Router(
        path="/api/automations",
        route_handlers=[
            list_automations,
            create_automation,
            dry_run_automation,
            get_automation,
            replace_automation,
            switch_automation,
            delete_automation,
        ],
        tags=["automations"],
        before_request=strict_query,
    )
