"""An async client for Cloudflare D1's REST API, on httpx.

One request carries one statement or one *batch*; a batch is D1's only
transaction (atomic: all statements apply or none).  The client enforces D1's
per-statement limits before sending (100 bound parameters, 100 KB of SQL),
retries 429 and 5xx answers with exponential backoff that honours
``Retry-After``, and turns Cloudflare's errors into domain errors:

* HTTP 429 / 5xx / transport failures after the last attempt, 401/403 (a bad
  token) → :class:`D1Unavailable` (an :class:`~crm_domain.errors.Unavailable`);
* ``UNIQUE constraint failed`` → :class:`D1Conflict` (a ``Conflict``);
* any other refused statement → :class:`D1QueryError` (a ``ValidationError``).

Each error keeps D1's ``code`` and ``message`` so callers can tell failures
apart (the gateway recognises its audit-chain guard that way).

Retrying a *write* after a 5xx is safe for this project's statements: rows are
inserted under client-generated primary keys, so a batch that did commit
before the error fails its replay with ``Conflict`` instead of applying twice.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import anyio
import attrs
import httpx
from crm_domain.errors import Conflict, Unavailable, ValidationError

#: Cloudflare's API root; point ``CRM_D1_API_BASE`` at a local D1 for tests.
DEFAULT_API_BASE: Final = "https://api.cloudflare.com/client/v4"
#: D1 refuses statements with more bound parameters than this.
MAX_PARAMS: Final = 100
#: D1 refuses SQL statements longer than this many bytes.
MAX_STATEMENT_BYTES: Final = 100_000

_JITTER = secrets.SystemRandom()

#: A value D1 can bind: JSON scalars (booleans travel as 0/1).
Param = str | int | float | None


class D1Error(Exception):
    """Mixin carrying D1's error code and message."""

    code: int | None
    message: str


