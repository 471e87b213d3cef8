"""What the resource routes share: tenancy checks on input, idempotent POSTs."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from crm_domain.entities import IdempotencyRecord
from crm_domain.errors import Conflict, PermissionDenied, ValidationError
from litestar import Request, Response

from crm_http_litestar.pipeline import RequestState
from crm_http_litestar.runtime import CrmRuntime

MAX_IDEMPOTENCY_KEY = 255

T = TypeVar("T")


def refuse_other_location(pipeline: RequestState, tenant_id: str | None) -> None:
    """A body or filter naming another location than the caller's is refused (403).

    The location always comes from the token or host, never from input; naming
    one's own location is allowed (and pointless).
    """
    if tenant_id is not None and tenant_id != pipeline.tenant_id:
        pipeline.keep_audit("input named another location")
        raise PermissionDenied("you can only work on your own location's data")


def before_service(pipeline: RequestState, build: Callable[[], T]) -> T:
    """Build a use case's argument; a failure is audited by the HTTP layer (no use case ran)."""
    try:
        return build()
    except ValidationError as exc:
        pipeline.keep_audit(f"ValidationError: {exc.field}")
        raise


async def idempotent(
    request: Request[Any, Any, Any],
    pipeline: RequestState,
    runtime: CrmRuntime,
    produce: Callable[[], Awaitable[msgspec.Struct]],
    *,
    status_code: int = 201,
) -> Response[Any]:
    """Run a create once per ``Idempotency-Key``; a retry gets the stored answer.

    The key is scoped to the user and location.  The same key with a different
    method, path or body is a 409.  Replays are audited by the HTTP layer (no
    use case runs, but stored data leaves again).
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        return Response(await produce(), status_code=status_code)
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        pipeline.keep_audit("bad Idempotency-Key")
        raise ValidationError("Idempotency-Key", f"must be 1-{MAX_IDEMPOTENCY_KEY} characters")
    tenant_id, user_id = pipeline.tenant_id, pipeline.user_id
    if tenant_id is None or user_id is None:
        raise PermissionDenied("no location")
    body = await request.body()
    fingerprint = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
    ).hexdigest()
    async with runtime.gateway.unit_of_work(tenant_id) as uow:
        stored = await uow.idempotency.get(key, user_id)
    if stored is not None:
        if stored.request_fingerprint != fingerprint:
            pipeline.keep_audit("Idempotency-Key reused for another request")
            raise Conflict("this Idempotency-Key was used for a different request")
        pipeline.keep_audit("idempotent replay")
        return Response(
            content=stored.response_body.encode(),
            status_code=stored.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    result = await produce()
    encoded = msgspec.json.encode(result)
    record = IdempotencyRecord(
        tenant_id=tenant_id,
        key=key,
        user_id=user_id,
        request_fingerprint=fingerprint,
        status_code=status_code,
        response_body=encoded.decode(),
        created_at=runtime.clock.now(),
    )
    try:
        async with runtime.gateway.unit_of_work(tenant_id) as uow:
            await uow.idempotency.put(record)
            await uow.commit()
    except Conflict:
        pass  # a concurrent retry stored its answer first; both answers are the same shape
    return Response(content=encoded, status_code=status_code, media_type="application/json")
