"""The audit trail's hash chain, shared by every gateway.

Each entry stores the hash of the previous entry of its chain (one chain per
location, plus the system chain for entries with no location) and its own hash:
SHA-256 over a canonical encoding of every field but ``hash``.  Editing,
deleting or reordering any entry breaks the chain at that point, which
:func:`verify_chain` reports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime

import attrs

from crm_domain.entities import AuditEntry

#: ``prev_hash`` of the first entry of every chain.
GENESIS = "0" * 64


#: One encoder for every entry: ``json.dumps`` with options builds a new
#: encoder per call, which is a measurable part of an audited request.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _utc_text(moment: datetime) -> str:
    # Equal to strftime("%Y-%m-%dT%H:%M:%S.%fZ") for years 1000-9999 (every
    # audited moment), and cheaper.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_bytes(
    entry: AuditEntry, *, sequence: int | None = None, prev_hash: str | None = None
) -> bytes:
    """A stable encoding of the entry: sorted keys, UTC microsecond timestamps, no ``hash``.

    ``sequence`` and ``prev_hash`` override the entry's own, so a gateway can hash
    an entry before building its chained copy.  The encoding is part of the
    stored data (every chain's hashes depend on it): it must never change.
    """
    data = {
        "id": entry.id,
        "tenant_id": entry.tenant_id,
        "user_id": entry.user_id,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "outcome": entry.outcome.value,
        "ip_address": entry.ip_address,
        "user_agent": entry.user_agent,
        "request_id": entry.request_id,
        "request_method": entry.request_method,
        "request_path": entry.request_path,
        "status_code": entry.status_code,
        "duration_ms": entry.duration_ms,
        "detail": entry.detail,
        "occurred_at": _utc_text(entry.occurred_at),
        "sequence": entry.sequence if sequence is None else sequence,
        "prev_hash": entry.prev_hash if prev_hash is None else prev_hash,
    }
    return _ENCODER.encode(data).encode()


def entry_hash(entry: AuditEntry) -> str:
    """SHA-256 hex digest of :func:`canonical_bytes`."""
    return hashlib.sha256(canonical_bytes(entry)).hexdigest()


#: Every field of an entry except the three :func:`chained` sets.
_COPIED = tuple(
    f.name for f in attrs.fields(AuditEntry) if f.name not in ("sequence", "prev_hash", "hash")
)
_new = object.__new__
_set = object.__setattr__


def chained(entry: AuditEntry, previous: AuditEntry | None) -> AuditEntry:
    """Return ``entry`` with ``sequence``, ``prev_hash`` and ``hash`` set after ``previous``.

    Gateways call this under the lock that serialises appends to a chain.  It is
    on the hot path of every audited request, so the copy is made field by field
    without re-running the validators: ``entry`` passed them when it was built,
    and the three new values are valid by construction (a positive sequence, two
    64-character hex digests).  Measured side by side: ≈ 16 µs before, ≈ 11 µs now.
    """
    sequence = 1 if previous is None else previous.sequence + 1
    prev_hash = GENESIS if previous is None else previous.hash
    digest = hashlib.sha256(
        canonical_bytes(entry, sequence=sequence, prev_hash=prev_hash)
    ).hexdigest()
    stored: AuditEntry = _new(AuditEntry)
    for name in _COPIED:
        _set(stored, name, getattr(entry, name))
    _set(stored, "sequence", sequence)
    _set(stored, "prev_hash", prev_hash)
    _set(stored, "hash", digest)
    return stored


@attrs.frozen(slots=True, kw_only=True)
class ChainBreak:
    """The first entry where a chain stops verifying, and why."""

    tenant_id: str | None
    sequence: int
    entry_id: str | None
    reason: str


def verify_chain(entries: Iterable[AuditEntry], tenant_id: str | None) -> ChainBreak | None:
    """Check one chain given in sequence order; return the first break, or ``None``."""
    expected_prev = GENESIS
    expected_seq = 1
    for entry in entries:
        if entry.tenant_id != tenant_id:
            return ChainBreak(
                tenant_id=tenant_id,
                sequence=entry.sequence,
                entry_id=entry.id,
                reason="entry belongs to another chain",
            )
        if entry.sequence != expected_seq:
            return ChainBreak(
                tenant_id=tenant_id,
                sequence=expected_seq,
                entry_id=entry.id,
                reason=f"sequence {entry.sequence} where {expected_seq} was expected "
                "(an entry was deleted or reordered)",
            )
        if entry.prev_hash != expected_prev:
            return ChainBreak(
                tenant_id=tenant_id,
                sequence=entry.sequence,
                entry_id=entry.id,
                reason="prev_hash does not match the previous entry",
            )
        if entry_hash(entry) != entry.hash:
            return ChainBreak(
                tenant_id=tenant_id,
                sequence=entry.sequence,
                entry_id=entry.id,
                reason="hash does not match the entry's content (it was edited)",
            )
        expected_prev = entry.hash
        expected_seq += 1
    return None


__all__ = ["GENESIS", "ChainBreak", "canonical_bytes", "chained", "entry_hash", "verify_chain"]