class D1Unavailable(Unavailable, D1Error):
    """Cloudflare (D1, Queues) could not be reached, throttled us too long, or refused the token."""

    def __init__(self, detail: str, *, code: int | None = None, status: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.message = detail
        self.status = status


class D1Conflict(Conflict, D1Error):
    """A statement broke a UNIQUE constraint; the whole batch was rolled back."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(f"duplicate: {message}")
        self.code = code
        self.message = message


class D1QueryError(ValidationError, D1Error):
    """D1 refused a statement (bad SQL, a NOT NULL/CHECK/foreign key failure, a limit)."""

    def __init__(self, message: str, *, code: int | None = None, field: str = "sql") -> None:
        super().__init__(field, message)
        self.code = code
        self.message = message


@attrs.frozen(slots=True)
class D1Statement:
    """One SQL statement with its positional (``?``) parameters."""

    sql: str
    params: tuple[Param, ...] = ()

    def payload(self) -> dict[str, Any]:
        """The statement as D1's REST API expects it."""
        return {"sql": self.sql, "params": list(self.params)}


@attrs.frozen(slots=True)
class D1Meta:
    """What D1 reports about one executed statement."""

    changes: int = 0
    last_row_id: int = 0
    rows_read: int = 0
    rows_written: int = 0
    duration: float = 0.0


@attrs.frozen(slots=True)
class D1Result:
    """Rows (as column-name mappings) and meta of one executed statement."""

    rows: tuple[Mapping[str, Any], ...]
    meta: D1Meta


def check_statement(statement: D1Statement) -> None:
    """Refuse, before sending, a statement D1 would refuse for its size limits."""
    if len(statement.params) > MAX_PARAMS:
        raise D1QueryError(
            f"{len(statement.params)} bound parameters; D1 allows at most {MAX_PARAMS} per "
            "statement — split the statement (crm_gateway_d1.sql.chunked_insert does this "
            "for multi-row inserts)",
            field="params",
        )
    size = len(statement.sql.encode())
    if size > MAX_STATEMENT_BYTES:
        raise D1QueryError(
            f"statement is {size} bytes; D1 allows at most {MAX_STATEMENT_BYTES}", field="sql"
        )
    for value in statement.params:
        if value is not None and not isinstance(value, str | int | float):
            raise D1QueryError(
                f"cannot send a {type(value).__name__} parameter over D1's REST API",
                field="params",
            )


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse ``Retry-After`` (delta seconds or an HTTP date); ``None`` when absent or bad."""
    if not value:
        return None
    value = value.strip()
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
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _message(body: Any, fallback: str) -> tuple[int | None, str]:
    """The first Cloudflare error (code, message) of an answer body."""
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            code = errors[0].get("code")
            return (code if isinstance(code, int) else None, str(errors[0].get("message", "")))
    return None, fallback


class CloudflareApi:
    """Authenticated POSTs to Cloudflare's v4 API with retries (shared by D1 and Queues).

    429 and 5xx answers and transport failures are retried with exponential
    backoff and full jitter, waiting what ``Retry-After`` says when it is
    given (capped at ``max_backoff``); after ``max_attempts`` the service is
    :class:`D1Unavailable`.  ``http`` may be given to share a connection pool;
    otherwise the object owns one and :meth:`close` releases it.
    """

    #: Names the service in error messages.
    service = "Cloudflare"

    def __init__(
        self,
        *,
        api_token: str,
        api_base: str = DEFAULT_API_BASE,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 30.0,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self._owns_http = http is None
        # 30 s is D1's own limit per query or batch; wait a little longer for the answer.
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(timeout + 5.0))
        self._headers = {"Authorization": f"Bearer {api_token}"}
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        #: Requests sent (attempts included): the API's rate limit counts these.
        self.requests_sent = 0
        self.closed = False

    async def close(self) -> None:
        """Release the connection pool if this object owns it; later requests are refused."""
        self.closed = True
        if self._owns_http:
            await self._http.aclose()

    async def post(self, url: str, body: Mapping[str, Any]) -> httpx.Response:
        """POST ``body`` as JSON; return the first answer that is not worth retrying."""
        if self.closed:
            raise D1Unavailable(f"the {self.service} client is closed")
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                self.requests_sent += 1
                response = await self._http.post(url, json=body, headers=self._headers)
            except httpx.TransportError as exc:
                if last:
                    raise D1Unavailable(f"{self.service} is unreachable: {exc!r}") from exc
                await anyio.sleep(self._delay(attempt, None))
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                if last:
                    code, message = _message(_json(response), response.reason_phrase)
                    raise D1Unavailable(
                        f"{self.service} answered {status} ({message}) after {attempt} attempts",
                        code=code,
                        status=status,
                    )
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                await anyio.sleep(self._delay(attempt, wait))
                continue
            if status in (401, 403):
                _code, message = _message(_json(response), response.reason_phrase)
                raise D1Unavailable(
                    f"{self.service} refused the API token ({message})", status=status
                )
            return response
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns/raises

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before the next attempt: the server's word, else backoff."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        # Full jitter keeps many clients throttled together from retrying in step.
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return _JITTER.uniform(ceiling / 2, ceiling)


class D1Client(CloudflareApi):
    """Sends statements and batches to one D1 database over the REST API."""

    service = "D1"

    def __init__(
        self,
        account_id: str,
        database_id: str,
        *,
        api_token: str,
        api_base: str = DEFAULT_API_BASE,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 30.0,
    ) -> None:
        if not account_id or not database_id:
            raise ValidationError("CRM_DATABASE_URL", "d1:// needs an account id and a database id")
        if not api_token:
            raise ValidationError("CRM_D1_API_TOKEN", "is required for a d1:// database")
        super().__init__(
            api_token=api_token,
            api_base=api_base,
            http=http,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self.endpoint = f"{self.api_base}/accounts/{account_id}/d1/database/{database_id}"

    @classmethod
    def from_env(
        cls, account_id: str, database_id: str, env: Mapping[str, str] | None = None, **options: Any
    ) -> D1Client:
        """Build a client from ``CRM_D1_API_TOKEN`` and ``CRM_D1_API_BASE``."""
        env = os.environ if env is None else env
        return cls(
            account_id,
            database_id,
            api_token=env.get("CRM_D1_API_TOKEN", ""),
            api_base=env.get("CRM_D1_API_BASE", "") or DEFAULT_API_BASE,
            **options,
        )

    async def query(self, sql: str, params: Sequence[Param] = ()) -> D1Result:
        """Run one statement."""
        (result,) = await self.batch([D1Statement(sql, tuple(params))])
        return result

    async def execute(self, statement: D1Statement) -> D1Result:
        """Run one prepared statement."""
        (result,) = await self.batch([statement])
        return result

    async def batch(self, statements: Sequence[D1Statement]) -> list[D1Result]:
        """Run statements as one atomic batch in one request; results in order."""
        if not statements:
            return []
        for statement in statements:
            check_statement(statement)
        if len(statements) == 1:
            body: dict[str, Any] = statements[0].payload()
        else:
            body = {"batch": [s.payload() for s in statements]}
        answer = _answer(await self.post(self.endpoint + "/query", body))
        results = answer.get("result")
        if not isinstance(results, list) or len(results) != len(statements):
            raise D1Unavailable("D1 answered with an unexpected result shape")
        return [_result(item) for item in results]


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _answer(response: httpx.Response) -> Mapping[str, Any]:
    """Check a non-retryable answer; raise the matching domain error for failures."""
    body = _json(response)
    status = response.status_code
    if status >= 400 or not isinstance(body, Mapping) or body.get("success") is False:
        code, message = _message(body, f"HTTP {status}")
        if "UNIQUE constraint failed" in message:
            raise D1Conflict(message, code=code)
        if status == 404:
            raise D1Unavailable(f"D1 database not found ({message})", code=code, status=status)
        raise D1QueryError(message, code=code)
    return body


def _result(item: Any) -> D1Result:
    if not isinstance(item, Mapping):
        raise D1Unavailable("D1 answered with an unexpected result shape")
    rows = item.get("results") or []
    meta = item.get("meta") or {}
    return D1Result(
        rows=tuple(rows),
        meta=D1Meta(
            changes=int(meta.get("changes") or 0),
            last_row_id=int(meta.get("last_row_id") or 0),
            rows_read=int(meta.get("rows_read") or 0),
            rows_written=int(meta.get("rows_written") or 0),
            duration=float(meta.get("duration") or 0.0),
        ),
    )


__all__ = [
    "DEFAULT_API_BASE",
    "MAX_PARAMS",
    "MAX_STATEMENT_BYTES",
    "CloudflareApi",
    "D1Client",
    "D1Conflict",
    "D1Error",
    "D1Meta",
    "D1QueryError",
    "D1Result",
    "D1Statement",
    "D1Unavailable",
    "Param",
    "check_statement",
    "retry_after_seconds",
]
