"""The message builder, the logging sender and mailer, and the entry-point loaders."""

from __future__ import annotations

import logging
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from crm_domain.errors import ValidationError
from crm_domain.plugins import AdapterNotInstalled, load_mailer, load_sms_sender
from crm_domain.ports.messaging import Mailer, OutgoingEmail, OutgoingSms, SmsSender
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_messaging import (
    ClickSendSender,
    GmailMailer,
    LoggingMailer,
    LoggingSmsSender,
    MessageMediaSender,
    SmtpMailer,
    build_message,
)
from crm_messaging.mime import POLICY

pytestmark = pytest.mark.anyio


def email(**overrides: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "to": "patient@example.org",
        "subject": "Rendez-vous",
        "html": "<p>Привет — café</p>",
        "text": "Привет — café",
        "from_address": "clinic@avatar.example",
    }
    values.update(overrides)
    return OutgoingEmail(**values)


# --- MIME ----------------------------------------------------------------------------


def test_the_wire_form_is_crlf_7bit_and_parses_back() -> None:
    mime = build_message(email(), default_from=None)
    raw = mime.as_bytes(policy=POLICY)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(byte < 128 for byte in raw)  # non-ASCII bodies are transfer-encoded
    back = message_from_bytes(raw, policy=policy.default)
    assert isinstance(back, EmailMessage)  # what the default policy parses to
    text, html = back.iter_parts()
    assert text.get_content().strip() == "Привет — café"
    assert html.get_content().strip() == "<p>Привет — café</p>"
    assert text["Content-Transfer-Encoding"] in {"base64", "quoted-printable", "8bit"}
    assert str(back["Message-ID"]).endswith("@avatar.example>")


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")),
        max_size=300,
    )
)
def test_any_one_line_subject_arrives_exactly_as_sent(subject: str) -> None:
    subject = " ".join(subject.split())  # the domain's header_safe gives one spaced line
    raw = build_message(email(subject=subject), default_from=None).as_bytes(policy=POLICY)
    assert all(byte < 128 for byte in raw)
    back = message_from_bytes(raw, policy=policy.default)
    assert str(back["Subject"]) == subject


def test_a_non_ascii_subject_keeps_the_space_between_words() -> None:
    # Folded at 78, Python 3.11 sent "¡ ¡" at the end of a long subject as "¡¡".
    subject = "Hello <script>alert(1)</script>{{ 7*7 }}{% for x in y %}{% endfor %}¡ ¡"
    raw = build_message(email(subject=subject), default_from=None).as_bytes(policy=POLICY)
    assert str(message_from_bytes(raw, policy=policy.default)["Subject"]) == subject


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"to": "not-an-address"}, "to"),
        ({"to": "a@example.org, b@example.org"}, "to"),
        ({"to": "a@example.org\r\nBcc: evil@example.org"}, "to"),
        ({"subject": "Hi\r\nBcc: evil@example.org"}, "subject"),
        ({"headers": {"Bcc": "evil@example.org"}}, "headers.Bcc"),
        ({"headers": {"to": "evil@example.org"}}, "headers.to"),
        (
            {"headers": {"List-Unsubscribe": "<https://x>\r\nBcc: e@x.org"}},
            "headers.List-Unsubscribe",
        ),
        ({"headers": {"X Bad": "1"}}, "headers.X Bad"),
        ({"from_address": None}, "from_address"),
        ({"reply_to": "nobody"}, "reply_to"),
    ],
)
def test_bad_input_is_refused_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        build_message(email(**overrides), default_from=None)
    assert info.value.field == field


# --- logging senders -------------------------------------------------------------------


async def test_logging_sms_sender_logs_no_phi(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="crm_messaging")
    sender = LoggingSmsSender()
    assert isinstance(sender, SmsSender)
    first = await sender.send(
        OutgoingSms(to="+61412345678", body="Your MRI result is ready", reference="m-1")
    )
    second = await sender.send(OutgoingSms(to="+61412345678", body="x"))
    assert first.accepted and first.provider == "log"
    assert first.provider_message_id != second.provider_message_id
    assert "***678" in caplog.text and "m-1" in caplog.text
    assert "12345678" not in caplog.text and "MRI" not in caplog.text
    with pytest.raises(ValidationError):
        await sender.send(OutgoingSms(to="0412345678", body="x"))


async def test_logging_mailer_builds_and_logs_no_phi(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="crm_messaging")
    mailer = LoggingMailer()
    assert isinstance(mailer, Mailer)
    result = await mailer.send(
        email(
            subject="Biopsy follow-up",
            from_address=None,
            headers={"List-Unsubscribe": "<https://crm.example/u/1>"},
        )
    )
    assert result.accepted and result.provider == "log"
    assert "***@example.org" in caplog.text and "List-Unsubscribe" in caplog.text
    assert "patient@" not in caplog.text and "Biopsy" not in caplog.text
    with pytest.raises(ValidationError):  # bad input fails as it would for real
        await mailer.send(email(to="nobody"))


# --- entry points ----------------------------------------------------------------------


def test_sms_senders_load_by_entry_point_name() -> None:
    assert isinstance(load_sms_sender("log"), LoggingSmsSender)
    cs = load_sms_sender("ClickSend", {"CRM_CLICKSEND_USERNAME": "u", "CRM_CLICKSEND_API_KEY": "k"})
    assert isinstance(cs, ClickSendSender)
    mm = load_sms_sender(
        "messagemedia", {"CRM_MESSAGEMEDIA_API_KEY": "k", "CRM_MESSAGEMEDIA_API_SECRET": "s"}
    )
    assert isinstance(mm, MessageMediaSender)


def test_mailers_load_by_entry_point_name() -> None:
    assert isinstance(load_mailer("log"), LoggingMailer)
    assert isinstance(load_mailer("smtp", {"CRM_SMTP_HOST": "smtp.example.com"}), SmtpMailer)
    gmail = load_mailer(
        "gmail",
        {
            "CRM_GMAIL_CLIENT_ID": "c",
            "CRM_GMAIL_CLIENT_SECRET": "s",
            "CRM_GMAIL_REFRESH_TOKEN": "r",
        },
    )
    assert isinstance(gmail, GmailMailer)


def test_unknown_provider_names_the_setting_and_the_choices() -> None:
    with pytest.raises(AdapterNotInstalled) as info:
        load_sms_sender("twilio")
    assert info.value.field == "CRM_SMS_PROVIDER"
    assert "clicksend" in info.value.detail and "messagemedia" in info.value.detail
    with pytest.raises(AdapterNotInstalled) as info:
        load_mailer("sendgrid")
    assert info.value.field == "CRM_MAIL_PROVIDER"
    assert "gmail" in info.value.detail and "smtp" in info.value.detail


def test_missing_credentials_name_the_setting_through_the_loader() -> None:
    with pytest.raises(ValidationError) as info:
        load_sms_sender("clicksend", {"CRM_CLICKSEND_USERNAME": "u"})
    assert info.value.field == "CRM_CLICKSEND_API_KEY"
