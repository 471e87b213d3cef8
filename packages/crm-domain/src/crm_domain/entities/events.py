"""Domain events and their outbox envelope."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

from crm_domain.entities._fields import (
    aware,
    frozen_mapping,
    optional_aware,
    optional_text,
    optional_utc,
    text,
    utc,
)


@attrs.frozen(slots=True, kw_only=True)
class DomainEvent:
    """Something that happened, named in the past tense (``BookingCancelled``).

    ``payload`` holds JSON-compatible values only and no free-text PHI: consumers
    load what they need by id.
    """

    id: str = attrs.field(validator=text(64))
    tenant_id: str | None = attrs.field(default=None, validator=optional_text(64))
    name: str = attrs.field(validator=text(100))
    aggregate_type: str = attrs.field(validator=text(64))
    aggregate_id: str = attrs.field(validator=text(64))
    payload: dict[str, Any] = attrs.field(factory=dict, converter=frozen_mapping, hash=False)
    occurred_at: datetime = attrs.field(converter=utc, validator=aware)


class OutboxStatus(enum.StrEnum):
    """Delivery state of an outbox message."""

    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


@attrs.frozen(slots=True, kw_only=True)
class OutboxMessage:
    """A domain event waiting in the transactional outbox.

    A claimed message is leased until ``claimed_until``; if its consumer dies the
    lease lapses and it is claimed again, so consumers must be idempotent on
    ``event.id``.
    """

    event: DomainEvent
    status: OutboxStatus = OutboxStatus.PENDING
    attempts: int = 0
    available_at: datetime = attrs.field(converter=utc, validator=aware)
    claimed_until: datetime | None = attrs.field(
        default=None, converter=optional_utc, validator=optional_aware
    )
    last_error: str | None = None
