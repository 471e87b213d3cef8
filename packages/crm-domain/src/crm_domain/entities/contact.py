"""A lead or patient of one location."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

import attrs

from crm_domain.entities._fields import (
    aware,
    coerce_enum,
    email_or_none,
    optional_aware,
    optional_text,
    optional_utc,
    phone_or_none,
    str_tuple,
    tag_rules,
    tags,
    text,
    utc,
    warmness,
)
from crm_domain.errors import ValidationError


class ContactSource(enum.StrEnum):
    """Where a lead came from."""

    META_AD = "meta_ad"
    GOOGLE_AD = "google_ad"
    WEBSITE = "website"
    WIX = "wix"
    MANYCHAT = "manychat"
    REFERRAL = "referral"
    PHONE = "phone"
    WALK_IN = "walk_in"
    IMPORT = "import"
    OTHER = "other"


class ContactStatus(enum.StrEnum):
    """Where a contact is in the funnel."""

    NEW = "new"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    BOOKED = "booked"
    PATIENT = "patient"
    LOST = "lost"


def _reachable(instance: Contact, _a: object, value: str | None) -> None:
    phone_or_none(instance, attrs.fields(Contact).phone, value)
    if instance.email is None and value is None:
        raise ValidationError("email", "a contact needs an email or a phone number")


def _past_date(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, date) or isinstance(value, datetime):
        raise ValidationError(attribute.name, "must be a date (YYYY-MM-DD)")
    if value.year < 1900:
        raise ValidationError(attribute.name, "must be after 1900")


def _to_source(value: object) -> ContactSource:
    return coerce_enum(ContactSource, value, "source")


def _to_status(value: object) -> ContactStatus:
    return coerce_enum(ContactStatus, value, "status")


@attrs.frozen(slots=True, kw_only=True)
class Contact:
    """A person the clinic is talking to: a lead until they book, then a patient."""

    id: str = attrs.field(validator=text(64))
    tenant_id: str = attrs.field(validator=text(64))
    first_name: str = attrs.field(validator=text(100))
    last_name: str = attrs.field(default="", validator=text(100, allow_empty=True))
    email: str | None = attrs.field(default=None, validator=email_or_none)
    phone: str | None = attrs.field(default=None, validator=_reachable)
    source: ContactSource = attrs.field(default=ContactSource.OTHER, converter=_to_source)
    status: ContactStatus = attrs.field(default=ContactStatus.NEW, converter=_to_status)
    warmness: int = attrs.field(default=0, validator=warmness)
    #: Plain-language reasons behind the current warmness score.
    warmness_reasons: tuple[str, ...] = attrs.field(default=(), converter=str_tuple)
    tags: tuple[str, ...] = attrs.field(default=(), converter=tags, validator=tag_rules)
    #: Consent to marketing email; reminders about a booking do not need it.
    email_opt_in: bool = False
    #: Consent to SMS; cleared for good by an opt-out reply (STOP).
    sms_opt_in: bool = False
    consent_updated_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )
    service_interest: str | None = attrs.field(default=None, validator=optional_text(100))
    date_of_birth: date | None = attrs.field(default=None, validator=_past_date)
    notes: str | None = attrs.field(default=None, validator=optional_text(10_000))
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    updated_at: datetime = attrs.field(converter=utc, validator=aware)

    @property
    def full_name(self) -> str:
        """First and last name joined."""
        return f"{self.first_name} {self.last_name}".strip()
