"""A small async circuit breaker and the retry policy for model calls."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import tenacity


class CircuitOpen(Exception):
    """Calls are refused until the breaker's reset time has passed."""


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; lets one trial call through
    after ``reset_after`` seconds (half-open) and closes again when it succeeds.

    Protects the clinic's request path from waiting on timeouts from a provider
    that is plainly down.  Not shared across processes: each worker learns alone.
    """

    def __init__(
        self,
        threshold: int,
        reset_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        """Raise ``CircuitOpen`` when the call must not be made."""
        state = self.state
        if state == "open":
            raise CircuitOpen("the AI provider failed repeatedly; waiting before retrying")
        if state == "half-open":
            if self._trial_running:
                raise CircuitOpen("a trial call to the AI provider is in progress")
            self._trial_running = True

    def success(self) -> None:
        """Record a successful call (closes the breaker)."""
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def abandon(self) -> None:
        """A call was cancelled: neither success nor failure, but free the trial slot."""
        self._trial_running = False

    def failure(self) -> None:
        """Record a failed call (may open the breaker)."""
        self._failures += 1
        self._trial_running = False
        if self._opened_at is not None or self._failures >= self.threshold:
            self._opened_at = self._clock()


class RetryableStatus(Exception):
    """A 429 or 5xx answer: worth another try after ``retry_after`` seconds, if given."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, RetryableStatus | httpx.TransportError)


def retry_policy(max_retries: int, max_wait: float) -> tenacity.AsyncRetrying:
    """Retry 429/5xx and transport errors (timeouts included) with jittered backoff,
    honouring ``Retry-After`` up to ``max_wait`` seconds."""
    backoff = tenacity.wait_exponential_jitter(multiplier=0.2, max=max_wait, jitter=0.2)

    def wait(state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            return min(exc.retry_after, max_wait)
        return float(backoff(state))

    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(_retryable),
        stop=tenacity.stop_after_attempt(max_retries + 1),
        wait=wait,
        reraise=True,
    )


__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
    "RetryableStatus",
    "parse_retry_after",
    "retry_policy",
]
