"""The queue consumer: relays the transactional outbox to the handlers of each event.

Runs inside the server process by default (the embedded setup of the README's
first command) or alone with ``crm worker``.  It leases pending messages
(``uow.outbox.claim``), hands each to the handlers registered for its event
name and to the configured queue (if any), then marks it done; a failing
handler gets the message back with exponential backoff, and after
``max_attempts`` it moves to the dead letter.  Delivery is at least once, so
handlers are idempotent on ``event.id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from crm_domain.entities import OutboxMessage
from crm_domain.ports.queue import QueueGateway

if TYPE_CHECKING:
    from crm_http_litestar.runtime import CrmRuntime

logger = logging.getLogger("crm_http_litestar.worker")

#: A consumer of one event kind.
EventHandler = Callable[[OutboxMessage], Awaitable[None]]


class OutboxRelay:
    """Drains the outbox to handlers; one :meth:`drain_once` per poll."""

    def __init__(
        self,
        runtime: CrmRuntime,
        *,
        handlers: Mapping[str, Sequence[EventHandler]] | None = None,
        queue: QueueGateway | None = None,
        queue_name: str = "crm-events",
        batch: int = 100,
        max_attempts: int = 8,
    ) -> None:
        self._runtime = runtime
        self._handlers = {name: list(items) for name, items in (handlers or {}).items()}
        self._queue = queue if queue is not None else runtime.services.queue
        self._queue_name = queue_name
        self._batch = batch
        self._max_attempts = max_attempts
        self.delivered = 0
        self.failed = 0

    async def drain_once(self) -> int:
        """Handle one batch of due messages; return how many were completed."""
        runtime = self._runtime
        async with runtime.gateway.unit_of_work(None) as uow:
            messages = await uow.outbox.claim(runtime.clock.now(), limit=self._batch)
            await uow.commit()
        done: list[str] = []
        for message in messages:
            try:
                await self._deliver(message)
            except Exception as exc:  # one bad event must not block the others
                await self._retry_later(message, exc)
                continue
            done.append(message.event.id)
        if done:
            async with runtime.gateway.unit_of_work(None) as uow:
                await uow.outbox.complete(done)
                await uow.commit()
        self.delivered += len(done)
        return len(done)

    async def _deliver(self, message: OutboxMessage) -> None:
        if self._queue is not None:
            await self._queue.publish(self._queue_name, [message.event])
        for handler in self._handlers.get(message.event.name, ()):
            await handler(message)

    async def _retry_later(self, message: OutboxMessage, error: Exception) -> None:
        self.failed += 1
        attempts = max(1, message.attempts)  # claim() already counted this attempt
        dead = attempts >= self._max_attempts
        delay = timedelta(seconds=min(3600, 2**attempts))
        logger.warning(
            "event %s (%s) failed, attempt %d%s: %r",
            message.event.id,
            message.event.name,
            attempts,
            " — dead-lettered" if dead else "",
            error,
        )
        async with self._runtime.gateway.unit_of_work(None) as uow:
            await uow.outbox.fail(
                message.event.id,
                f"{type(error).__name__}: {error}"[:2000],
                self._runtime.clock.now() + delay,
                dead=dead,
            )
            await uow.commit()


class InProcessWorker:
    """Polls the outbox until stopped."""

    def __init__(self, runtime: CrmRuntime, *, poll_seconds: float = 1.0) -> None:
        self.relay = OutboxRelay(runtime)
        self._poll = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Start polling in a background task."""
        self._task = asyncio.create_task(self.run(), name="crm-outbox-worker")

    async def run(self) -> None:
        """Drain, then wait ``poll_seconds`` (less when a batch was full), until :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                handled = await self.relay.drain_once()
            except Exception:  # the store may be down for a while; keep trying
                logger.exception("outbox drain failed")
                handled = 0
            if handled:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._poll)

    async def stop(self) -> None:
        """Stop after the current batch."""
        self._stopping.set()
        if self._task is not None:
            await self._task


async def start_in_process_worker(runtime: CrmRuntime) -> InProcessWorker:
    """Start the embedded worker."""
    worker = InProcessWorker(runtime)
    await worker.start()
    return worker


__all__ = ["EventHandler", "InProcessWorker", "OutboxRelay", "start_in_process_worker"]
