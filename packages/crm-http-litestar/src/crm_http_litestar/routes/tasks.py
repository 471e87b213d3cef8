"""``/api/tasks``."""

from __future__ import annotations

from typing import Any

import msgspec
from crm_domain.entities import TaskPriority, TaskStatus
from crm_domain.queries import DEFAULT_LIMIT, TaskQuery
from crm_domain.services import UNSET, CreateTask, UpdateTask
from litestar import Request, Response, Router, delete, get, patch, post
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
    WRITE_WITH_REFERENCES_ERRORS,
    permission_doc,
    responses,
)
from crm_http_litestar.routes._query import Cursor, Instant, Limit, Text, strict_query
from crm_http_litestar.schemas import Listing, TaskIn, TaskOut, TaskPatch, listing, out

_REFERENCES_NOTE = (
    "A `contact_id`, `booking_id` or `assignee_id` unknown here (also another location's)"
    " is a 404 naming the field; nothing is stored. A deactivated member as assignee is a 422."
)


def _domain(value: Any) -> Any:
    return UNSET if isinstance(value, msgspec.UnsetType) else value


@get(
    "/",
    opt={"permission": "tasks:read"},
    summary="List tasks",
    description=permission_doc("tasks:read", FOREIGN_FILTER_NOTE),
    responses=responses(*LIST_ERRORS),
)
async def list_tasks(
    crm: CrmDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: FromQuery[TaskStatus | None] = None,
    priority: FromQuery[TaskPriority | None] = None,
    assignee_id: Text = None,
    contact_id: Text = None,
    booking_id: Text = None,
    due_to: Instant = None,
    tenant_id: Text = None,
) -> Listing[TaskOut]:
    """One page of the location's tasks."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    refuse_other_location(pipeline, tenant_id)
    cursors = crm.cursors
    query = before_service(
        pipeline,
        lambda: TaskQuery(
            limit=limit,
            cursor=cursors.open(cursor),
            status=status,
            priority=priority,
            assignee_id=assignee_id,
            contact_id=contact_id,
            booking_id=booking_id,
            due_to=due_to,
        ),
    )
    page = await pipeline.use_case(services.tasks.list(ctx, query))
    return listing(page, TaskOut, cursors.seal)


@post(
    "/",
    opt={"permission": "tasks:create"},
    summary="Create a task",
    description=permission_doc("tasks:create", f"{_REFERENCES_NOTE} {IDEMPOTENCY_NOTE}"),
    responses=responses(*WRITE_WITH_REFERENCES_ERRORS),
    status_code=201,
)
async def create_task(
    crm: CrmDep, data: JSONBody[TaskIn], request: Request[Any, Any, Any]
) -> Response[TaskOut]:
    """Create a to-do."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    runtime = crm.runtime
    refuse_other_location(pipeline, data.tenant_id)
    command = before_service(
        pipeline,
        lambda: CreateTask(
            title=data.title,
            description=data.description,
            contact_id=data.contact_id,
            booking_id=data.booking_id,
            assignee_id=data.assignee_id,
            priority=data.priority,
            due_at=data.due_at,
        ),
    )

    async def produce() -> TaskOut:
        return out(await pipeline.use_case(services.tasks.create(ctx, command)), TaskOut)

    return await idempotent(request, pipeline, runtime, produce)


@get(
    "/{id:str}",
    opt={"permission": "tasks:read"},
    summary="Read a task",
    description=permission_doc("tasks:read", "Another location's id is a 404."),
    responses=responses(*READ_ONE_ERRORS),
)
async def get_task(crm: CrmDep, id: FromPath[str]) -> TaskOut:
    """One task."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    return out(await pipeline.use_case(services.tasks.get(ctx, id)), TaskOut)


@patch(
    "/{id:str}",
    opt={"permission": "tasks:update"},
    summary="Change a task",
    description=permission_doc("tasks:update", f"Only the fields sent change. {_REFERENCES_NOTE}"),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
)
async def update_task(crm: CrmDep, id: FromPath[str], data: JSONBody[TaskPatch]) -> TaskOut:
    """Change some fields of a task."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    refuse_other_location(pipeline, data.tenant_id)
    command = before_service(
        pipeline,
        lambda: UpdateTask(
            task_id=id,
            title=_domain(data.title),
            description=_domain(data.description),
            contact_id=_domain(data.contact_id),
            booking_id=_domain(data.booking_id),
            assignee_id=_domain(data.assignee_id),
            status=_domain(data.status),
            priority=_domain(data.priority),
            due_at=_domain(data.due_at),
        ),
    )
    return out(await pipeline.use_case(services.tasks.update(ctx, command)), TaskOut)


@delete(
    "/{id:str}",
    opt={"permission": "tasks:delete"},
    summary="Delete a task",
    description=permission_doc("tasks:delete"),
    responses=responses(*READ_ONE_ERRORS),
    status_code=204,
)
async def delete_task(crm: CrmDep, id: FromPath[str]) -> None:
    """Delete a task."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    await pipeline.use_case(services.tasks.delete(ctx, id))


def tasks_router() -> Router:
    """Routes under ``/api/tasks``."""
    return Router(
        path="/api/tasks",
        route_handlers=[list_tasks, create_task, get_task, update_task, delete_task],
        tags=["tasks"],
        before_request=strict_query,
    )
