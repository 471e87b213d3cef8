"""The HIPAA audit trail: append-only, hash-chained per location."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from crm_domain.entities._fields import aware, coerce_enum, non_negative, optional_text, text, utc


class AuditOutcome(enum.StrEnum):
    """How the audited request ended."""

    SUCCESS = "success"
    DENIED = "denied"
    FAILED = "failed"


def _to_outcome(value: object) -> AuditOutcome:
    return coerce_enum(AuditOutcome, value, "outcome")


@attrs.frozen(slots=True, kw_only=True)
class AuditEntry:
    """One access to protected data, allowed or not.

    ``sequence``, ``prev_hash`` and ``hash`` are assigned by the gateway when the
    entry is appended (see :mod:`crm_domain.audit_chain`); callers leave them empty.
    """

    id: str = attrs.field(validator=text(64))
    #: The location whose data was touched; ``None`` when no location was resolved
    #: (e.g. a request refused for a bad token), which goes to the system chain.
    tenant_id: str | None = attrs.field(default=None, validator=optional_text(64))
    user_id: str | None = attrs.field(default=None, validator=optional_text(64))
    #: READ, CREATE, UPDATE, DELETE, EXPORT, LOGIN, LOGOUT, SEND …
    action: str = attrs.field(validator=text(32))
    resource_type: str = attrs.field(validator=text(64))
    resource_id: str | None = attrs.field(default=None, validator=optional_text(255))
    outcome: AuditOutcome = attrs.field(default=AuditOutcome.SUCCESS, converter=_to_outcome)
    ip_address: str | None = attrs.field(default=None, validator=optional_text(64))
    user_agent: str | None = attrs.field(default=None, validator=optional_text(500))
    request_id: str | None = attrs.field(default=None, validator=optional_text(64))
    request_method: str | None = attrs.field(default=None, validator=optional_text(16))
    request_path: str | None = attrs.field(default=None, validator=optional_text(2000))
    status_code: int | None = None
    duration_ms: int | None = None
    detail: str | None = attrs.field(default=None, validator=optional_text(2000))
    occurred_at: datetime = attrs.field(converter=utc, validator=aware)
    sequence: int = attrs.field(default=0, validator=non_negative)
    prev_hash: str = attrs.field(default="", validator=text(64, allow_empty=True))
    hash: str = attrs.field(default="", validator=text(64, allow_empty=True))
