"""The audit hash chain detects edits, deletions and reordering."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import attrs

from crm_domain.audit_chain import GENESIS, chained, entry_hash, verify_chain
from crm_domain.entities import AuditEntry

T0 = datetime(2026, 11, 24, tzinfo=UTC)


def build_chain(n: int, tenant: str | None = "loc1") -> list[AuditEntry]:
    chain: list[AuditEntry] = []
    for i in range(n):
        entry = AuditEntry(
            id=f"a{i:03d}",
            tenant_id=tenant,
            user_id="u1",
            action="READ",
            resource_type="contact",
            resource_id=f"c{i}",
            detail="Zoë 🩻",
            occurred_at=T0 + timedelta(seconds=i),
        )
        chain.append(chained(entry, chain[-1] if chain else None))
    return chain


def test_valid_chain_verifies() -> None:
    chain = build_chain(5)
    assert chain[0].prev_hash == GENESIS
    assert [e.sequence for e in chain] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))
    assert verify_chain(chain, "loc1") is None
    assert verify_chain([], "loc1") is None


def test_edit_is_detected_at_the_edited_entry() -> None:
    chain = build_chain(5)
    chain[2] = attrs.evolve(chain[2], resource_id="someone-else")
    broken = verify_chain(chain, "loc1")
    assert broken is not None
    assert (broken.sequence, broken.entry_id) == (3, "a002")
    assert "edited" in broken.reason


def test_deletion_and_reordering_are_detected() -> None:
    chain = build_chain(5)
    deleted = verify_chain(chain[:2] + chain[3:], "loc1")
    assert deleted is not None and deleted.sequence == 3
    swapped = verify_chain([chain[0], chain[2], chain[1], *chain[3:]], "loc1")
    assert swapped is not None and swapped.sequence == 2


def test_rehashing_an_edit_still_breaks_the_next_link() -> None:
    chain = build_chain(4)
    forged = attrs.evolve(chain[1], action="DELETE", hash="")
    chain[1] = attrs.evolve(forged, hash=entry_hash(forged))
    broken = verify_chain(chain, "loc1")
    assert broken is not None and broken.sequence == 3


def test_timestamp_encoding_is_offset_independent() -> None:
    entry = build_chain(1)[0]
    shifted = attrs.evolve(entry, occurred_at=entry.occurred_at.astimezone())
    assert entry_hash(shifted) == entry_hash(entry)


def test_entry_of_another_chain_is_refused() -> None:
    chain = build_chain(2, tenant=None)
    broken = verify_chain(chain, "loc1")
    assert broken is not None and "another chain" in broken.reason
