"""Messaging ports: email and SMS providers."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs


@attrs.frozen(slots=True, kw_only=True)
class OutgoingEmail:
    """One email to one recipient."""

    to: str
    subject: str
    html: str
    text: str
    from_address: str | None = None
    reply_to: str | None = None
    headers: dict[str, str] = attrs.field(factory=dict, hash=False)


@attrs.frozen(slots=True, kw_only=True)
class OutgoingSms:
    """One SMS to one number (E.164)."""

    to: str
    body: str
    sender: str | None = None
    reference: str | None = None  # our message id, echoed back in delivery reports


@attrs.frozen(slots=True, kw_only=True)
class SendResult:
    """The provider's acceptance of a message."""

    provider: str
    provider_message_id: str | None
    accepted: bool = True
    error: str | None = None


@runtime_checkable
class Mailer(Protocol):
    """Sends email; raises ``Unavailable`` when the provider is down."""

    async def send(self, message: OutgoingEmail) -> SendResult:
        """Send one email."""
        ...


@runtime_checkable
class SmsSender(Protocol):
    """Sends SMS; raises ``Unavailable`` when the provider is down."""

    async def send(self, message: OutgoingSms) -> SendResult:
        """Send one SMS."""
        ...
