"""Email campaigns and their per-recipient deliveries."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from crm_domain.entities._fields import (
    aware,
    coerce_enum,
    email_or_none,
    non_negative,
    optional_aware,
    optional_text,
    optional_utc,
    text,
    utc,
)
from crm_domain.entities.contact import ContactSource, ContactStatus


class CampaignStatus(enum.StrEnum):
    """Where a campaign is."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    #: Stopped by staff mid-send; resuming sends the rest (never again to anyone sent).
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


def _to_source(value: object) -> ContactSource | None:
    return None if value is None else coerce_enum(ContactSource, value, "source")


def _to_contact_status(value: object) -> ContactStatus | None:
    return None if value is None else coerce_enum(ContactStatus, value, "status")


def _to_campaign_status(value: object) -> CampaignStatus:
    return coerce_enum(CampaignStatus, value, "status")


def _to_delivery_status(value: object) -> DeliveryStatus:
    return coerce_enum(DeliveryStatus, value, "status")


@attrs.frozen(slots=True, kw_only=True)
class AudienceFilter:
    """Which contacts a campaign goes to (always only those with ``email_opt_in``)."""

    source: ContactSource | None = attrs.field(default=None, converter=_to_source)
    status: ContactStatus | None = attrs.field(default=None, converter=_to_contact_status)
    tag: str | None = attrs.field(default=None, validator=optional_text(50))
    warmness_min: int | None = None
    warmness_max: int | None = None


@attrs.frozen(slots=True, kw_only=True)
class EmailCampaign:
    """A marketing email sent to an audience of one location's contacts."""

    id: str = attrs.field(validator=text(64))
    tenant_id: str = attrs.field(validator=text(64))
    name: str = attrs.field(validator=text(200))
    subject: str = attrs.field(validator=text(300))
    body_html: str = attrs.field(validator=text(500_000))
    body_text: str = attrs.field(validator=text(500_000))
    audience: AudienceFilter = attrs.field(factory=AudienceFilter)
    status: CampaignStatus = attrs.field(
        default=CampaignStatus.DRAFT, converter=_to_campaign_status
    )
    scheduled_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )
    sent_count: int = attrs.field(default=0, validator=non_negative)
    opened_count: int = attrs.field(default=0, validator=non_negative)
    clicked_count: int = attrs.field(default=0, validator=non_negative)
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    updated_at: datetime = attrs.field(converter=utc, validator=aware)


class DeliveryStatus(enum.StrEnum):
    """State of one campaign email to one contact."""

    PENDING = "pending"
    #: Handed to the mailer; ``sent`` once its acceptance is recorded (see the campaign service).
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    OPENED = "opened"
    CLICKED = "clicked"


@attrs.frozen(slots=True, kw_only=True)
class CampaignDelivery:
    """One campaign email to one contact; unique per (campaign, contact)."""

    id: str = attrs.field(validator=text(64))
    tenant_id: str = attrs.field(validator=text(64))
    campaign_id: str = attrs.field(validator=text(64))
    contact_id: str = attrs.field(validator=text(64))
    email: str = attrs.field(validator=email_or_none)
    status: DeliveryStatus = attrs.field(
        default=DeliveryStatus.PENDING, converter=_to_delivery_status
    )
    provider_message_id: str | None = attrs.field(default=None, validator=optional_text(255))
    error: str | None = attrs.field(default=None, validator=optional_text(2000))
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    sent_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )
    opened_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )
    clicked_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )
