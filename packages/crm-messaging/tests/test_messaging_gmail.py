"""The Gmail API mailer against a loopback server speaking Google's token endpoint
(``grant_type=refresh_token`` → ``access_token``, ``expires_in``) and
``users.messages.send`` (``{"raw": …}`` → ``{"id", "threadId", "labelIds"}``, errors
as ``{"error": {"code", "message", "errors": [{"reason"}]}}``)."""

from __future__ import annotations

import base64
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from crm_domain.errors import Unavailable
from crm_domain.ports.messaging import Mailer, OutgoingEmail

from crm_messaging import GmailMailer, GmailSettings, MessagingConfigurationError, gmail_factory
from crm_messaging.testing import ProviderServer, Reply

pytestmark = pytest.mark.anyio

TOKEN = "/token"
SEND = "/gmail/v1/users/me/messages/send"
REFRESH = "1//refresh-token-secret"


def settings(server: ProviderServer, **extra: str) -> dict[str, str]:
    values = {
        "CRM_GMAIL_CLIENT_ID": "client-123.apps.googleusercontent.com",
        "CRM_GMAIL_CLIENT_SECRET": "client-secret-xyz",
        "CRM_GMAIL_REFRESH_TOKEN": REFRESH,
        "CRM_GMAIL_TOKEN_URL": f"{server.url}{TOKEN}",
        "CRM_GMAIL_API_BASE_URL": f"{server.url}/gmail/v1",
        "CRM_MAIL_FROM": "Avatar Imaging <clinic@avatar.example>",
        "CRM_MAIL_MAX_RETRY_WAIT": "2",
        "CRM_GMAIL_SENDS_PER_SECOND": "50",
    }
    values.update(extra)
    return values


def token_reply(token: str = "ya29.access-1", expires_in: int = 3599) -> Reply:
    return Reply(
        200,
        {
            "access_token": token,
            "expires_in": expires_in,
            "scope": "https://www.googleapis.com/auth/gmail.send",
            "token_type": "Bearer",
        },
    )


def sent_reply(n: int = 1) -> Reply:
    return Reply(
        200, {"id": f"18c0ffee{n:04d}", "threadId": f"18c0ffee{n:04d}", "labelIds": ["SENT"]}
    )


def google_error(code: int, reason: str, message: str) -> Reply:
    return Reply(
        code,
        {
            "error": {
                "code": code,
                "message": message,
                "errors": [{"domain": "usageLimits", "reason": reason, "message": message}],
            }
        },
    )


def email(**overrides: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "to": "Zoë Patient <patient@example.org>",
        "subject": "Your appointment",
        "html": "<p>See you on <b>Tuesday</b>.</p>",
        "text": "See you on Tuesday.",
        "headers": {"List-Unsubscribe": "<https://crm.example/u/abc>"},
    }
    values.update(overrides)
    return OutgoingEmail(**values)


def decoded(request: dict[str, Any]) -> EmailMessage:
    raw = request["json"]["raw"]
    message = message_from_bytes(base64.urlsafe_b64decode(raw), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_refresh_then_send_a_base64url_rfc5322_message(
    provider_server: ProviderServer,
) -> None:
    provider_server.queue(TOKEN, token_reply())
    provider_server.queue(SEND, sent_reply())
    mailer = gmail_factory(settings(provider_server))
    assert isinstance(mailer, Mailer)
    result = await mailer.send(email())
    await mailer.aclose()

    assert result.accepted and result.provider == "gmail"
    assert result.provider_message_id == "18c0ffee0001"
    (token_request,) = provider_server.to(TOKEN)
    assert token_request["form"] == {
        "grant_type": "refresh_token",
        "client_id": "client-123.apps.googleusercontent.com",
        "client_secret": "client-secret-xyz",
        "refresh_token": REFRESH,
    }
    (send,) = provider_server.to(SEND)
    assert send["headers"]["Authorization"] == "Bearer ya29.access-1"
    assert set(send["json"]) == {"raw"}
    assert "+" not in send["json"]["raw"] and "/" not in send["json"]["raw"]  # base64url
    message = decoded(send)
    assert message["To"] == "Zoë Patient <patient@example.org>"
    assert message["From"] == "Avatar Imaging <clinic@avatar.example>"
    assert message["List-Unsubscribe"] == "<https://crm.example/u/abc>"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]


async def test_the_access_token_is_cached_until_it_expires(provider_server: ProviderServer) -> None:
    now = [1000.0]
    provider_server.queue(TOKEN, token_reply("tok-1", 3600), token_reply("tok-2", 3600))
    provider_server.defaults[SEND] = sent_reply()
    mailer = GmailMailer(
        GmailSettings.from_mapping(settings(provider_server)), clock=lambda: now[0]
    )
    await mailer.send(email())
    now[0] += 3000  # still inside the hour (minus the 60 s margin)
    await mailer.send(email())
    assert mailer.token_refreshes == 1
    now[0] += 600  # past expires_in - margin
    await mailer.send(email())
    await mailer.aclose()
    assert mailer.token_refreshes == 2
    tokens = [r["headers"]["Authorization"] for r in provider_server.to(SEND)]
    assert tokens == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


async def test_a_401_on_send_refreshes_the_token_once(provider_server: ProviderServer) -> None:
    provider_server.queue(TOKEN, token_reply("old"), token_reply("new"))
    provider_server.queue(
        SEND,
        Reply(
            401,
            {
                "error": {
                    "code": 401,
                    "message": "Invalid Credentials",
                    "errors": [{"reason": "authError"}],
                }
            },
        ),
        sent_reply(),
    )
    mailer = gmail_factory(settings(provider_server))
    result = await mailer.send(email())
    await mailer.aclose()
    assert result.accepted
    assert [r["headers"]["Authorization"] for r in provider_server.to(SEND)] == [
        "Bearer old",
        "Bearer new",
    ]


