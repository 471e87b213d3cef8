"""The audit hash chain detects edits, deletions and reordering."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import attrs

from crm_domain.audit_chain import GENESIS, canonical_bytes, chained, entry_hash, verify_chain
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


def test_encoding_is_frozen() -> None:
    """Stored chains depend on the exact bytes: a faster encoder must produce the same ones.

    The expected digests were computed with the first implementation
    (``json.dumps(..., sort_keys=True)`` and ``strftime``), before it was optimised.
    """
    assert [e.hash for e in build_chain(3)] == [
        "a91c6fc3b11b24a965c96cf67b00e0c0ca97e58f8f89465706f8f5afdfacefdc",
        "ce2bed506028d6049a60c9a30084318d10d0799323aed1070a9dc129b600a430",
        "1c157134f186aa1aa34ac0d87f3ba2a540f43d4c06b02b7e2533dafa521d5fa7",
    ]
    every_field = AuditEntry(
        id="x1",
        action="LOGIN",
        resource_type="session",
        outcome="denied",
        ip_address="::ffff:10.0.0.1",
        user_agent='curl/8 "q"\\',
        request_id="r",
        request_method="POST",
        request_path="/auth/ü",
        status_code=401,
        duration_ms=3,
        detail="line\nbreak\t\u0001",
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-5))),
    )
    assert canonical_bytes(every_field, sequence=7, prev_hash="a" * 64) == (
        b'{"action":"LOGIN","detail":"line\\nbreak\\t\\u0001","duration_ms":3,"id":"x1",'
        b'"ip_address":"::ffff:10.0.0.1","occurred_at":"2026-01-02T08:04:05.000006Z",'
        b'"outcome":"denied","prev_hash":"' + b"a" * 64 + b'","request_id":"r",'
        b'"request_method":"POST","request_path":"/auth/\xc3\xbc","resource_id":null,'
        b'"resource_type":"session","sequence":7,"status_code":401,"tenant_id":null,'
        b'"user_agent":"curl/8 \\"q\\"\\\\","user_id":null}'
    )


def test_chained_copy_equals_a_validated_copy() -> None:
    """The copy skips the validators; it must equal the one ``attrs.evolve`` builds."""
    entry = build_chain(1)[0]
    again = chained(attrs.evolve(entry, sequence=0, prev_hash="", hash=""), None)
    assert again == entry
    assert again == attrs.evolve(
        entry, sequence=entry.sequence, prev_hash=entry.prev_hash, hash=entry.hash
    )
    assert attrs.asdict(chained(entry, entry)) == {
        **attrs.asdict(entry),
        "sequence": 2,
        "prev_hash": entry.hash,
        "hash": chained(entry, entry).hash,
    }
