"""A location's suppression list: addresses never to send SMS or marketing email to."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

from crm_domain.entities._fields import aware, coerce_enum, optional_text, text, utc
from crm_domain.errors import ValidationError
from crm_domain.values import parse_email, parse_phone


class SuppressionChannel(enum.StrEnum):
    """What a suppression stops: SMS to a phone number, or campaign email to an address."""

    SMS = "sms"
    EMAIL = "email"


class SuppressionReason(enum.StrEnum):
    """Why an address was suppressed."""

    #: The person asked to stop (a STOP reply, an unsubscribe).
    OPT_OUT = "opt_out"
    #: The mailer reported a permanent bounce: the address does not exist.
    BOUNCE = "bounce"
    #: The recipient marked a message as spam.
    COMPLAINT = "complaint"
    #: Added by staff.
    MANUAL = "manual"


def normalise_address(channel: SuppressionChannel | str, address: object) -> str:
    """The stored form of ``address`` on ``channel``: E.164 for SMS, lower-cased email.

    ``ValidationError`` naming ``channel`` or ``address`` for a bad value, so the
    same address typed two ways is one suppression (the unique key holds).
    """
    kind = coerce_enum(SuppressionChannel, channel, "channel")
    if kind is SuppressionChannel.SMS:
        return parse_phone(address, field="address")
    return parse_email(address, field="address")


def _to_channel(value: object) -> SuppressionChannel:
    return coerce_enum(SuppressionChannel, value, "channel")


def _to_reason(value: object) -> SuppressionReason:
    return coerce_enum(SuppressionReason, value, "reason")


def _normalised(instance: Suppression, attribute: attrs.Attribute[Any], value: object) -> None:
    # A validator, not a converter: a stored row must already be normalised, and an
    # un-normalised one would slip past the (tenant, channel, address) unique key.
    if normalise_address(instance.channel, value) != value:
        raise ValidationError(
            attribute.name, "must be normalised (E.164 phone or lower-cased email)"
        )


@attrs.frozen(slots=True, kw_only=True)
class Suppression:
    """One address on a location's suppression list; unique per (location, channel, address).

    Kept apart from contacts on purpose: it outlives a deleted, merged or
    re-created contact, and covers numbers that match no contact at all.
    """

    id: str = attrs.field(validator=text(64))
    tenant_id: str = attrs.field(validator=text(64))
    channel: SuppressionChannel = attrs.field(converter=_to_channel)
    address: str = attrs.field(validator=_normalised)
    reason: SuppressionReason = attrs.field(converter=_to_reason)
    note: str | None = attrs.field(default=None, validator=optional_text(500))
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    #: The staff user's id, or ``system`` (a STOP reply, a mailer's bounce report).
    created_by: str = attrs.field(validator=text(255))

    @classmethod
    def create(
        cls,
        *,
        id: str,
        tenant_id: str,
        channel: SuppressionChannel | str,
        address: object,
        reason: SuppressionReason | str,
        created_at: datetime,
        created_by: str,
        note: str | None = None,
    ) -> Suppression:
        """A suppression from input as typed: the address normalised for its channel."""
        kind = _to_channel(channel)
        return cls(
            id=id,
            tenant_id=tenant_id,
            channel=kind,
            address=normalise_address(kind, address),
            reason=_to_reason(reason),
            note=note,
            created_at=created_at,
            created_by=created_by,
        )


__all__ = ["Suppression", "SuppressionChannel", "SuppressionReason", "normalise_address"]
