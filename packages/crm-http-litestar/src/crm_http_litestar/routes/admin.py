"""``/api/admin``: locations, users (memberships), IP rules and the audit trail."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import attrs
import msgspec
from crm_domain.entities import AuditEntry, AuditOutcome, PermissionOverride, Role
from crm_domain.errors import NotFound
from crm_domain.queries import (
    DEFAULT_LIMIT,
    MAX_FILTER_LENGTH,
    MAX_LIMIT,
    AuditQuery,
    IpRuleQuery,
    LocationQuery,
    MembershipQuery,
)
from crm_domain.services import UNSET, AddUser, AllowIp, CreateLocation, Member, UpdateLocation
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.openapi.spec import Operation
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from crm_http_litestar.pipeline import RequestState
from crm_http_litestar.routes._common import IDEMPOTENCY_NOTE, before_service, idempotent
from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes._docs import (
    LIST_ERRORS,
    READ_ONE_ERRORS,
    WRITE_ERRORS,
    permission_doc,
    responses,
)
from crm_http_litestar.routes._query import Cursor, Instant, Limit, Text, strict_query
from crm_http_litestar.schemas import (
    AuditEntryOut,
    IpRuleIn,
    IpRuleOut,
    Listing,
    LocationIn,
    LocationOut,
    LocationPatch,
    MemberIn,
    MemberOut,
    PermissionOverrideIO,
    listing,
    out,
)

#: Most entries one export returns (newest first); narrow the filters for more.
EXPORT_LIMIT = 100_000


def _domain(value: Any) -> Any:
    return UNSET if isinstance(value, msgspec.UnsetType) else value


# --- locations ------------------------------------------------------------------


@get(
    "/locations",
    opt={"permission": "locations:read"},
    summary="List locations",
    description=permission_doc("locations:read"),
    responses=responses(*LIST_ERRORS),
)
async def list_locations(
    crm: CrmDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    code: Text = None,
    is_active: FromQuery[bool | None] = None,
) -> Listing[LocationOut]:
    """One page of locations."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    cursors = crm.cursors
    query = before_service(
        pipeline,
        lambda: LocationQuery(
            limit=limit, cursor=cursors.open(cursor), code=code, is_active=is_active
        ),
    )
    page = await pipeline.use_case(services.access.list_locations(ctx, query))
    return listing(page, LocationOut, cursors.seal)


@post(
    "/locations",
    opt={"permission": "locations:create"},
    summary="Open a location",
    description=permission_doc(
        "locations:create",
        f"Nobody can reach it over HTTP until an IP rule is added there. {IDEMPOTENCY_NOTE}",
    ),
    responses=responses(*WRITE_ERRORS),
    status_code=201,
)
async def create_location(
    crm: CrmDep, data: JSONBody[LocationIn], request: Request[Any, Any, Any]
) -> Response[LocationOut]:
    """Create a location."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    runtime = crm.runtime
    command = before_service(
        pipeline,
        lambda: CreateLocation(
            code=data.code, name=data.name, timezone=data.timezone, address=data.address
        ),
    )

    async def produce() -> LocationOut:
        location = await pipeline.use_case(services.access.create_location(ctx, command))
        return out(location, LocationOut)

    return await idempotent(request, pipeline, runtime, produce)


@get(
    "/locations/{id:str}",
    opt={"permission": "locations:read"},
    summary="Read a location",
    description=permission_doc("locations:read"),
    responses=responses(*READ_ONE_ERRORS),
)
async def get_location(crm: CrmDep, id: FromPath[str]) -> LocationOut:
    """One location."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    return out(await pipeline.use_case(services.access.get_location(ctx, id)), LocationOut)


