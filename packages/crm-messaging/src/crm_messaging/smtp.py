"""The SMTP mailer (aiosmtplib): STARTTLS, implicit TLS, or plain to loopback only.

One connection is opened on the first send and reused for the next ones (checked
with ``NOOP`` first, reopened when the server has dropped it); sends on one
mailer are serialised on that connection.  A recipient the server refuses is a
``SendResult`` with ``accepted=False`` and the server's reply; refused
credentials or sender address are a configuration error; a server that is down
or answers 4xx is ``Unavailable``.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Mapping
from typing import Literal

import aiosmtplib
import anyio
import attrs
from crm_domain.errors import Unavailable, ValidationError
from crm_domain.ports.messaging import OutgoingEmail, SendResult

from crm_messaging import _config
from crm_messaging.errors import MessagingConfigurationError
from crm_messaging.mime import POLICY, build_message

log = logging.getLogger("crm_messaging")

Security = Literal["starttls", "tls", "none"]
_DEFAULT_PORTS: dict[Security, int] = {"starttls": 587, "tls": 465, "none": 25}


@attrs.frozen(slots=True, kw_only=True)
class SmtpSettings:
    """Where and how to submit mail; see :func:`smtp_factory` for the keys."""

    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    default_from: str | None = None
    timeout: float = 30.0
    #: A CA bundle to verify the server with (a private relay, or a test's CA).
    ca_file: str | None = None
    local_hostname: str | None = None

    @classmethod
    def from_mapping(cls, settings: Mapping[str, str]) -> SmtpSettings:
        """Read ``CRM_SMTP_*`` and ``CRM_MAIL_FROM`` (see the package README)."""
        host = _config.required(settings, "CRM_SMTP_HOST", "for CRM_MAIL_PROVIDER=smtp")
        given = (_config.text(settings, "CRM_SMTP_SECURITY", "starttls") or "").lower()
        # The Literal itself, looked up, so the type checker knows which one it is.
        security = next((s for s in _DEFAULT_PORTS if s == given), None)
        if security is None:
            raise ValidationError("CRM_SMTP_SECURITY", "must be starttls, tls or none")
        username = _config.text(settings, "CRM_SMTP_USERNAME")
        password = settings.get("CRM_SMTP_PASSWORD") or None
        if (username is None) != (password is None):
            raise ValidationError(
                "CRM_SMTP_PASSWORD" if username else "CRM_SMTP_USERNAME",
                "CRM_SMTP_USERNAME and CRM_SMTP_PASSWORD go together",
            )
        if security == "none" and not _config.is_loopback(host):
            # Deny by default: mail (and a password) in clear text only to this machine.
            raise ValidationError(
                "CRM_SMTP_SECURITY", "none is allowed only for a loopback CRM_SMTP_HOST"
            )
        return cls(
            host=host,
            port=_config.integer(settings, "CRM_SMTP_PORT", _DEFAULT_PORTS[security], 1, 65535),
            security=security,
            username=username,
            password=password,
            default_from=_config.text(settings, "CRM_MAIL_FROM"),
            timeout=_config.number(settings, "CRM_SMTP_TIMEOUT", 30.0, 0.01, 600.0),
            ca_file=_config.text(settings, "CRM_SMTP_CA_FILE"),
            local_hostname=_config.text(settings, "CRM_SMTP_LOCAL_HOSTNAME"),
        )


_CREDENTIALS = ("CRM_SMTP_USERNAME", "CRM_SMTP_PASSWORD")
_TLS = ("CRM_SMTP_HOST", "CRM_SMTP_SECURITY", "CRM_SMTP_CA_FILE")


class SmtpMailer:
    """A :class:`~crm_domain.ports.messaging.Mailer` over SMTP submission."""

    provider = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock = anyio.Lock()
        #: How many connections were opened (reuse is observable).
        self.connections_opened = 0

    def __repr__(self) -> str:
        return f"<SmtpMailer {self.settings.host}:{self.settings.port} {self.settings.security}>"

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file)

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        tls = s.security != "none"
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=self._tls_context() if tls else None,
            validate_certs=tls,
            timeout=s.timeout,
            local_hostname=s.local_hostname,
        )
        try:
            await smtp.connect()
            if s.username is not None and s.password is not None:
                await smtp.login(s.username, s.password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise MessagingConfigurationError(
                f"the SMTP server refused the login ({exc.code})", settings=_CREDENTIALS
            ) from None
        except ssl.SSLError as exc:
            smtp.close()
            raise MessagingConfigurationError(
                f"TLS with the SMTP server failed ({type(exc).__name__})", settings=_TLS
            ) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            smtp.close()
            raise Unavailable(f"the SMTP server cannot be reached ({type(exc).__name__})") from None
        except aiosmtplib.SMTPException as exc:
            # STARTTLS or AUTH not offered, or the greeting refused: the settings do not
            # match the server.
            smtp.close()
            raise MessagingConfigurationError(
                f"the SMTP server does not support this setup ({exc})",
                settings=(*_TLS, *_CREDENTIALS),
            ) from None
        self.connections_opened += 1
        return smtp

    async def _connection(self) -> aiosmtplib.SMTP:
        """The open connection, checked with NOOP; a new one when it was dropped."""
        if self._smtp is not None and self._smtp.is_connected:
            try:
                await self._smtp.noop()
                return self._smtp
            except (aiosmtplib.SMTPException, OSError):
                self._drop()
        self._smtp = await self._connect()
        return self._smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    async def aclose(self) -> None:
        """Say QUIT and close the connection."""
        async with self._lock:
            if self._smtp is not None and self._smtp.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await self._smtp.quit()
            self._drop()

    async def send(self, message: OutgoingEmail) -> SendResult:
        """Submit one email; the result says whether the server took the recipient."""
        mime = build_message(message, default_from=self.settings.default_from)
        envelope_from = mime["From"].addresses[0].addr_spec
        recipient = mime["To"].addresses[0].addr_spec
        message_id = str(mime["Message-ID"])
        async with self._lock:
            smtp = await self._connection()
            try:
                # The bytes of our own policy: aiosmtplib's send_message would flatten
                # again with email.policy.SMTP (headers folded at 78; see mime.POLICY).
                errors, reply = await smtp.sendmail(
                    envelope_from, [recipient], mime.as_bytes(policy=POLICY)
                )
            except aiosmtplib.SMTPRecipientsRefused as exc:
                refused = "; ".join(f"{e.code} {e.message}" for e in exc.recipients)
                if all(e.code < 500 for e in exc.recipients):
                    # 4xx (greylisting, mailbox busy): temporary, so the worker retries.
                    raise Unavailable(
                        f"the SMTP server deferred the recipient ({refused})"[:300]
                    ) from None
                log.info(
                    "email to ***@%s refused by SMTP: %s", recipient.rpartition("@")[2], refused
                )
                return SendResult(
                    provider=self.provider,
                    provider_message_id=message_id,
                    accepted=False,
                    error=f"recipient refused: {refused}"[:300],
                )
            except aiosmtplib.SMTPSenderRefused as exc:
                raise MessagingConfigurationError(
                    f"the SMTP server refused the sender address ({exc.code})",
                    settings=("CRM_MAIL_FROM",),
                ) from None
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code >= 500:
                    # Permanent refusal of this message (content, size …).
                    return SendResult(
                        provider=self.provider,
                        provider_message_id=message_id,
                        accepted=False,
                        error=f"{exc.code} {exc.message}"[:300],
                    )
                self._drop()
                raise Unavailable(f"the SMTP server deferred the message ({exc.code})") from None
            except (aiosmtplib.SMTPException, OSError) as exc:
                self._drop()
                raise Unavailable(f"the SMTP send failed ({type(exc).__name__})") from None
        if recipient in errors:
            bad = errors[recipient]
            return SendResult(
                provider=self.provider,
                provider_message_id=message_id,
                accepted=False,
                error=f"recipient refused: {bad.code} {bad.message}"[:300],
            )
        log.info("email to ***@%s accepted by SMTP (%s)", recipient.rpartition("@")[2], reply[:80])
        return SendResult(provider=self.provider, provider_message_id=message_id)


def smtp_factory(settings: Mapping[str, str]) -> SmtpMailer:
    """Entry point ``crm.mail:smtp``: ``CRM_SMTP_HOST``, ``CRM_SMTP_PORT``,
    ``CRM_SMTP_SECURITY`` (starttls, tls, none), ``CRM_SMTP_USERNAME``,
    ``CRM_SMTP_PASSWORD``, ``CRM_SMTP_TIMEOUT``, ``CRM_SMTP_CA_FILE``,
    ``CRM_SMTP_LOCAL_HOSTNAME`` and ``CRM_MAIL_FROM``."""
    return SmtpMailer(SmtpSettings.from_mapping(settings))


__all__ = ["SmtpMailer", "SmtpSettings", "smtp_factory"]
