"""A small outbox consumer loop: claim, handle, complete; retry with backoff; dead letter.

Delivery is at least once: a message is leased when claimed, and if the
consumer dies before completing it the lease lapses and another consumer
claims it again.  So handlers must be idempotent on ``message.event.id``;
then nothing is lost and nothing takes effect twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import anyio
from crm_domain.clock import SystemClock
from crm_domain.entities import OutboxMessage
from crm_domain.errors import Unavailable
from crm_domain.ports.clock import Clock
from crm_domain.ports.gateway import DatabaseGateway

log = logging.getLogger(__name__)

Handler = Callable[[OutboxMessage], Awaitable[None]]


class OutboxRelay:
    """Feeds outbox messages to ``handler`` (e.g. publish to a queue, run automations).

    A failed message is retried after ``backoff_base * 2 ** (attempts - 1)``
    seconds (capped at ``backoff_max``), and moved to the dead letter once it
    has been attempted ``max_attempts`` times.
    """

    def __init__(
        self,
        gateway: DatabaseGateway,
        handler: Handler,
        *,
        clock: Clock | None = None,
        batch_size: int = 100,
        lease_seconds: float = 60.0,
        max_attempts: int = 5,
        backoff_base: float = 2.0,
        backoff_max: float = 600.0,
    ) -> None:
        self.gateway = gateway
        self.handler = handler
        self.clock = clock or SystemClock()
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max

    def backoff(self, attempts: int) -> float:
        """Seconds to wait before the next attempt after ``attempts`` failures."""
        return float(min(self.backoff_max, self.backoff_base * 2.0 ** max(0, attempts - 1)))

    async def run_once(self, stop: anyio.Event | None = None) -> int:
        """Claim one batch and handle it; return how many messages were claimed.

        With ``stop`` set midway, the rest of the batch is left unhandled: its
        leases run out after ``lease_seconds`` and the next worker (or this one
        restarted) takes the messages then, so a shutdown waits for one message,
        not a whole batch.
        """
        async with self.gateway.unit_of_work() as uow:
            claimed = list(
                await uow.outbox.claim(self.clock.now(), self.batch_size, self.lease_seconds)
            )
            await uow.commit()
        for message in claimed:
            if stop is not None and stop.is_set():
                break
            try:
                await self.handler(message)
            except Exception as exc:  # a handler's failure is data: record it, go on
                log.warning("outbox %s %s failed: %s", message.event.name, message.event.id, exc)
                dead = message.attempts >= self.max_attempts
                retry_at = self.clock.now() + timedelta(seconds=self.backoff(message.attempts))
                async with self.gateway.unit_of_work() as uow:
                    await uow.outbox.fail(
                        message.event.id, f"{type(exc).__name__}: {exc}", retry_at, dead=dead
                    )
                    await uow.commit()
                continue
            # Completed one by one: a crash re-delivers at most the message in hand.
            async with self.gateway.unit_of_work() as uow:
                await uow.outbox.complete([message.event.id])
                await uow.commit()
        return len(claimed)

    async def run(self, stop: anyio.Event, *, idle_seconds: float = 1.0) -> None:
        """Loop until ``stop`` is set, sleeping ``idle_seconds`` when nothing is due."""
        while not stop.is_set():
            try:
                claimed = await self.run_once(stop)
            except Unavailable as exc:
                log.warning("outbox relay: database unavailable (%s); retrying", exc)
                claimed = 0
            if claimed == 0:
                with anyio.move_on_after(idle_seconds):
                    await stop.wait()


__all__ = ["Handler", "OutboxRelay"]
