"""The Gmail API mailer: OAuth2 refresh token → access token, ``users.messages.send``.

* The access token comes from the token endpoint (``grant_type=refresh_token``) and
  is cached until shortly before ``expires_in`` runs out; one refresh at a time.
  A 401 from the send endpoint drops the cached token and refreshes once.
* The body is ``{"raw": base64url(RFC 5322)}``, the message built by
  :func:`crm_messaging.mime.build_message`.
* A leaky-bucket limiter (aiolimiter) keeps the sends under the per-user quota:
  ``messages.send`` costs 100 quota units and a user has 15,000 per minute, so
  the default is 2 sends per second (120 a minute).
* 429, 5xx and Gmail's 403 rate-limit reasons are retried with back-off
  (tenacity, honouring ``Retry-After``), then ``Unavailable``; other 401/403
  answers are configuration errors naming the settings.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping

import aiolimiter
import anyio
import attrs
import httpx
from crm_domain.errors import Unavailable
from crm_domain.ports.messaging import OutgoingEmail, SendResult

from crm_messaging import _config
from crm_messaging._http import HttpPolicy, json_body, new_client, request_with_retries
from crm_messaging.errors import MessagingConfigurationError
from crm_messaging.mime import POLICY, build_message

log = logging.getLogger("crm_messaging")

GMAIL_API_BASE_URL = "https://gmail.googleapis.com/gmail/v1"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
#: Refresh this long before the token's stated expiry (clock skew, slow requests).
EXPIRY_MARGIN = 60.0
#: Gmail's 403 reasons that mean "slow down", not "forbidden".
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_OAUTH_SETTINGS = ("CRM_GMAIL_CLIENT_ID", "CRM_GMAIL_CLIENT_SECRET", "CRM_GMAIL_REFRESH_TOKEN")


@attrs.frozen(slots=True, kw_only=True)
class GmailSettings:
    """OAuth client, refresh token and endpoints; see :func:`gmail_factory`."""

    client_id: str
    client_secret: str = attrs.field(repr=False)
    refresh_token: str = attrs.field(repr=False)
    user: str = "me"
    default_from: str | None = None
    api_base_url: str = GMAIL_API_BASE_URL
    token_url: str = GOOGLE_TOKEN_URL
    sends_per_second: float = 2.0
    policy: HttpPolicy = HttpPolicy(timeout=20.0)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, str]) -> GmailSettings:
        """Read ``CRM_GMAIL_*``, ``CRM_MAIL_FROM`` and ``CRM_MAIL_*`` retry settings."""
        why = "for CRM_MAIL_PROVIDER=gmail"
        token_url = _config.text(settings, "CRM_GMAIL_TOKEN_URL") or GOOGLE_TOKEN_URL
        return cls(
            client_id=_config.required(settings, "CRM_GMAIL_CLIENT_ID", why),
            client_secret=_config.required(settings, "CRM_GMAIL_CLIENT_SECRET", why),
            refresh_token=_config.required(settings, "CRM_GMAIL_REFRESH_TOKEN", why),
            user=_config.text(settings, "CRM_GMAIL_USER", "me") or "me",
            default_from=_config.text(settings, "CRM_MAIL_FROM"),
            api_base_url=_config.base_url(settings, "CRM_GMAIL_API_BASE_URL", GMAIL_API_BASE_URL),
            token_url=_config.base_url(settings, "CRM_GMAIL_TOKEN_URL", token_url),
            sends_per_second=_config.number(
                settings, "CRM_GMAIL_SENDS_PER_SECOND", 2.0, 1.0, 100.0
            ),
            policy=HttpPolicy(
                timeout=_config.number(settings, "CRM_MAIL_TIMEOUT", 20.0, 0.01, 300.0),
                max_retries=_config.integer(settings, "CRM_MAIL_MAX_RETRIES", 3, 0, 10),
                max_retry_wait=_config.number(
                    settings, "CRM_MAIL_MAX_RETRY_WAIT", 20.0, 0.0, 300.0
                ),
            ),
        )


def _reasons(response: httpx.Response) -> set[str]:
    """The ``error.errors[].reason`` values of a Google error body."""
    payload = json_body(response)
    error = payload.get("error") if isinstance(payload, dict) else None
    errors = error.get("errors") if isinstance(error, dict) else None
    if not isinstance(errors, list):
        return set()
    return {str(e["reason"]) for e in errors if isinstance(e, dict) and "reason" in e}


def _gmail_rate_limited(response: httpx.Response) -> bool:
    """A 403 whose reason is a rate limit: retried like a 429."""
    return response.status_code == 403 and bool(_reasons(response) & RATE_LIMIT_REASONS)


def _google_error(response: httpx.Response) -> str:
    payload = json_body(response)
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error.get("status") or "error")[:200]
        if isinstance(error, str):
            # The token endpoint's {"error": "invalid_grant", "error_description": …}.
            return error[:100]
    return "error"


class GmailMailer:
    """A :class:`~crm_domain.ports.messaging.Mailer` over the Gmail REST API."""

    provider = "gmail"

    def __init__(
        self, settings: GmailSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = anyio.Lock()
        # max_rate sends per second, with a bucket of the same size for short bursts.
        self._limiter = aiolimiter.AsyncLimiter(settings.sends_per_second, 1.0)
        #: Token requests made so far (the cache is observable).
        self.token_refreshes = 0

    def __repr__(self) -> str:
        return f"<GmailMailer user={self.settings.user!r}>"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = new_client(self.settings.policy)
        return self._client

    async def aclose(self) -> None:
        """Close the pooled HTTP connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _access_token(self, *, stale: str | None = None) -> str:
        """The cached token, or a fresh one (``stale``: the token a 401 just refused)."""
        async with self._token_lock:
            if stale is not None and self._token == stale:
                self._token = None
            if self._token is not None and self._clock() < self._token_expires_at:
                return self._token
            s = self.settings
            client = self._http()
            form = {
                "grant_type": "refresh_token",
                "client_id": s.client_id,
                "client_secret": s.client_secret,
                "refresh_token": s.refresh_token,
            }
            response = await request_with_retries(
                "the Google token endpoint",
                s.policy,
                lambda: client.post(s.token_url, data=form),
            )
            self.token_refreshes += 1
            if response.status_code in (400, 401, 403):
                # invalid_grant (revoked or wrong refresh token), invalid_client …
                raise MessagingConfigurationError(
                    f"Google refused the OAuth refresh ({_google_error(response)})",
                    settings=_OAUTH_SETTINGS,
                )
            payload = json_body(response)
            token = payload.get("access_token") if isinstance(payload, dict) else None
            if response.status_code != 200 or not isinstance(token, str) or not token:
                raise Unavailable(
                    f"the Google token endpoint gave no access token (HTTP {response.status_code})"
                )
            expires_in = payload.get("expires_in") if isinstance(payload, dict) else None
            lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
            self._token = token
            self._token_expires_at = self._clock() + max(0.0, lifetime - EXPIRY_MARGIN)
            return token

    async def _send_raw(
        self, client: httpx.AsyncClient, url: str, raw: str, token: str
    ) -> httpx.Response:
        async def post() -> httpx.Response:
            # Every attempt, retries included, spends quota: each one waits its turn.
            async with self._limiter:
                return await client.post(
                    url, json={"raw": raw}, headers={"Authorization": f"Bearer {token}"}
                )

        return await request_with_retries(
            self.provider, self.settings.policy, post, retry_on=_gmail_rate_limited
        )

    async def send(self, message: OutgoingEmail) -> SendResult:
        """Send one email through ``users.messages.send``."""
        mime = build_message(message, default_from=self.settings.default_from)
        raw = base64.urlsafe_b64encode(mime.as_bytes(policy=POLICY)).decode("ascii")
        url = f"{self.settings.api_base_url}/users/{self.settings.user}/messages/send"
        client = self._http()
        token = await self._access_token()
        response = await self._send_raw(client, url, raw, token)
        if response.status_code == 401:
            # Revoked or expired early: one fresh token, one more try.
            token = await self._access_token(stale=token)
            response = await self._send_raw(client, url, raw, token)
        status = response.status_code
        if status == 403 and _reasons(response) & {"dailyLimitExceeded", *RATE_LIMIT_REASONS}:
            # A quota, not a wrong setting: the worker retries later.
            raise Unavailable(f"Gmail quota exhausted ({_google_error(response)})")
        if status in (401, 403):
            raise MessagingConfigurationError(
                f"Gmail refused to send (HTTP {status}: {_google_error(response)})",
                settings=(*_OAUTH_SETTINGS, "CRM_GMAIL_USER"),
            )
        if status == 404:
            raise MessagingConfigurationError(
                "Gmail has no such endpoint or user (HTTP 404)",
                settings=("CRM_GMAIL_API_BASE_URL", "CRM_GMAIL_USER"),
            )
        if 400 <= status < 500:
            return SendResult(
                provider=self.provider,
                provider_message_id=None,
                accepted=False,
                error=f"HTTP {status}: {_google_error(response)}",
            )
        payload = json_body(response)
        message_id = payload.get("id") if isinstance(payload, dict) else None
        if not isinstance(message_id, str):
            raise Unavailable(f"Gmail answered HTTP {status} without a message id")
        log.info("email sent via Gmail (id %s)", message_id)
        return SendResult(provider=self.provider, provider_message_id=message_id)


def gmail_factory(settings: Mapping[str, str]) -> GmailMailer:
    """Entry point ``crm.mail:gmail``: ``CRM_GMAIL_CLIENT_ID``, ``CRM_GMAIL_CLIENT_SECRET``,
    ``CRM_GMAIL_REFRESH_TOKEN``, ``CRM_GMAIL_USER``, ``CRM_GMAIL_API_BASE_URL``,
    ``CRM_GMAIL_TOKEN_URL``, ``CRM_GMAIL_SENDS_PER_SECOND``, ``CRM_MAIL_FROM``,
    ``CRM_MAIL_TIMEOUT``, ``CRM_MAIL_MAX_RETRIES`` and ``CRM_MAIL_MAX_RETRY_WAIT``."""
    return GmailMailer(GmailSettings.from_mapping(settings))


__all__ = [
    "GMAIL_API_BASE_URL",
    "GOOGLE_TOKEN_URL",
    "GmailMailer",
    "GmailSettings",
    "gmail_factory",
]
