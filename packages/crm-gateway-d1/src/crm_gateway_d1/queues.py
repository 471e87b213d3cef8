"""A :class:`~crm_domain.ports.queue.QueueGateway` that publishes to Cloudflare Queues over HTTP.

Producer side (this module): each domain event becomes one JSON message

    {"id", "tenant_id", "name", "aggregate_type", "aggregate_id", "payload",
     "occurred_at"}          # occurred_at: ISO 8601, UTC

sent with ``POST …/accounts/{account}/queues/{queue_id}/messages/batch``
(``{"messages": [{"body", "content_type": "json"}, …]}``).  Cloudflare's
limits are respected before sending: a message over 128 KB is refused with
``ValidationError`` (events carry ids, not PHI, so this means a bug), and
events are split into batches of at most 100 messages and 256 KB, published
in order.  Throttling and 5xx answers are retried as for D1
(:class:`~crm_gateway_d1.client.CloudflareApi`); a queue that stays down is
``Unavailable``.  Queues deliver at least once, so consumers must dedupe on
the event ``id``.

Consumer side (not this module): either a Worker bound to the queue — its
``queue(batch, env)`` handler receives ``message.body`` as the JSON above and
acks each message (``d1-local/worker.mjs`` has a minimal one) — or an HTTP
pull consumer: ``POST …/queues/{queue_id}/messages/pull`` with
``{"batch_size", "visibility_timeout_ms"}``, then ``…/messages/ack`` with
``{"acks": [{"lease_id"}], "retries": [{"lease_id", "delay_seconds"}]}``.
The CRM's own worker (``crm worker``) consumes the transactional outbox, not
this queue; publishing to Cloudflare is for consumers that live on
Cloudflare.

Settings: ``CRM_CF_ACCOUNT_ID``, ``CRM_CF_QUEUES_API_TOKEN`` (falls back to
``CRM_D1_API_TOKEN``), ``CRM_CF_API_BASE`` (falls back to ``CRM_D1_API_BASE``),
and ``CRM_CF_QUEUE_IDS`` mapping the port's queue names to Cloudflare queue
ids (``automations=0123…,campaigns=4567…``; an unmapped name is used as the id).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any, Final

import httpx
from crm_domain.entities import DomainEvent
from crm_domain.errors import ValidationError

from crm_gateway_d1.client import DEFAULT_API_BASE, CloudflareApi, D1Unavailable

if TYPE_CHECKING:
    from crm_domain.ports.queue import QueueGateway

#: Cloudflare's limit on one message.
MAX_MESSAGE_BYTES: Final = 128_000
#: Cloudflare's limits on one batch.
MAX_BATCH_MESSAGES: Final = 100
MAX_BATCH_BYTES: Final = 256_000


def event_body(event: DomainEvent) -> dict[str, Any]:
    """The JSON message body for one event (what consumers receive)."""
    return {
        "id": event.id,
        "tenant_id": event.tenant_id,
        "name": event.name,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "payload": dict(event.payload),
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
    }


def _size(body: Mapping[str, Any]) -> int:
    return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())


def batches(events: Sequence[DomainEvent]) -> list[list[dict[str, Any]]]:
    """Events as message lists within Cloudflare's per-message and per-batch limits, in order."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    current_bytes = 0
    for event in events:
        body = event_body(event)
        size = _size(body)
        if size > MAX_MESSAGE_BYTES:
            raise ValidationError(
                "payload",
                f"event {event.id} is {size} bytes; a Cloudflare Queues message holds at most "
                f"{MAX_MESSAGE_BYTES}",
            )
        if current and (
            len(current) == MAX_BATCH_MESSAGES or current_bytes + size > MAX_BATCH_BYTES
        ):
            out.append(current)
            current, current_bytes = [], 0
        current.append({"body": body, "content_type": "json"})
        current_bytes += size
    if current:
        out.append(current)
    return out


class CloudflareQueue(CloudflareApi):
    """Publishes domain events to Cloudflare Queues (at least once, in order)."""

    service = "Cloudflare Queues"

    def __init__(
        self,
        account_id: str,
        *,
        api_token: str,
        api_base: str = DEFAULT_API_BASE,
        queue_ids: Mapping[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 30.0,
    ) -> None:
        if not account_id:
            raise ValidationError("CRM_CF_ACCOUNT_ID", "is required for Cloudflare Queues")
        if not api_token:
            raise ValidationError("CRM_CF_QUEUES_API_TOKEN", "is required for Cloudflare Queues")
        super().__init__(
            api_token=api_token,
            api_base=api_base,
            http=http,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self.account_id = account_id
        self.queue_ids = dict(queue_ids or {})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> CloudflareQueue:
        """Build from the ``CRM_CF_*`` settings (see the module docstring)."""
        env = os.environ if env is None else env
        ids: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in env.get("CRM_CF_QUEUE_IDS", "").split(","))):
            name, sep, queue_id = pair.partition("=")
            if not sep or not name.strip() or not queue_id.strip():
                raise ValidationError("CRM_CF_QUEUE_IDS", f"expected name=queue_id, got {pair!r}")
            ids[name.strip()] = queue_id.strip()
        return cls(
            env.get("CRM_CF_ACCOUNT_ID", ""),
            api_token=env.get("CRM_CF_QUEUES_API_TOKEN", "") or env.get("CRM_D1_API_TOKEN", ""),
            api_base=env.get("CRM_CF_API_BASE", "")
            or env.get("CRM_D1_API_BASE", "")
            or DEFAULT_API_BASE,
            queue_ids=ids,
            **options,
        )

    def url(self, queue: str) -> str:
        """The batch publishing URL of a queue (by the port's name)."""
        queue_id = self.queue_ids.get(queue, queue)
        return f"{self.api_base}/accounts/{self.account_id}/queues/{queue_id}/messages/batch"

    async def publish(self, queue: str, events: Sequence[DomainEvent]) -> None:
        """Publish events in order, in as few requests as the limits allow."""
        url = self.url(queue)
        for messages in batches(events):
            response = await self.post(url, {"messages": messages})
            _check(response)


def _check(response: httpx.Response) -> None:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and isinstance(body, Mapping) and body.get("success") is not False:
        return
    errors = body.get("errors") if isinstance(body, Mapping) else None
    message = (
        str(errors[0].get("message", ""))
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping)
        else response.reason_phrase
    )
    if response.status_code == 404:
        raise D1Unavailable(f"Cloudflare Queues: no such queue ({message})", status=404)
    raise ValidationError("events", f"Cloudflare Queues refused the batch: {message}")


__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "CloudflareQueue",
    "batches",
    "event_body",
]


if TYPE_CHECKING:  # mypy proves the class satisfies the port structurally

    def _is_queue(queue: CloudflareQueue) -> QueueGateway:
        return queue
