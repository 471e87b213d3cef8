"""The SMTP mailer against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from crm_domain.errors import Unavailable, ValidationError
from crm_domain.ports.messaging import Mailer, OutgoingEmail

from crm_messaging import MessagingConfigurationError, SmtpMailer, smtp_factory

from .conftest import PASSWORD, USER

pytestmark = pytest.mark.anyio

HTML = "<p>Bonjour Zoë, your scan is on <b>Tuesday</b> — 9:30.</p>"
TEXT = "Bonjour Zoë, your scan is on Tuesday — 9:30."


def email(**overrides: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "to": "patient@example.org",
        "subject": "Votre rendez-vous — Tuesday",
        "html": HTML,
        "text": TEXT,
    }
    values.update(overrides)
    return OutgoingEmail(**values)


def settings_for(server: Any, security: str, **extra: str) -> dict[str, str]:
    values = {
        "CRM_SMTP_HOST": "127.0.0.1",
        "CRM_SMTP_PORT": str(server.port),
        "CRM_SMTP_SECURITY": security,
        "CRM_MAIL_FROM": "Avatar Imaging <clinic@avatar.example>",
        "CRM_SMTP_TIMEOUT": "5",
    }
    if server.ca_file:
        values["CRM_SMTP_CA_FILE"] = server.ca_file
    values.update(extra)
    return values


def parsed(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_starttls_with_auth_delivers_a_multipart_message(start_smtp: Any) -> None:
    server = start_smtp("starttls")
    mailer = smtp_factory_mailer(
        server, "starttls", CRM_SMTP_USERNAME=USER, CRM_SMTP_PASSWORD=PASSWORD
    )
    assert isinstance(mailer, Mailer)
    result = await mailer.send(
        email(
            reply_to="reception@avatar.example",
            headers={
                "List-Unsubscribe": "<https://crm.example/u/abc>, <mailto:unsub@avatar.example>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
    )
    await mailer.aclose()

    assert result.accepted and result.provider == "smtp" and result.error is None
    (received,) = server.handler.messages
    assert received["tls"] is True
    assert received["authenticated"] is True
    assert received["mail_from"] == "clinic@avatar.example"
    assert received["rcpt_tos"] == ["patient@example.org"]
    message = parsed(received["content"])
    assert message["Message-ID"] == result.provider_message_id
    assert message["To"] == "patient@example.org"
    assert message["From"] == "Avatar Imaging <clinic@avatar.example>"
    assert message["Reply-To"] == "reception@avatar.example"
    assert message["Subject"] == "Votre rendez-vous — Tuesday"  # RFC 2047 decoded back
    assert message["Date"]
    assert message["List-Unsubscribe"] == (
        "<https://crm.example/u/abc>, <mailto:unsub@avatar.example>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert text.get_content_charset() == "utf-8"
    assert text.get_content().strip() == TEXT
    assert html.get_content().strip() == HTML
    # The raw message is 7-bit on the wire: the non-ASCII subject is encoded.
    assert b"Zo\xc3\xab" not in received["content"].split(b"\r\n\r\n", 1)[0]


async def test_implicit_tls_delivers(start_smtp: Any) -> None:
    server = start_smtp("tls")
    mailer = smtp_factory_mailer(server, "tls", CRM_SMTP_USERNAME=USER, CRM_SMTP_PASSWORD=PASSWORD)
    result = await mailer.send(email(html=""))
    await mailer.aclose()
    assert result.accepted
    (received,) = server.handler.messages
    assert received["tls"] is True
    message = parsed(received["content"])
    assert message.get_content_type() == "text/plain"  # no HTML given: one part
    assert message.get_content().strip() == TEXT


async def test_connection_is_reused_and_reopened_after_the_server_drops_it(
    start_smtp: Any,
) -> None:
    server = start_smtp("plain")
    mailer = smtp_factory_mailer(server, "none")
    for n in range(3):
        assert (await mailer.send(email(to=f"p{n}@example.org"))).accepted
    assert mailer.connections_opened == 1
    assert len(server.handler.sessions) == 1
    server.restart()  # drops the idle connection
    assert (await mailer.send(email())).accepted
    await mailer.aclose()
    assert mailer.connections_opened == 2
    assert len(server.handler.messages) == 4


async def test_refused_recipient_is_a_failed_result_not_an_exception(start_smtp: Any) -> None:
    server = start_smtp("plain")
    server.handler.refuse.add("gone@example.org")
    mailer = smtp_factory_mailer(server, "none")
    refused = await mailer.send(email(to="gone@example.org"))
    ok = await mailer.send(email())  # the connection survives the refusal
    await mailer.aclose()
    assert refused.accepted is False
    assert refused.error is not None and "550" in refused.error and "User unknown" in refused.error
    assert ok.accepted
    assert [m["rcpt_tos"] for m in server.handler.messages] == [["patient@example.org"]]


async def test_wrong_password_is_a_configuration_error_naming_the_settings(
    start_smtp: Any,
) -> None:
    server = start_smtp("starttls")
    mailer = smtp_factory_mailer(
        server, "starttls", CRM_SMTP_USERNAME=USER, CRM_SMTP_PASSWORD="wrong"
    )
    with pytest.raises(MessagingConfigurationError) as info:
        await mailer.send(email())
    assert isinstance(info.value, Unavailable)
    assert "CRM_SMTP_PASSWORD" in info.value.detail
    assert "wrong" not in info.value.detail
    assert server.handler.messages == []


async def test_untrusted_certificate_is_refused(start_smtp: Any) -> None:
    server = start_smtp("starttls")
    settings = settings_for(server, "starttls", CRM_SMTP_USERNAME=USER, CRM_SMTP_PASSWORD=PASSWORD)
    del settings["CRM_SMTP_CA_FILE"]  # the system CAs do not know the test CA
    mailer = smtp_factory(settings)
    with pytest.raises(MessagingConfigurationError, match="CRM_SMTP_CA_FILE"):
        await mailer.send(email())
    assert server.handler.messages == []


async def test_server_down_is_unavailable(start_smtp: Any) -> None:
    server = start_smtp("plain")
    mailer = smtp_factory_mailer(server, "none")
    server.stop()
    with pytest.raises(Unavailable, match="cannot be reached"):
        await mailer.send(email())


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"CRM_SMTP_HOST": "smtp.example.com", "CRM_SMTP_SECURITY": "none"}, "CRM_SMTP_SECURITY"),
        ({"CRM_SMTP_HOST": "smtp.example.com", "CRM_SMTP_SECURITY": "ssl3"}, "CRM_SMTP_SECURITY"),
        ({}, "CRM_SMTP_HOST"),
        ({"CRM_SMTP_HOST": "smtp.example.com", "CRM_SMTP_PORT": "99999"}, "CRM_SMTP_PORT"),
        ({"CRM_SMTP_HOST": "smtp.example.com", "CRM_SMTP_USERNAME": "u"}, "CRM_SMTP_PASSWORD"),
    ],
)
def test_bad_settings_name_the_key(settings: dict[str, str], key: str) -> None:
    with pytest.raises(ValidationError) as info:
        smtp_factory(settings)
    assert info.value.field == key


def test_default_ports_follow_the_security() -> None:
    assert smtp_factory({"CRM_SMTP_HOST": "smtp.example.com"}).settings.port == 587
    tls = smtp_factory({"CRM_SMTP_HOST": "smtp.example.com", "CRM_SMTP_SECURITY": "tls"})
    assert tls.settings.port == 465
    assert "s3cret" not in repr(
        smtp_factory(
            {"CRM_SMTP_HOST": "h.example", "CRM_SMTP_USERNAME": "u", "CRM_SMTP_PASSWORD": "s3cret"}
        ).settings
    )


def smtp_factory_mailer(server: Any, security: str, **extra: str) -> SmtpMailer:
    return smtp_factory(settings_for(server, security, **extra))


async def test_a_deferred_recipient_is_unavailable_so_it_is_retried(start_smtp: Any) -> None:
    server = start_smtp("plain")
    server.handler.defer.add("busy@example.org")
    mailer = smtp_factory_mailer(server, "none")
    with pytest.raises(Unavailable, match="450") as info:
        await mailer.send(email(to="busy@example.org"))
    await mailer.aclose()
    assert not isinstance(info.value, MessagingConfigurationError)
    assert server.handler.messages == []


async def test_a_rejected_message_is_a_failed_result(start_smtp: Any) -> None:
    server = start_smtp("plain")
    server.handler.reject_data = True
    mailer = smtp_factory_mailer(server, "none")
    result = await mailer.send(email())
    await mailer.aclose()
    assert result.accepted is False
    assert result.error == "554 5.7.1 Message rejected as spam"
