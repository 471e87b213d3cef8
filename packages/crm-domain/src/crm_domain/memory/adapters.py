"""In-memory queue and recording mail/SMS senders for tests, examples and demos.

They keep what they were given so a test asserts on the end state, and can be
told to fail with :class:`~crm_domain.errors.Unavailable` to exercise retries.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from crm_domain.entities import DomainEvent
from crm_domain.errors import Unavailable
from crm_domain.ports.messaging import OutgoingEmail, OutgoingSms, SendResult


class _Outage:
    """Shared switch: fail the next *n* calls, or every call until recovered."""

    def __init__(self) -> None:
        self._remaining: int | None = 0

    def fail(self, times: int | None = None) -> None:
        """Fail the next ``times`` calls (every call when ``None``) with ``Unavailable``."""
        self._remaining = times

    def recover(self) -> None:
        """Stop failing."""
        self._remaining = 0

    def _check(self, what: str) -> None:
        if self._remaining is None:
            raise Unavailable(f"{what} is down (told to fail)")
        if self._remaining > 0:
            self._remaining -= 1
            raise Unavailable(f"{what} is down (told to fail)")


class InMemoryQueue(_Outage):
    """A :class:`~crm_domain.ports.queue.QueueGateway` that records events per queue."""

    def __init__(self) -> None:
        super().__init__()
        self.published: dict[str, list[DomainEvent]] = {}

    async def publish(self, queue: str, events: Sequence[DomainEvent]) -> None:
        """Record the events in order (all of them, or none when failing)."""
        self._check(f"queue {queue!r}")
        self.published.setdefault(queue, []).extend(events)

    def events(self, queue: str) -> list[DomainEvent]:
        """Everything published to ``queue`` so far."""
        return list(self.published.get(queue, ()))


class RecordingMailer(_Outage):
    """A :class:`~crm_domain.ports.messaging.Mailer` that keeps every email it "sends"."""

    def __init__(self, provider: str = "memory") -> None:
        super().__init__()
        self.provider = provider
        self.sent: list[OutgoingEmail] = []
        self._ids = itertools.count(1)

    async def send(self, message: OutgoingEmail) -> SendResult:
        """Keep the message and return a provider id ``email-<n>``."""
        self._check(f"mailer {self.provider!r}")
        self.sent.append(message)
        return SendResult(provider=self.provider, provider_message_id=f"email-{next(self._ids)}")


class RecordingSmsSender(_Outage):
    """A :class:`~crm_domain.ports.messaging.SmsSender` that keeps every SMS it "sends"."""

    def __init__(self, provider: str = "memory") -> None:
        super().__init__()
        self.provider = provider
        self.sent: list[OutgoingSms] = []
        self._ids = itertools.count(1)

    async def send(self, message: OutgoingSms) -> SendResult:
        """Keep the message and return a provider id ``sms-<n>``."""
        self._check(f"SMS sender {self.provider!r}")
        self.sent.append(message)
        return SendResult(provider=self.provider, provider_message_id=f"sms-{next(self._ids)}")


__all__ = ["InMemoryQueue", "RecordingMailer", "RecordingSmsSender"]
