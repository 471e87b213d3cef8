"""Mailers and SMS senders for the Avatar Imaging CRM.

Implementations of the domain ports :class:`~crm_domain.ports.messaging.SmsSender`
(ClickSend, MessageMedia, a logging sender) and
:class:`~crm_domain.ports.messaging.Mailer` (SMTP, Gmail API, a logging mailer),
each built from a settings mapping by the factory its entry point names
(groups ``crm.sms`` and ``crm.mail``; see the package README for the keys).
"""

from crm_messaging.errors import MessagingConfigurationError
from crm_messaging.gmail import GmailMailer, GmailSettings, gmail_factory
from crm_messaging.log import (
    LoggingMailer,
    LoggingSmsSender,
    logging_mail_factory,
    logging_sms_factory,
)
from crm_messaging.mime import build_message
from crm_messaging.sms import (
    ClickSendSender,
    MessageMediaSender,
    clicksend_factory,
    messagemedia_factory,
)
from crm_messaging.smtp import SmtpMailer, SmtpSettings, smtp_factory

__all__ = [
    "ClickSendSender",
    "GmailMailer",
    "GmailSettings",
    "LoggingMailer",
    "LoggingSmsSender",
    "MessageMediaSender",
    "MessagingConfigurationError",
    "SmtpMailer",
    "SmtpSettings",
    "build_message",
    "clicksend_factory",
    "gmail_factory",
    "logging_mail_factory",
    "logging_sms_factory",
    "messagemedia_factory",
    "smtp_factory",
]
