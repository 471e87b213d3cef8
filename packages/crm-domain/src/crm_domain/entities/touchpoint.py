"""An interaction with a contact: an ad click, a form, an email opened, a call."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

from crm_domain.entities._fields import (
    aware,
    coerce_enum,
    frozen_mapping,
    json_scalars,
    optional_text,
    text,
    utc,
)


class TouchpointKind(enum.StrEnum):
    """What happened."""

    AD_CLICK = "ad_click"
    PAGE_VIEW = "page_view"
    FORM_SUBMIT = "form_submit"
    EMAIL_SENT = "email_sent"
    EMAIL_OPENED = "email_opened"
    EMAIL_CLICKED = "email_clicked"
    SMS_SENT = "sms_sent"
    SMS_RECEIVED = "sms_received"
    CALL_INBOUND = "call_inbound"
    CALL_OUTBOUND = "call_outbound"
    CHAT_MESSAGE = "chat_message"
    BOOKING_CREATED = "booking_created"
    BOOKING_ATTENDED = "booking_attended"
    BOOKING_CANCELLED = "booking_cancelled"
    NO_SHOW = "no_show"
    NOTE = "note"


class Channel(enum.StrEnum):
    """The medium of a touchpoint."""

    WEB = "web"
    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    SOCIAL = "social"
    IN_PERSON = "in_person"
    OTHER = "other"


def _to_kind(value: object) -> TouchpointKind:
    return coerce_enum(TouchpointKind, value, "kind")


def _to_channel(value: object) -> Channel:
    return coerce_enum(Channel, value, "channel")


@attrs.frozen(slots=True, kw_only=True)
class Touchpoint:
    """One recorded interaction with a contact."""

    id: str = attrs.field(validator=text(64))
    tenant_id: str = attrs.field(validator=text(64))
    contact_id: str = attrs.field(validator=text(64))
    kind: TouchpointKind = attrs.field(converter=_to_kind)
    channel: Channel = attrs.field(default=Channel.OTHER, converter=_to_channel)
    occurred_at: datetime = attrs.field(converter=utc, validator=aware)
    campaign_id: str | None = attrs.field(default=None, validator=optional_text(64))
    #: Small flat facts (utm_source, page, duration_s); never free-text PHI.
    metadata: dict[str, Any] = attrs.field(
        factory=dict, converter=frozen_mapping, validator=json_scalars, hash=False
    )
    created_at: datetime = attrs.field(converter=utc, validator=aware)