@patch(
    "/locations/{id:str}",
    opt={"permission": "locations:update"},
    summary="Change the current location",
    description=permission_doc(
        "locations:update", "Only the location of the token can be changed; other ids are 404."
    ),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
)
async def update_location(
    crm: CrmDep, id: FromPath[str], data: JSONBody[LocationPatch]
) -> LocationOut:
    """Change the caller's location."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    if id != ctx.tenant_id:
        pipeline.keep_audit("update of another location")
        raise NotFound(f"location {id} not found")
    command = before_service(
        pipeline,
        lambda: UpdateLocation(
            name=_domain(data.name), timezone=_domain(data.timezone), address=_domain(data.address)
        ),
    )
    return out(await pipeline.use_case(services.access.update_location(ctx, command)), LocationOut)


# --- users ----------------------------------------------------------------------


def _member(member: Member) -> MemberOut:
    return MemberOut(
        user_id=member.user.id,
        membership_id=member.membership.id,
        email=member.user.email,
        name=member.user.name,
        role=member.membership.role.value,
        is_active=member.membership.is_active,
        user_is_active=member.user.is_active,
        custom_permissions=[
            PermissionOverrideIO(resource=p.resource, action=p.action, effect=p.effect.value)
            for p in member.membership.custom_permissions
        ],
        created_at=member.membership.created_at,
    )


class _AddUserOperation(Operation):
    """Links the new membership to ``PATCH /users/{id}``, whose id is the *membership* id."""

    def to_schema(self) -> dict[str, Any]:
        """The operation's OpenAPI object with the link on its 201."""
        schema = super().to_schema()
        schema["responses"]["201"]["links"] = {
            "DeactivateMembership": {
                "operationId": _DEACTIVATE_OPERATION_ID,
                "parameters": {"id": "$response.body#/membership_id"},
                "description": "The id of PATCH /api/admin/users/{id} is `membership_id`.",
            }
        }
        return schema


_DEACTIVATE_OPERATION_ID = "ApiAdminUsersIdDeactivateUser"


@get(
    "/users",
    opt={"permission": "users:read"},
    summary="List the location's staff",
    description=permission_doc("users:read"),
    responses=responses(*LIST_ERRORS),
)
async def list_users(
    crm: CrmDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    role: FromQuery[Role | None] = None,
    is_active: FromQuery[bool | None] = None,
) -> Listing[MemberOut]:
    """One page of members of the caller's location."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    cursors = crm.cursors
    query = before_service(
        pipeline,
        lambda: MembershipQuery(
            limit=limit, cursor=cursors.open(cursor), role=role, is_active=is_active
        ),
    )
    page = await pipeline.use_case(services.access.list_users(ctx, query))
    return Listing(
        items=[_member(m) for m in page.items], next_cursor=cursors.seal(page.next_cursor)
    )


@post(
    "/users",
    opt={"permission": "users:create"},
    summary="Give someone a role here",
    description=permission_doc(
        "users:create",
        f"Creates the user if new; an existing membership is updated. {IDEMPOTENCY_NOTE}",
    ),
    responses=responses(*WRITE_ERRORS),
    status_code=201,
    operation_class=_AddUserOperation,
)
async def add_user(
    crm: CrmDep, data: JSONBody[MemberIn], request: Request[Any, Any, Any]
) -> Response[MemberOut]:
    """Add a member to the caller's location."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    runtime = crm.runtime
    command = before_service(
        pipeline,
        lambda: AddUser(
            email=data.email,
            role=data.role,
            name=data.name,
            custom_permissions=tuple(
                PermissionOverride(resource=p.resource, action=p.action, effect=p.effect)
                for p in data.custom_permissions
            ),
        ),
    )

    async def produce() -> MemberOut:
        member = await pipeline.use_case(services.access.add_user(ctx, command))
        return _member(member)

    return await idempotent(request, pipeline, runtime, produce)


class MembershipChange(msgspec.Struct, forbid_unknown_fields=True):
    """Deactivate a membership (``is_active: false``)."""

    is_active: Literal[False]


@patch(
    "/users/{id:str}",
    opt={"permission": "users:update"},
    summary="Deactivate a membership",
    description=permission_doc(
        "users:update",
        "`id` is the membership id; the member's next request here is refused.",
    ),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
)
async def deactivate_user(
    crm: CrmDep, id: FromPath[str], data: JSONBody[MembershipChange]
) -> dict[str, Any]:
    """End a membership at the caller's location."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    membership = await pipeline.use_case(services.access.deactivate_membership(ctx, id))
    return {"membership_id": membership.id, "is_active": membership.is_active}


# --- IP rules -------------------------------------------------------------------


@get(
    "/ip-rules",
    opt={"permission": "ip_rules:read"},
    summary="List the location's IP allowlist",
    description=permission_doc("ip_rules:read"),
    responses=responses(*LIST_ERRORS),
)
async def list_ip_rules(
    crm: CrmDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    is_active: FromQuery[bool | None] = None,
) -> Listing[IpRuleOut]:
    """One page of IP rules."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    cursors = crm.cursors
    query = before_service(
        pipeline,
        lambda: IpRuleQuery(limit=limit, cursor=cursors.open(cursor), is_active=is_active),
    )
    page = await pipeline.use_case(services.access.list_ip_rules(ctx, query))
    return listing(page, IpRuleOut, cursors.seal)


@post(
    "/ip-rules",
    opt={"permission": "ip_rules:create"},
    summary="Allow a network",
    description=permission_doc(
        "ip_rules:create", f"IPv4 or IPv6 CIDR; host bits set is a 422. {IDEMPOTENCY_NOTE}"
    ),
    responses=responses(*WRITE_ERRORS),
    status_code=201,
)
async def allow_ip(
    crm: CrmDep, data: JSONBody[IpRuleIn], request: Request[Any, Any, Any]
) -> Response[IpRuleOut]:
    """Add a network to the allowlist."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    runtime = crm.runtime
    command = AllowIp(cidr=data.cidr, description=data.description)

    async def produce() -> IpRuleOut:
        return out(await pipeline.use_case(services.access.allow_ip(ctx, command)), IpRuleOut)

    return await idempotent(request, pipeline, runtime, produce)


@delete(
    "/ip-rules",
    opt={"permission": "ip_rules:delete"},
    summary="Remove a network",
    description=permission_doc(
        "ip_rules:delete", "`?cidr=` names the network. Removing your own network locks you out."
    ),
    responses=responses(*READ_ONE_ERRORS),
    status_code=204,
)
async def remove_ip(
    crm: CrmDep, cidr: Annotated[str, QueryParameter(max_length=MAX_FILTER_LENGTH)]
) -> None:
    """Remove a network from the allowlist."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    await pipeline.use_case(services.access.remove_ip(ctx, cidr))


# --- audit ----------------------------------------------------------------------


def _audit_query(
    pipeline: RequestState,
    limit: int,
    cursor: Callable[[], str | None],
    user_id: str | None,
    action: str | None,
    resource_type: str | None,
    resource_id: str | None,
    outcome: AuditOutcome | None,
    occurred_from: datetime | None,
    occurred_to: datetime | None,
) -> AuditQuery:
    return before_service(
        pipeline,
        lambda: AuditQuery(
            limit=limit,
            cursor=cursor(),
            user_id=user_id,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            outcome=outcome,
            occurred_from=occurred_from,
            occurred_to=occurred_to,
        ),
    )


@get(
    "/audit",
    opt={"permission": "audit:read"},
    summary="Search the audit trail",
    description=permission_doc("audit:read", "This location's entries, newest first."),
    responses=responses(*LIST_ERRORS),
)
async def list_audit(
    crm: CrmDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    user_id: Text = None,
    action: Text = None,
    resource_type: Text = None,
    resource_id: Text = None,
    outcome: FromQuery[AuditOutcome | None] = None,
    occurred_from: Instant = None,
    occurred_to: Instant = None,
) -> Listing[AuditEntryOut]:
    """One page of audit entries."""
    ctx = crm.ctx
    services = crm.services
    pipeline = crm.pipeline
    cursors = crm.cursors
    query = _audit_query(
        pipeline,
        limit,
        lambda: cursors.open(cursor),
        user_id,
        action,
        resource_type,
        resource_id,
        outcome,
        occurred_from,
        occurred_to,
    )
    page = await pipeline.use_case(services.audit.list(ctx, query))
    return listing(page, AuditEntryOut, cursors.seal)


