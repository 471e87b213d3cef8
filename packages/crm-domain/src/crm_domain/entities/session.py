"""Server-side session records behind short-lived session tokens."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from crm_domain.entities._fields import aware, optional_aware, optional_text, text


@attrs.frozen(slots=True, kw_only=True)
class Session:
    """A signed-in staff session; ``id`` is the token's ``jti``."""

    id: str = attrs.field(validator=text(64))
    user_id: str = attrs.field(validator=text(64))
    location_id: str | None = attrs.field(default=None, validator=optional_text(64))
    created_at: datetime = attrs.field(validator=aware)
    last_seen_at: datetime = attrs.field(validator=aware)
    expires_at: datetime = attrs.field(validator=aware)
    revoked_at: datetime | None = attrs.field(default=None, validator=optional_aware)

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
    received_at: datetime = attrs.field(validator=aware)


@attrs.frozen(slots=True, kw_only=True)
class IdempotencyRecord:
    """The stored answer to a POST carrying an ``Idempotency-Key``."""

    tenant_id: str = attrs.field(validator=text(64))
    key: str = attrs.field(validator=text(255))
    user_id: str = attrs.field(validator=text(64))
    #: Hash of method, path and body: the same key with another request is a conflict.
    request_fingerprint: str = attrs.field(validator=text(128))
    status_code: int
    response_body: str
    created_at: datetime = attrs.field(validator=aware)
