"""Queue port: hand events to a consumer (in process, Cloudflare Queues, …)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from crm_domain.entities import DomainEvent


@runtime_checkable
class QueueGateway(Protocol):
    """Publishes events to a named queue; at-least-once, so consumers dedupe on event id."""

    async def publish(self, queue: str, events: Sequence[DomainEvent]) -> None:
        """Publish events, in order; raise ``Unavailable`` if the queue cannot take them."""
        ...
