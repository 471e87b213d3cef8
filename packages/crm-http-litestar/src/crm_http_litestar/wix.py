"""Wix Bookings webhooks: the body is a JWT signed RS256 by Wix; its claims, read.

Wire format (dev.wix.com "Webhook structure", "Verify requests received from
Wix", Bookings V2 "Booking object"; cited in the README):

* the whole request body is a JWT (``RS256``) signed with the app's key; the
  public key is in the app dashboard ("Get Public Key") → ``CRM_WIX_PUBLIC_KEY``;
* its ``data`` claim — a JSON string, or already an object — holds
  ``eventType`` (``wix.bookings.v2.booking_created`` / ``_confirmed`` /
  ``_canceled`` / ``_rescheduled`` / ``_declined`` / ``_updated``),
  ``instanceId`` (the site) and ``data`` (again a string or an object):
  ``id`` (the webhook event id), ``entityId``, ``eventTime`` and the booking in
  ``createdEvent.entity``, ``updatedEvent.currentEntity`` or
  ``actionEvent.body.booking`` (or their ``…AsJson`` string forms);
* a booking has ``id``, ``status``, ``startDate``/``endDate`` (or
  ``bookedEntity.slot.startDate``/``endDate``), ``bookedEntity.title`` and
  ``contactDetails`` (``firstName``, ``lastName``, ``email``, ``phone``).

Refusals: a body that is not a JWT → 422 ``body``; a wrong signature, another
algorithm (``none`` included) → 401; expired, or issued more than
:data:`MAX_EVENT_AGE` ago → 422 naming ``exp``/``iat`` (stale); a missing
field → 422 naming it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import jwt
from crm_domain.errors import Unavailable, ValidationError
from crm_domain.services import ExternalBookingEvent, PersonDetails

from crm_http_litestar.problems import Unauthenticated

#: An event issued longer ago than this is refused as stale (Wix retries for hours, not days).
MAX_EVENT_AGE = timedelta(days=3)
#: Clock skew allowed on ``exp``/``iat``.
LEEWAY = timedelta(minutes=2)
#: Wix Bookings V2 event names, by the suffix after ``booking_``.
BOOKING_EVENTS = ("created", "confirmed", "canceled", "rescheduled", "declined", "updated")
_STATUS = {"CONFIRMED": "confirmed", "CANCELED": "cancelled", "DECLINED": "cancelled"}
_EVENT_STATUS = {"confirmed": "confirmed", "canceled": "cancelled", "declined": "cancelled"}


@attrs.frozen(slots=True, kw_only=True)
class WixEvent:
    """A verified Wix webhook: its site, and the booking event when it is one we handle."""

    instance_id: str
    event_type: str
    booking: ExternalBookingEvent | None


def verify(raw: bytes, public_key: str, now: datetime) -> dict[str, Any]:
    """The JWT's claims once its RS256 signature and times are checked (see the module doc)."""
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValidationError("body", "not a JWT (Wix sends the event as a signed JWT)") from None
    if not token:
        raise Unauthenticated("no signed body")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            options={"verify_aud": False},
            leeway=LEEWAY,
        )
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
        raise Unauthenticated("the body is not signed by Wix (RS256, CRM_WIX_PUBLIC_KEY)") from None
    except jwt.ExpiredSignatureError:
        raise ValidationError("exp", "the event has expired (stale)") from None
    except jwt.ImmatureSignatureError:
        raise ValidationError("iat", "the event is dated in the future") from None
    except jwt.InvalidKeyError:
        raise Unavailable("CRM_WIX_PUBLIC_KEY is not a valid RSA public key") from None
    except jwt.DecodeError:
        raise ValidationError("body", "not a JWT (Wix sends the event as a signed JWT)") from None
    except jwt.InvalidTokenError as exc:
        raise ValidationError("body", f"invalid JWT: {exc}") from None
    issued = claims.get("iat")
    if (
        isinstance(issued, int | float)
        and not isinstance(issued, bool)
        and datetime.fromtimestamp(issued, UTC) < now - MAX_EVENT_AGE
    ):
        raise ValidationError("iat", f"the event is older than {MAX_EVENT_AGE.days} days")
    return claims


def _object(value: Any, field: str) -> dict[str, Any]:
    """``value`` as an object: Wix sends nested payloads as JSON strings or as objects."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValidationError(field, "is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValidationError(field, "must be an object")
    return value


def _text(source: dict[str, Any], key: str, field: str) -> str:
    value = source.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "is required")
    return value.strip()


def _time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise ValidationError(field, "is required (ISO 8601)")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValidationError(field, "needs a UTC offset")
    return parsed


def _entity(inner: dict[str, Any]) -> dict[str, Any]:
    for event_key, entity_key in (
        ("createdEvent", "entity"),
        ("updatedEvent", "currentEntity"),
        ("actionEvent", "body"),
    ):
        event = inner.get(event_key)
        if not isinstance(event, dict):
            continue
        if entity_key in event:
            found = _object(event[entity_key], f"data.{event_key}.{entity_key}")
        elif f"{entity_key}AsJson" in event:
            found = _object(event[f"{entity_key}AsJson"], f"data.{event_key}.{entity_key}AsJson")
        else:
            continue
        # An action event's body wraps the booking ({"booking": {...}, ...}).
        booking = found.get("booking")
        return booking if isinstance(booking, dict) else found
    raise ValidationError("data", "no booking in createdEvent, updatedEvent or actionEvent")


def read_event(claims: dict[str, Any]) -> WixEvent:
    """Read a verified webhook's claims; ``booking`` is ``None`` for events not handled."""
    envelope = _object(claims.get("data"), "data")
    event_type = _text(envelope, "eventType", "eventType")
    instance_id = _text(envelope, "instanceId", "instanceId")
    kind = event_type.rsplit(".", 1)[-1].removeprefix("booking_")
    if "bookings" not in event_type or kind not in BOOKING_EVENTS:
        return WixEvent(instance_id=instance_id, event_type=event_type, booking=None)
    inner = _object(envelope.get("data"), "data.data")
    event_id = _text(inner, "id", "data.id")
    booking = _entity(inner)
    entity = booking.get("bookedEntity")
    entity = entity if isinstance(entity, dict) else {}
    slot = entity.get("slot")
    slot = slot if isinstance(slot, dict) else {}
    starts = booking.get("startDate") or slot.get("startDate")
    ends = booking.get("endDate") or slot.get("endDate")
    title = entity.get("title")
    details = booking.get("contactDetails")
    details = details if isinstance(details, dict) else {}
    status = _EVENT_STATUS.get(kind) or _STATUS.get(str(booking.get("status") or "").upper())
    occurred = inner.get("eventTime") or booking.get("updatedDate")
    return WixEvent(
        instance_id=instance_id,
        event_type=event_type,
        booking=ExternalBookingEvent(
            source="wix",
            event_id=event_id,
            external_id=_text(booking, "id", "booking.id"),
            status=status,
            starts_at=_time(starts, "booking.startDate"),
            ends_at=_time(ends, "booking.endDate"),
            service_type=(
                title.strip()[:100] if isinstance(title, str) and title.strip() else "Wix booking"
            ),
            occurred_at=_time(occurred, "data.eventTime"),
            person=PersonDetails(
                first_name=str(details.get("firstName") or ""),
                last_name=str(details.get("lastName") or ""),
                email=details.get("email") or None,
                phone=details.get("phone") or None,
            ),
        ),
    )


__all__ = ["BOOKING_EVENTS", "LEEWAY", "MAX_EVENT_AGE", "WixEvent", "read_event", "verify"]
