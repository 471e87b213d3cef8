"""Senders that log instead of sending (the demo's default, and offline setups).

The log line carries no PHI: the number reduced to its last three digits, the
recipient's email domain, sizes and our reference — never the body, the
subject or the full address.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping

from crm_domain.errors import ValidationError
from crm_domain.ports.messaging import OutgoingEmail, OutgoingSms, SendResult

from crm_messaging._http import mask_number
from crm_messaging.mime import build_message

log = logging.getLogger("crm_messaging.log")


class LoggingSmsSender:
    """An :class:`~crm_domain.ports.messaging.SmsSender` that logs one line per SMS."""

    provider = "log"

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def send(self, message: OutgoingSms) -> SendResult:
        """Log the SMS (masked) and accept it with an id ``log-sms-<n>``."""
        if not message.to.startswith("+") or not message.to[1:].isdigit():
            raise ValidationError("to", "must be a phone number in E.164 (+61412345678)")
        message_id = f"log-sms-{next(self._ids)}"
        log.info(
            "SMS not sent (logging sender) to %s: %d characters, reference %s, id %s",
            mask_number(message.to),
            len(message.body),
            message.reference or "-",
            message_id,
        )
        return SendResult(provider=self.provider, provider_message_id=message_id)


class LoggingMailer:
    """A :class:`~crm_domain.ports.messaging.Mailer` that builds the message (so bad
    input fails as it would for real) and logs one line instead of sending it."""

    provider = "log"

    def __init__(self, default_from: str | None = "crm@localhost.localdomain") -> None:
        self.default_from = default_from
        self._ids = itertools.count(1)

    async def send(self, message: OutgoingEmail) -> SendResult:
        """Log the email (masked) and accept it with an id ``log-email-<n>``."""
        mime = build_message(message, default_from=self.default_from)
        domain = mime["To"].addresses[0].domain
        message_id = f"log-email-{next(self._ids)}"
        log.info(
            "email not sent (logging mailer) to ***@%s: %d bytes%s, id %s",
            domain,
            len(mime.as_bytes()),
            ", with List-Unsubscribe" if "List-Unsubscribe" in mime else "",
            message_id,
        )
        return SendResult(provider=self.provider, provider_message_id=message_id)


def logging_sms_factory(settings: Mapping[str, str]) -> LoggingSmsSender:
    """Entry point ``crm.sms:log`` (no settings)."""
    return LoggingSmsSender()


def logging_mail_factory(settings: Mapping[str, str]) -> LoggingMailer:
    """Entry point ``crm.mail:log`` (``CRM_MAIL_FROM``, optional)."""
    return LoggingMailer(settings.get("CRM_MAIL_FROM") or "crm@localhost.localdomain")


__all__ = ["LoggingMailer", "LoggingSmsSender", "logging_mail_factory", "logging_sms_factory"]
