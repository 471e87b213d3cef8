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
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import attrs

from crm_domain.entities import AuditEntry
from crm_domain.errors import CrmError

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


class UndecodableEntry(CrmError):
    """A stored audit entry that cannot be read back as an :class:`AuditEntry`.

    A gateway's ``audit.chain`` raises it for the first such row of the page it
    reads (a row edited in the database to a value the entity cannot hold, such
    as an unknown ``outcome``), so verification reports the entry as a break
    instead of failing with the decoding error.  ``field`` names the column.
    """

    def __init__(self, *, sequence: int, entry_id: str | None, field: str, reason: str) -> None:
        super().__init__(f"entry {entry_id} (sequence {sequence}): {field}: {reason}")
        self.sequence = sequence
        self.entry_id = entry_id
        self.field = field
        self.reason = reason


class ChainVerifier:
    """Checks one chain entry by entry, in sequence order (see :func:`verify_chain`).

    Incremental, so a long chain can be verified page by page in bounded memory.
    """

    def __init__(self, tenant_id: str | None) -> None:
        self.tenant_id = tenant_id
        self.checked = 0
        self._expected_prev = GENESIS
        self._expected_seq = 1

    def check(self, entry: AuditEntry) -> ChainBreak | None:
        """Check the next entry; the break it shows, or ``None`` (then it counts as checked)."""
        tenant_id = self.tenant_id
        if entry.tenant_id != tenant_id:
            return ChainBreak(
                tenant_id=tenant_id,
                sequence=entry.sequence,
                entry_id=entry.id,
                reason="entry belongs to another chain",
            )
        if entry.sequence != self._expected_seq:
            return ChainBreak(
                tenant_id=tenant_id,
                sequence=self._expected_seq,
                entry_id=entry.id,
                reason=f"sequence {entry.sequence} where {self._expected_seq} was expected "
                "(an entry was deleted or reordered)",
            )
        if entry.prev_hash != self._expected_prev:
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
        self._expected_prev = entry.hash
        self._expected_seq += 1
        self.checked += 1
        return None

    def undecodable(self, error: UndecodableEntry) -> ChainBreak:
        """The break for an entry that could not be read back at all."""
        return ChainBreak(
            tenant_id=self.tenant_id,
            sequence=error.sequence,
            entry_id=error.entry_id,
            reason=f"the stored entry cannot be decoded ({error.field}: {error.reason}); "
            "it was edited",
        )


def verify_chain(entries: Iterable[AuditEntry], tenant_id: str | None) -> ChainBreak | None:
    """Check one chain given in sequence order; return the first break, or ``None``."""
    verifier = ChainVerifier(tenant_id)
    for entry in entries:
        broken = verifier.check(entry)
        if broken is not None:
            return broken
    return None


class _ChainReader(Protocol):
    async def chain(self, after_sequence: int = 0, limit: int = 1000) -> Sequence[AuditEntry]: ...


async def verify_stored_chain(
    audit: _ChainReader, tenant_id: str | None, *, batch: int = 1000
) -> tuple[int, ChainBreak | None]:
    """Verify the chain a unit of work's ``audit`` repository is bound to, page by page.

    Returns (entries checked, first break).  An entry the gateway cannot decode
    (:class:`UndecodableEntry`) is a break like any other, reported in chain
    order: the decodable entries before it on the same page are read again,
    with smaller pages, and checked first.  Reading stops at the first break.
    """
    verifier = ChainVerifier(tenant_id)
    after = 0
    while True:
        try:
            page = await audit.chain(after_sequence=after, limit=batch)
        except UndecodableEntry as error:
            page = await _decodable_prefix(audit, after, batch, error)
            for entry in page:
                broken = verifier.check(entry)
                if broken is not None:
                    return verifier.checked, broken
            return verifier.checked, verifier.undecodable(error)
        for entry in page:
            broken = verifier.check(entry)
            if broken is not None:
                return verifier.checked, broken
        if len(page) < batch:
            return verifier.checked, None
        after = page[-1].sequence


async def _decodable_prefix(
    audit: _ChainReader, after: int, failed: int, error: UndecodableEntry
) -> Sequence[AuditEntry]:
    # The longest page from ``after`` that decodes: everything before the first
    # undecodable row.  With no gap in the sequence that is the first guess;
    # otherwise a binary search over the page length (a handful of reads, and
    # only ever on a chain that is already broken).
    good: Sequence[AuditEntry] = ()
    low, high = 0, failed  # a page of ``low`` decodes, one of ``high`` does not
    guess = min(max(error.sequence - after - 1, 0), failed - 1)
    while low + 1 < high:
        size = guess if low < guess < high else (low + high) // 2
        guess = 0
        try:
            page = await audit.chain(after_sequence=after, limit=size)
        except UndecodableEntry:
            high = size
            continue
        good, low = page, size
        if len(page) < size:  # the chain ends before the bad row: cannot happen, but stop
            break
    return good


__all__ = [
    "GENESIS",
    "ChainBreak",
    "ChainVerifier",
    "UndecodableEntry",
    "canonical_bytes",
    "chained",
    "entry_hash",
    "verify_chain",
    "verify_stored_chain",
]
