"""Building RFC 5322 messages with the stdlib ``email`` package.

One builder for the SMTP and Gmail mailers, so both send the same bytes:
``multipart/alternative`` with a ``text/plain`` part first and a ``text/html``
part second (only the text part when ``html`` is empty), UTF-8 throughout, a
``Message-ID`` and ``Date``, and the caller's extra headers — notably
``List-Unsubscribe`` and ``List-Unsubscribe-Post`` (RFC 2369, RFC 8058) for
marketing mail.
"""

from __future__ import annotations

import email.policy
import email.utils
from email.headerregistry import Address
from email.message import EmailMessage

from crm_domain.errors import ValidationError
from crm_domain.ports.messaging import OutgoingEmail

#: Headers the builder owns: a caller's ``headers`` may not set them (a ``Bcc`` or
#: second ``To`` would send the mail to someone the port never named).
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "sender",
        "return-path",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
#: ``email.policy.SMTP`` (CRLF line endings, as on the wire) with 7-bit output:
#: non-ASCII bodies go quoted-printable or base64 rather than raw 8-bit, so a relay
#: without 8BITMIME (or Gmail's raw import) gets exactly these bytes.  Header lines
#: are folded at RFC 5322's hard limit (998), not its advisory 78: folding a
#: non-ASCII subject at 78 makes Python 3.11's encoder split it into encoded words
#: and lose the space between two of them ("¡ ¡" arrives as "¡¡"; found by the
#: hostile-names property test).  Bodies are unaffected: quoted-printable and
#: base64 keep their own 76-character lines.
POLICY = email.policy.SMTP.clone(cte_type="7bit", max_line_length=998)


def parse_address(value: str, field: str) -> Address:
    """One mailbox (``Name <a@b.example>`` or ``a@b.example``), else ``ValidationError``."""
    if "\r" in value or "\n" in value or "," in value:
        raise ValidationError(field, "must be a single email address")
    name, addr = email.utils.parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not at or not local or "." not in domain or " " in addr:
        raise ValidationError(field, "must be an email address")
    try:
        return Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError):
        raise ValidationError(field, "must be an email address") from None


def build_message(message: OutgoingEmail, *, default_from: str | None) -> EmailMessage:
    """The MIME message for ``message``; ``From`` falls back to ``default_from``."""
    sender = message.from_address or default_from
    if not sender:
        raise ValidationError("from_address", "no sender: set it or CRM_MAIL_FROM")
    from_addr = parse_address(sender, "from_address")
    to_addr = parse_address(message.to, "to")
    mime = EmailMessage(policy=POLICY)
    try:
        mime["Subject"] = message.subject
    except ValueError:
        raise ValidationError("subject", "must be one line") from None
    mime["From"] = from_addr
    mime["To"] = to_addr
    if message.reply_to:
        mime["Reply-To"] = parse_address(message.reply_to, "reply_to")
    mime["Date"] = email.utils.formatdate(usegmt=True)
    mime["Message-ID"] = email.utils.make_msgid(domain=from_addr.domain)
    for name, value in message.headers.items():
        if name.lower() in RESERVED_HEADERS:
            raise ValidationError(f"headers.{name}", "is set by the mailer")
        if not name or any(c in name for c in ":\r\n ") or not name.isascii():
            raise ValidationError(f"headers.{name}", "is not a header name")
        try:
            mime[name] = value
        except ValueError:
            raise ValidationError(f"headers.{name}", "must be one line") from None
    mime.set_content(message.text, subtype="plain", charset="utf-8")
    if message.html:
        mime.add_alternative(message.html, subtype="html", charset="utf-8")
    return mime


__all__ = ["POLICY", "RESERVED_HEADERS", "build_message", "parse_address"]
