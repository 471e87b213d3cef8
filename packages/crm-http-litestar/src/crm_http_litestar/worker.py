"""The queue consumer: relays the transactional outbox to the handlers of each event.

Runs inside the server process by default (the embedded setup of the README's
first command) or alone with ``crm worker``.  The loop itself — lease, hand
over, complete one by one, retry with exponential backoff, dead letter after
``max_attempts`` — is the SQL gateway's :class:`crm_gateway_sql.outbox.OutboxRelay`
(it works on any gateway through the outbox port).  This module supplies what
a message is handed to: the configured queue, if any, and the handlers
registered for its event name.  Delivery is at least once, so handlers are
idempotent on ``event.id``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import anyio
from crm_domain.entities import OutboxMessage
from crm_domain.ports.queue import QueueGateway
from crm_gateway_sql.outbox import OutboxRelay

if TYPE_CHECKING:
    from crm_http_litestar.runtime import CrmRuntime

logger = logging.getLogger("crm_http_litestar.worker")

#: A consumer of one event kind.
EventHandler = Callable[[OutboxMessage], Awaitable[None]]


class EventDispatcher:
    """Hands one outbox message to the queue and to the handlers of its event name."""

    def __init__(
        self,
        handlers: Mapping[str, Sequence[EventHandler]] | None = None,
        queue: QueueGateway | None = None,
        queue_name: str = "crm-events",
    ) -> None:
        self._handlers = {name: list(items) for name, items in (handlers or {}).items()}
        self._queue = queue
        self._queue_name = queue_name

    async def __call__(self, message: OutboxMessage) -> None:
        """Deliver; any exception sends the message back for a retry."""
        logger.debug(
            "delivering event %s %s attempt %d in process %d",
            message.event.id,
            message.event.name,
            message.attempts,
            os.getpid(),
        )
        if self._queue is not None:
            await self._queue.publish(self._queue_name, [message.event])
        for handler in self._handlers.get(message.event.name, ()):
            await handler(message)


#: Attempts before an event is dead-lettered.  With the relay's back-off (2 s doubling,
#: capped at 10 min) twelve attempts ride out a provider outage of about 37 minutes
#: before an SMS or a campaign stops being retried; five gave up after about 30 s.
DEFAULT_MAX_ATTEMPTS = 12


def make_relay(
    runtime: CrmRuntime,
    *,
    handlers: Mapping[str, Sequence[EventHandler]] | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> OutboxRelay:
    """The outbox relay of this runtime (queue from the services, handlers as given)."""
    dispatcher = EventDispatcher(handlers, runtime.services.queue)
    return OutboxRelay(runtime.gateway, dispatcher, clock=runtime.clock, max_attempts=max_attempts)


def domain_handlers(runtime: CrmRuntime) -> Mapping[str, Sequence[EventHandler]]:
    """The domain's own outbox consumers (``Services.event_handlers``).

    Today: warmness rescored on touchpoint and booking events by the configured
    AI provider (idempotent on the event id).
    """
    return runtime.services.event_handlers()


class InProcessWorker:
    """Runs the relay until stopped, with the domain's handlers registered."""

    def __init__(self, runtime: CrmRuntime, *, poll_seconds: float = 1.0) -> None:
        self.relay = make_relay(runtime, handlers=domain_handlers(runtime))
        self._poll = poll_seconds
        self._stop = anyio.Event()
        self._done = anyio.Event()
        #: The background task when started with :meth:`start` (held: tasks are weakly referenced).
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in a background task of the running loop."""
        self.task = asyncio.create_task(self.run(), name="crm-outbox-worker")

    async def run(self) -> None:
        """Relay until :meth:`stop`; errors other than an unavailable store are logged."""
        try:
            while not self._stop.is_set():
                try:
                    await self.relay.run(self._stop, idle_seconds=self._poll)
                except Exception:  # keep the worker alive; the next loop retries
                    logger.exception("outbox relay failed")
                    with anyio.move_on_after(self._poll):
                        await self._stop.wait()
        finally:
            self._done.set()

    def request_stop(self) -> None:
        """Ask the loop to end after the current message (safe from a signal handler)."""
        self._stop.set()

    async def stop(self) -> None:
        """Stop after the current message and wait for the loop to end."""
        self._stop.set()
        if self.task is not None:
            await self.task
        else:
            await self._done.wait()


async def start_in_process_worker(runtime: CrmRuntime) -> InProcessWorker:
    """Start the embedded worker as a background task of the server's loop."""
    worker = InProcessWorker(runtime)
    worker.start()
    return worker


__all__ = [
    "EventDispatcher",
    "EventHandler",
    "InProcessWorker",
    "domain_handlers",
    "make_relay",
    "start_in_process_worker",
]
