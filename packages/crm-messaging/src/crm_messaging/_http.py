"""What the HTTP providers share: timeouts, retries and the mapping of failures.

Retry rule (one place, so every provider sends at most once per accepted answer):

* retried with jittered exponential back-off, honouring ``Retry-After`` up to a
  cap: 429 and 5xx answers (the provider says it did not take the message), and
  transport errors raised before the request was written (connect errors and
  connect/pool timeouts);
* not retried: a read timeout or a dropped connection after the request was
  sent, because the provider may have accepted the message and a retry could
  send it twice.  That is ``Unavailable`` at once, saying the outcome is unknown;
* 401/403 are a configuration error naming the credential settings, never retried.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import attrs
import httpx
import tenacity
from crm_domain.errors import Unavailable

from crm_messaging.errors import MessagingConfigurationError

log = logging.getLogger("crm_messaging")

#: Statuses that say "not processed, try later".
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Transport errors raised before any byte of the request reached the provider.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@attrs.frozen(slots=True, kw_only=True)
class HttpPolicy:
    """Timeout and retry budget of one provider."""

    timeout: float = 10.0
    max_retries: int = 2
    #: Cap on one wait (and on a server's Retry-After), in seconds.
    max_retry_wait: float = 10.0


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
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (RetryableStatus, *_NOT_SENT))


def retry_policy(policy: HttpPolicy) -> tenacity.AsyncRetrying:
    """tenacity's retrying loop for ``policy`` (see the module docstring)."""
    backoff = tenacity.wait_exponential_jitter(
        multiplier=0.2, max=policy.max_retry_wait, jitter=0.2
    )

    def wait(state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_retry_wait)
        return min(float(backoff(state)), policy.max_retry_wait)

    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(_retryable),
        stop=tenacity.stop_after_attempt(policy.max_retries + 1),
        wait=wait,
        reraise=True,
    )


def new_client(policy: HttpPolicy, *, auth: httpx.Auth | None = None) -> httpx.AsyncClient:
    """A pooled client (connections are reused across sends); no redirects followed,
    so credentials are never replayed to another host."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(policy.timeout),
        follow_redirects=False,
        headers={"Accept": "application/json"},
        auth=auth,
    )


async def request_with_retries(
    provider: str,
    policy: HttpPolicy,
    call: Callable[[], Awaitable[httpx.Response]],
    *,
    retry_on: Callable[[httpx.Response], bool] | None = None,
) -> httpx.Response:
    """Run ``call`` under the retry rule; return the final non-retryable response.

    ``retry_on`` adds provider-specific retryable answers (Gmail's 403 rate limits).
    Raises ``Unavailable`` when retries run out or the outcome is unknown.
    """
    try:
        async for attempt in retry_policy(policy):
            with attempt:
                response = await call()
                if response.status_code in RETRY_STATUSES or (
                    retry_on is not None and retry_on(response)
                ):
                    log.info("%s answered HTTP %s; may retry", provider, response.status_code)
                    raise RetryableStatus(
                        response.status_code,
                        parse_retry_after(response.headers.get("Retry-After")),
                    )
    except RetryableStatus as exc:
        raise Unavailable(
            f"{provider} is unavailable (HTTP {exc.status} after {policy.max_retries + 1} attempts)"
        ) from None
    except _NOT_SENT as exc:
        raise Unavailable(f"{provider} cannot be reached ({type(exc).__name__})") from None
    except httpx.TimeoutException as exc:
        raise Unavailable(
            f"{provider} did not answer in time ({type(exc).__name__}); the message may or "
            "may not have been accepted, so it was not sent again"
        ) from None
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"{provider} failed mid-request ({type(exc).__name__}); the message may or may "
            "not have been accepted, so it was not sent again"
        ) from None
    return response


def refuse_credentials(provider: str, response: httpx.Response, settings: tuple[str, ...]) -> None:
    """Raise the configuration error for a 401/403 answer (no-op otherwise)."""
    if response.status_code in (401, 403):
        raise MessagingConfigurationError(
            f"{provider} refused the credentials (HTTP {response.status_code})",
            settings=settings,
        )


def json_body(response: httpx.Response) -> object:
    """The decoded JSON body, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def mask_number(number: str) -> str:
    """A phone number reduced to its last three digits, for logs (no PHI)."""
    digits = [c for c in number if c.isdigit()]
    return "***" + "".join(digits[-3:])


__all__ = [
    "RETRY_STATUSES",
    "HttpPolicy",
    "RetryableStatus",
    "json_body",
    "mask_number",
    "new_client",
    "parse_retry_after",
    "refuse_credentials",
    "request_with_retries",
    "retry_policy",
]