_CSV_COLUMNS = tuple(AuditEntryOut.__struct_fields__)


class _ExportOperation(Operation):
    """The export's 200 is CSV or JSON lines (``format``): the document names both."""

    def to_schema(self) -> dict[str, Any]:
        """The operation's OpenAPI object with both media types of its 200."""
        schema = super().to_schema()
        content = schema["responses"]["200"]["content"]
        content["text/csv"]["schema"]["description"] = "`format=csv`: a header row, then entries"
        content["application/x-ndjson"] = {
            "schema": {"type": "string", "description": "`format=jsonl`: one entry per line"}
        }
        return schema


@get(
    "/audit/export",
    opt={"permission": "audit:read", "audit_action": "EXPORT", "audit_resource": "audit"},
    summary="Export the audit trail",
    description=permission_doc(
        "audit:read",
        f"`format=csv` or `format=jsonl` (JSON lines); same filters as the search; at most "
        f"{EXPORT_LIMIT} entries, newest first. The export itself is audited.",
    ),
    responses=responses(*LIST_ERRORS),
    media_type="text/csv",
    operation_class=_ExportOperation,
)
async def export_audit(
    crm: CrmDep,
    format: FromQuery[Literal["csv", "jsonl"]] = "csv",
    user_id: Text = None,
    action: Text = None,
    resource_type: Text = None,
    resource_id: Text = None,
    outcome: FromQuery[AuditOutcome | None] = None,
    occurred_from: Instant = None,
    occurred_to: Instant = None,
) -> Response[bytes]:
    """Download matching entries as CSV or JSON lines.

    Read page by page in the caller's location's unit of work; the guard has
    checked ``audit:read`` and the HTTP layer writes the one EXPORT entry.
    """
    ctx = crm.ctx
    pipeline = crm.pipeline
    runtime = crm.runtime
    query = _audit_query(
        pipeline,
        MAX_LIMIT,
        lambda: None,
        user_id,
        action,
        resource_type,
        resource_id,
        outcome,
        occurred_from,
        occurred_to,
    )
    entries: list[AuditEntry] = []
    async with runtime.gateway.unit_of_work(ctx.tenant_id) as uow:
        while len(entries) < EXPORT_LIMIT:
            page = await uow.audit.list(query)
            entries.extend(page.items)
            if page.next_cursor is None:
                break
            query = attrs.evolve(query, cursor=page.next_cursor)
    entries = entries[:EXPORT_LIMIT]
    pipeline.keep_audit(f"{len(entries)} entries as {format}")
    rows = [out(e, AuditEntryOut) for e in entries]
    if format == "jsonl":
        body = b"".join(msgspec.json.encode(row) + b"\n" for row in rows)
        return Response(body, media_type="application/x-ndjson", headers=_download("jsonl"))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_CSV_COLUMNS)
    for row in msgspec.to_builtins(rows):
        writer.writerow(["" if row[c] is None else row[c] for c in _CSV_COLUMNS])
    return Response(
        buffer.getvalue().encode(), media_type="text/csv; charset=utf-8", headers=_download("csv")
    )


def _download(extension: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="audit.{extension}"'}


def admin_router() -> Router:
    """Routes under ``/api/admin``."""
    return Router(
        path="/api/admin",
        route_handlers=[
            list_locations,
            create_location,
            get_location,
            update_location,
            list_users,
            add_user,
            deactivate_user,
            list_ip_rules,
            allow_ip,
            remove_ip,
            list_audit,
            export_audit,
        ],
        tags=["admin"],
        before_request=strict_query,
    )
