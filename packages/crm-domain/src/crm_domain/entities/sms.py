"""SMS messages to and from contacts."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

from crm_domain.entities._fields import (
    aware,
    coerce_enum,
    optional_aware,
    optional_text,
    optional_utc,
    phone_or_none,
    text,
    utc,
)
from crm_domain.errors import ValidationError


class SmsDirection(enum.StrEnum):
    """Sent by the clinic or received from a patient."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"


class SmsStatus(enum.StrEnum):
    """Delivery state of a message."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    RECEIVED = "received"


class SmsKind(enum.StrEnum):
    """Why a message is sent, which decides when it may go out.

    ``marketing`` (a promotion, a recall campaign) only inside the sending
    window of :mod:`crm_domain.policies.messaging`; ``transactional`` (a
    reminder, a reply about a booking) at any hour.  Both need the contact's
    SMS consent; only the confirmation of an opt-out is sent without it.
    """

    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class SmsIntent(enum.StrEnum):
    """What a patient's reply means."""

    CONFIRM = "confirm"
    CANCEL = "cancel"
    RESCHEDULE = "reschedule"
    OPT_OUT = "opt_out"
    QUESTION = "question"
    OTHER = "other"


def _required_phone(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        raise ValidationError(attribute.name, "is required")
    phone_or_none(instance, attribute, value)


def _confidence(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, int | float) or not 0.0 <= value <= 1.0):
        raise ValidationError(attribute.name, "must be from 0 to 1")


def _to_direction(value: object) -> SmsDirection:
    return coerce_enum(SmsDirection, value, "direction")


def _to_status(value: object) -> SmsStatus:
    return coerce_enum(SmsStatus, value, "status")


def _to_intent(value: object) -> SmsIntent | None:
    return None if value is None else coerce_enum(SmsIntent, value, "intent")


@attrs.frozen(slots=True, kw_only=True)
class SmsMessage:
    """One SMS, with the intent understood from it when inbound."""

    id: str = attrs.field(validator=text(64))
    tenant_id: str = attrs.field(validator=text(64))
    contact_id: str | None = attrs.field(default=None, validator=optional_text(64))
    direction: SmsDirection = attrs.field(converter=_to_direction)
    from_number: str = attrs.field(validator=_required_phone)
    to_number: str = attrs.field(validator=_required_phone)
    body: str = attrs.field(validator=text(1600, allow_empty=True))
    status: SmsStatus = attrs.field(converter=_to_status)
    provider: str | None = attrs.field(default=None, validator=optional_text(50))
    provider_message_id: str | None = attrs.field(default=None, validator=optional_text(255))
    intent: SmsIntent | None = attrs.field(default=None, converter=_to_intent)
    intent_confidence: float | None = attrs.field(default=None, validator=_confidence)
    booking_id: str | None = attrs.field(default=None, validator=optional_text(64))
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    sent_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )
    #: Why the last attempt to send failed (the provider's refusal or outage); ``None`` once sent.
    error: str | None = attrs.field(default=None, validator=optional_text(500))
