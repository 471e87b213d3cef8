"""What the resource routes share: tenancy checks on input, idempotent POSTs."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import msgspec
from crm_domain.entities import IdempotencyRecord, IdempotencyState
from crm_domain.errors import Conflict, CrmError, PermissionDenied, Unavailable, ValidationError
from litestar import Request, Response

from crm_http_litestar.pipeline import RequestState
from crm_http_litestar.problems import InProgress
from crm_http_litestar.runtime import CrmRuntime

MAX_IDEMPOTENCY_KEY = 255

#: How long a reservation that never got its answer blocks its key.  Past it,
#: one retry may take the key over and run the create again.  24 h: no request
#: lives anywhere near that long (server and proxy timeouts are minutes), so
#: the original is certainly finished or dead, and it matches the replay window
#: clients know from Stripe-like APIs (keys are meant for retries within a day).
#: A shorter bound would re-run creates whose first attempt did commit but died
#: before storing its answer sooner; a longer one only locks such keys longer.
IDEMPOTENCY_PENDING_TIMEOUT = timedelta(hours=24)

#: Seconds a client should wait before retrying a key that is still in progress.
RETRY_AFTER_SECONDS = 1

#: Look-then-reserve rounds before answering "in progress" (a lost race looks again).
RESERVE_ATTEMPTS = 3

#: What every POST that honours ``Idempotency-Key`` says about it in OpenAPI.
IDEMPOTENCY_NOTE = (
    "Send `Idempotency-Key` (1-255 characters, scoped to you and the location) to make"
    " retries safe: the first request creates, retries replay its stored answer"
    " (`Idempotent-Replayed: true`). While the first is still running, or if it died"
    " before storing its answer (for up to 24 h), a retry is a 409 with `Retry-After`;"
    " the key with another body is a 409. A refused request (4xx) frees the key, so the"
    " corrected request may reuse it."
)

IN_PROGRESS_DETAIL = "a request with this Idempotency-Key is still in progress; retry later"

logger = logging.getLogger("crm_http_litestar")

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
    """Run a create at most once per ``Idempotency-Key``; a retry gets the stored answer.

    The key is scoped to the user and location.  It is **reserved** in a unit
    of work of its own, committed before ``produce()`` runs, so of several
    concurrent first uses exactly one creates (the store's unique key decides);
    the others get 409 with ``Retry-After`` while it runs, then the replay.

    * ``produce()`` succeeds: the reservation is completed with the answer;
      retries replay it (``Idempotent-Replayed: true``).  If storing the answer
      fails, the create still happened: the client gets its 201, and the key
      stays pending (409 to retries) rather than risk a second create.
    * ``produce()`` is refused with a domain error other than ``Unavailable``
      (422, 403, 404, 409): the service refused before committing, so the
      reservation is **released** and the client may fix the request and retry
      with the same key.  (Stripe instead stores the first error and replays
      it; we release because our refusals are validation and state checks
      that the client is expected to fix and retry, and a stored 422 would
      force a new key for the corrected request, which is what clients get
      wrong.)  A refused request never created anything, so releasing cannot
      cause a duplicate.
    * Anything else (``Unavailable``, a bug, the process dying, the client
      going away): we cannot know whether the create committed, so the key
      stays pending; retries get 409 until :data:`IDEMPOTENCY_PENDING_TIMEOUT`,
      after which one request may take the reservation over.

    The same key with a different method, path or body is a 409.  Replays and
    refusals are audited by the HTTP layer (no use case runs).
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
    now = runtime.clock.now()
    reservation = IdempotencyRecord(
        tenant_id=tenant_id,
        key=key,
        user_id=user_id,
        request_fingerprint=fingerprint,
        state=IdempotencyState.PENDING,
        created_at=now,
    )
    stale_before = now - IDEMPOTENCY_PENDING_TIMEOUT
    for _attempt in range(RESERVE_ATTEMPTS):
        async with runtime.gateway.unit_of_work(tenant_id) as uow:
            stored = await uow.idempotency.get(key, user_id)
        if stored is not None and not stored.is_stale(stale_before):
            return _answer_from(stored, fingerprint, pipeline)
        try:
            async with runtime.gateway.unit_of_work(tenant_id) as uow:
                await uow.idempotency.reserve(reservation, stale_before=stale_before)
                await uow.commit()
        except Conflict:
            continue  # another request reserved, took over or completed first: look again
        if stored is not None:
            logger.warning(
                "took over an Idempotency-Key reservation pending since %s (its request never "
                "stored an answer)",
                stored.created_at.isoformat(),
            )
        break
    else:
        pipeline.keep_audit("Idempotency-Key in progress")
        raise InProgress(IN_PROGRESS_DETAIL, retry_after=RETRY_AFTER_SECONDS)

    try:
        result = await produce()
    except Unavailable:
        raise  # the create may have committed: the key stays pending
    except CrmError:
        await _release(runtime, reservation)
        raise
    encoded = msgspec.json.encode(result)
    try:
        async with runtime.gateway.unit_of_work(tenant_id) as uow:
            await uow.idempotency.complete(
                reservation,
                status_code=status_code,
                response_body=encoded.decode(),
                completed_at=runtime.clock.now(),
            )
            await uow.commit()
    except Exception:
        # The create committed; answering it is right.  Retries get 409 until the
        # reservation goes stale — never a second create.
        logger.exception("could not store the answer of an Idempotency-Key; it stays pending")
    return Response(content=encoded, status_code=status_code, media_type="application/json")


def _answer_from(
    stored: IdempotencyRecord, fingerprint: str, pipeline: RequestState
) -> Response[Any]:
    """The answer to a retry: replay a stored answer, or 409 (other request / in progress)."""
    if stored.request_fingerprint != fingerprint:
        pipeline.keep_audit("Idempotency-Key reused for another request")
        raise Conflict("this Idempotency-Key was used for a different request")
    if stored.pending or stored.status_code is None or stored.response_body is None:
        pipeline.keep_audit("Idempotency-Key in progress")
        raise InProgress(IN_PROGRESS_DETAIL, retry_after=RETRY_AFTER_SECONDS)
    pipeline.keep_audit("idempotent replay")
    return Response(
        content=stored.response_body.encode(),
        status_code=stored.status_code,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


async def _release(runtime: CrmRuntime, reservation: IdempotencyRecord) -> None:
    """Give the key back after a refused create; on failure it stays pending (logged)."""
    try:
        async with runtime.gateway.unit_of_work(reservation.tenant_id) as uow:
            await uow.idempotency.release(reservation)
            await uow.commit()
    except Exception:
        logger.exception("could not release an Idempotency-Key after a refused request")
