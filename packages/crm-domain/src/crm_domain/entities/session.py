"""Server-side session records behind short-lived session tokens."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import attrs

from crm_domain.entities._fields import (
    aware,
    coerce_enum,
    optional_aware,
    optional_text,
    optional_utc,
    text,
    utc,
)
from crm_domain.errors import Conflict, NotFound, ValidationError


@attrs.frozen(slots=True, kw_only=True)
class Session:
    """A signed-in staff session; ``id`` is the token's ``jti``."""

    id: str = attrs.field(validator=text(64))
    user_id: str = attrs.field(validator=text(64))
    location_id: str | None = attrs.field(default=None, validator=optional_text(64))
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    last_seen_at: datetime = attrs.field(converter=utc, validator=aware)
    expires_at: datetime = attrs.field(converter=utc, validator=aware)
    revoked_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )

    def is_live(self, now: datetime, idle_timeout: timedelta) -> bool:
        """Not revoked, not expired, and used within ``idle_timeout`` (automatic logoff)."""
        return (
            self.revoked_at is None
            and now < self.expires_at
            and now - self.last_seen_at <= idle_timeout
        )


@attrs.frozen(slots=True, kw_only=True)
class WebhookReceipt:
    """A webhook event already processed, kept to reject replays."""

    source: str = attrs.field(validator=text(50))
    event_id: str = attrs.field(validator=text(255))
    tenant_id: str | None = attrs.field(default=None, validator=optional_text(64))
    received_at: datetime = attrs.field(converter=utc, validator=aware)


class IdempotencyState(enum.StrEnum):
    """Where an ``Idempotency-Key`` is in its life.

    ``PENDING``: reserved before the create ran; the create may be running,
    may have committed, or may have died — so the key cannot be answered yet.
    ``COMPLETED``: the create's answer is stored and is replayed from now on.
    A released reservation is deleted, so it has no state.
    """

    PENDING = "pending"
    COMPLETED = "completed"


def _to_state(value: object) -> IdempotencyState:
    return coerce_enum(IdempotencyState, value, "state")


@attrs.frozen(slots=True, kw_only=True)
class IdempotencyRecord:
    """A POST carrying an ``Idempotency-Key``: its reservation, then its stored answer.

    A record is ``PENDING`` (no answer yet: ``status_code``, ``response_body``
    and ``completed_at`` are ``None``) or ``COMPLETED`` (all three set).
    ``created_at`` is when the key was reserved; a pending reservation older
    than the caller's bound may be taken over (see
    :meth:`crm_domain.ports.IdempotencyRepository.reserve`).
    """

    tenant_id: str = attrs.field(validator=text(64))
    key: str = attrs.field(validator=text(255))
    user_id: str = attrs.field(validator=text(64))
    #: Hash of method, path and body: the same key with another request is a conflict.
    request_fingerprint: str = attrs.field(validator=text(128))
    state: IdempotencyState = attrs.field(converter=_to_state)
    status_code: int | None = None
    response_body: str | None = None
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    completed_at: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )

    def __attrs_post_init__(self) -> None:
        answer = (self.status_code, self.response_body, self.completed_at)
        if self.state is IdempotencyState.PENDING and answer != (None, None, None):
            raise ValidationError("state", "a pending reservation has no stored answer yet")
        if self.state is IdempotencyState.COMPLETED and None in answer:
            raise ValidationError(
                "state", "a completed record needs status_code, response_body and completed_at"
            )

    @property
    def pending(self) -> bool:
        """Reserved, no answer stored yet."""
        return self.state is IdempotencyState.PENDING

    def is_stale(self, stale_before: datetime | None) -> bool:
        """A pending reservation made before ``stale_before`` (never true for an answer)."""
        return self.pending and stale_before is not None and self.created_at < stale_before

    def completed(
        self, *, status_code: int, response_body: str, completed_at: datetime
    ) -> IdempotencyRecord:
        """This reservation with its answer stored."""
        return attrs.evolve(
            self,
            state=IdempotencyState.COMPLETED,
            status_code=status_code,
            response_body=response_body,
            completed_at=completed_at,
        )


def require_reservation(record: IdempotencyRecord) -> None:
    """``ValidationError`` unless ``record`` is a fresh ``PENDING`` reservation."""
    if not record.pending:
        raise ValidationError("state", "only a pending reservation can be reserved")


def require_held(
    stored: IdempotencyRecord | None, reservation: IdempotencyRecord
) -> IdempotencyRecord:
    """Check that ``stored`` is still exactly ``reservation``, pending; return it.

    ``NotFound`` when the key has no record; ``Conflict`` when it was completed
    or taken over by a later reservation (its ``created_at`` differs).  Every
    gateway judges ``complete``/``release`` with this, so they agree.
    """
    if stored is None:
        raise NotFound("this Idempotency-Key is not reserved")
    if not stored.pending:
        raise Conflict("this Idempotency-Key already has a stored answer")
    if (
        stored.created_at != reservation.created_at
        or stored.request_fingerprint != reservation.request_fingerprint
    ):
        raise Conflict("this Idempotency-Key reservation was taken over by another request")
    return stored