async def test_a_refused_refresh_token_is_a_configuration_error(
    provider_server: ProviderServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    provider_server.queue(
        TOKEN,
        Reply(
            400,
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
        ),
    )
    mailer = gmail_factory(settings(provider_server))
    with pytest.raises(MessagingConfigurationError) as info:
        await mailer.send(email())
    await mailer.aclose()
    assert "invalid_grant" in info.value.detail
    assert "CRM_GMAIL_REFRESH_TOKEN" in info.value.settings
    assert provider_server.to(SEND) == []
    assert REFRESH not in caplog.text and "client-secret-xyz" not in caplog.text
    assert REFRESH not in repr(mailer.settings)


async def test_429_with_retry_after_is_retried(provider_server: ProviderServer) -> None:
    provider_server.queue(TOKEN, token_reply())
    provider_server.queue(
        SEND,
        Reply(
            429,
            {
                "error": {
                    "code": 429,
                    "message": "Too many requests",
                    "errors": [{"reason": "rateLimitExceeded"}],
                }
            },
            headers={"Retry-After": "1"},
        ),
        sent_reply(),
    )
    mailer = gmail_factory(settings(provider_server))
    result = await mailer.send(email())
    await mailer.aclose()
    assert result.accepted
    first, second = provider_server.to(SEND)
    assert second["at"] - first["at"] >= 0.95


async def test_403_user_rate_limit_is_retried_but_403_forbidden_is_configuration(
    provider_server: ProviderServer,
) -> None:
    provider_server.queue(TOKEN, token_reply())
    provider_server.queue(
        SEND,
        google_error(403, "userRateLimitExceeded", "User Rate Limit Exceeded"),
        sent_reply(),
        google_error(403, "insufficientPermissions", "Insufficient Permission"),
    )
    mailer = gmail_factory(settings(provider_server))
    assert (await mailer.send(email())).accepted
    with pytest.raises(MessagingConfigurationError, match="Insufficient Permission"):
        await mailer.send(email())
    await mailer.aclose()
    assert len(provider_server.to(SEND)) == 3


async def test_5xx_is_unavailable_after_the_retries(provider_server: ProviderServer) -> None:
    provider_server.queue(TOKEN, token_reply())
    provider_server.defaults[SEND] = google_error(503, "backendError", "Backend Error")
    mailer = gmail_factory(settings(provider_server, CRM_MAIL_MAX_RETRIES="2"))
    with pytest.raises(Unavailable, match="HTTP 503 after 3 attempts"):
        await mailer.send(email())
    await mailer.aclose()
    assert len(provider_server.to(SEND)) == 3


async def test_a_bad_request_is_a_failed_result(provider_server: ProviderServer) -> None:
    provider_server.queue(TOKEN, token_reply())
    provider_server.queue(SEND, google_error(400, "invalidArgument", "Invalid To header"))
    mailer = gmail_factory(settings(provider_server))
    result = await mailer.send(email())
    await mailer.aclose()
    assert result.accepted is False
    assert result.error == "HTTP 400: Invalid To header"


async def test_the_limiter_spaces_sends_to_the_per_user_quota(
    provider_server: ProviderServer,
) -> None:
    provider_server.queue(TOKEN, token_reply())
    provider_server.defaults[SEND] = sent_reply()
    mailer = gmail_factory(settings(provider_server, CRM_GMAIL_SENDS_PER_SECOND="2"))
    started = time.monotonic()
    for _ in range(5):
        await mailer.send(email())
    elapsed = time.monotonic() - started
    await mailer.aclose()
    # A bucket of 2 lets the first two through; the other three wait 0.5 s each.
    assert elapsed >= 1.3
    assert len(provider_server.to(SEND)) == 5


def test_defaults_are_googles_endpoints_and_http_is_refused_off_loopback() -> None:
    base = {
        "CRM_GMAIL_CLIENT_ID": "c",
        "CRM_GMAIL_CLIENT_SECRET": "s",
        "CRM_GMAIL_REFRESH_TOKEN": "r",
    }
    gmail = GmailSettings.from_mapping(base)
    assert gmail.token_url == "https://oauth2.googleapis.com/token"
    assert gmail.api_base_url == "https://gmail.googleapis.com/gmail/v1"
    assert gmail.sends_per_second == 2.0
    from crm_domain.errors import ValidationError

    with pytest.raises(ValidationError) as info:
        GmailSettings.from_mapping({**base, "CRM_GMAIL_TOKEN_URL": "http://oauth2.example/token"})
    assert info.value.field == "CRM_GMAIL_TOKEN_URL"
    with pytest.raises(ValidationError) as info:
        GmailSettings.from_mapping({"CRM_GMAIL_CLIENT_ID": "c", "CRM_GMAIL_CLIENT_SECRET": "s"})
    assert info.value.field == "CRM_GMAIL_REFRESH_TOKEN"


async def test_daily_limit_is_unavailable_not_a_configuration_error(
    provider_server: ProviderServer,
) -> None:
    provider_server.queue(TOKEN, token_reply())
    provider_server.queue(SEND, google_error(403, "dailyLimitExceeded", "Daily Limit Exceeded"))
    mailer = gmail_factory(settings(provider_server))
    with pytest.raises(Unavailable, match="quota") as info:
        await mailer.send(email())
    await mailer.aclose()
    assert not isinstance(info.value, MessagingConfigurationError)
    assert len(provider_server.to(SEND)) == 1  # not retried within the call
