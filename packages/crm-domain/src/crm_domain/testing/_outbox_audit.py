"""The transactional outbox and the append-only, hash-chained audit trail."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import attrs
import pytest

from crm_domain.audit_chain import GENESIS, verify_chain
from crm_domain.entities import OutboxMessage
from crm_domain.errors import Conflict, NotFound, PermissionDenied
from crm_domain.ports.gateway import AuditRepository, DatabaseGateway
from crm_domain.queries import MAX_LIMIT, AuditQuery, FilterSpec, matches
from crm_domain.testing._base import GatewayKit, assert_same
from crm_domain.testing._repositories import _filter_value, check_time_filters
from crm_domain.testing._world import MINUS_0330, PLUS_1030, World, fill

LEASE = 60.0


async def _claim(
    world: World, now_offset: float, limit: int = 100, lease: float = LEASE
) -> list[OutboxMessage]:
    async with world.gateway.unit_of_work() as uow:
        claimed = list(await uow.outbox.claim(world.at(seconds=now_offset), limit, lease))
        await uow.commit()
    return claimed


def _event_ids(messages: Sequence[OutboxMessage]) -> list[str]:
    return [m.event.id for m in messages]


class OutboxConformance(GatewayKit):
    """Order, leases, completion, retries and the dead letter."""

    async def test_events_round_trip_and_are_claimed_oldest_first(self, world: World) -> None:
        a = world.a.id
        first = world.event(
            a,
            payload={"name": "Zoë 🦄", "rtl": "שלום", "n": 3, "x": 0.5, "ok": True, "none": None},
            occurred_at=world.at(seconds=-30, microseconds=1).astimezone(PLUS_1030),
        )
        second, third = world.event(a), world.event(a)
        system = world.event(None, name="NightlyRetention", aggregate_type="system")
        await world.save(a, first, second)
        await world.save(a, third)
        await world.save(None, system)

        claimed = await _claim(world, 0, limit=2)
        assert _event_ids(claimed) == [first.id, second.id]
        assert_same(claimed[0].event, first)
        assert all(m.attempts == 1 for m in claimed)
        assert all(m.claimed_until == world.at(seconds=LEASE) for m in claimed)
        assert _event_ids(await _claim(world, 0)) == [third.id, system.id]
        assert await _claim(world, 1) == []  # every message is leased

    async def test_a_lapsed_lease_is_claimed_again(self, world: World) -> None:
        event = world.event(world.a.id)
        await world.save(world.a.id, event)
        assert _event_ids(await _claim(world, 0)) == [event.id]
        assert await _claim(world, LEASE - 1) == []
        again = await _claim(world, LEASE + 1)
        assert _event_ids(again) == [event.id]
        assert again[0].attempts == 2

    async def test_complete_fail_and_dead_letter(self, world: World) -> None:
        done, retried, dead = (world.event(world.a.id) for _ in range(3))
        await world.save(world.a.id, done, retried, dead)
        await _claim(world, 0)
        async with world.gateway.unit_of_work() as uow:
            await uow.outbox.complete([done.id])
            await uow.outbox.fail(retried.id, "smtp 451 ✉", world.at(minutes=5))
            await uow.outbox.fail(dead.id, "bad address", world.at(minutes=5), dead=True)
            await uow.commit()
        async with world.gateway.unit_of_work() as uow:
            assert _event_ids(await uow.outbox.list_status("done")) == [done.id]
            assert _event_ids(await uow.outbox.list_status("dead")) == [dead.id]
            pending = list(await uow.outbox.list_status("pending"))
        assert _event_ids(pending) == [retried.id]
        assert pending[0].last_error == "smtp 451 ✉"
        assert pending[0].claimed_until is None
        assert pending[0].available_at == world.at(minutes=5)
        assert pending[0].attempts == 1
        assert await _claim(world, 4 * 60) == []  # not yet due
        later = await _claim(world, 6 * 60)
        assert _event_ids(later) == [retried.id]
        assert later[0].attempts == 2

    async def test_events_are_not_claimed_before_they_are_due(self, world: World) -> None:
        future = world.event(world.a.id, occurred_at=world.at(minutes=10))
        await world.save(world.a.id, future)
        assert await _claim(world, 0) == []
        assert _event_ids(await _claim(world, 11 * 60)) == [future.id]

    async def test_claim_limit_and_list_status_limit(self, world: World) -> None:
        events = [world.event(world.a.id) for _ in range(5)]
        await world.save_all(world.a.id, events)
        async with world.gateway.unit_of_work() as uow:
            assert _event_ids(await uow.outbox.list_status("pending", limit=2)) == [
                e.id for e in events[:2]
            ]
        assert len(await _claim(world, 0, limit=3)) == 3

    async def test_concurrent_consumers_never_share_a_message(self, world: World) -> None:
        events = [world.event(world.a.id) for _ in range(6)]
        await world.save_all(world.a.id, events)
        results: list[list[str]] = []

        async def consumer() -> None:
            async with world.gateway.unit_of_work() as uow:
                claimed = await uow.outbox.claim(world.now, 3, LEASE)
                await anyio.lowlevel.checkpoint()
                await uow.commit()
            results.append(_event_ids(claimed))

        async with anyio.create_task_group() as group:
            group.start_soon(consumer)
            group.start_soon(consumer)
        flat = [i for r in results for i in r]
        assert sorted(flat) == sorted(e.id for e in events)

    async def test_the_outbox_is_tenant_checked(self, world: World) -> None:
        async with world.gateway.unit_of_work(world.b.id) as uow:
            with pytest.raises(PermissionDenied):
                await uow.outbox.add(world.event(world.a.id))
            with pytest.raises(PermissionDenied):
                await uow.outbox.claim(world.now)
        async with world.gateway.unit_of_work() as uow:
            with pytest.raises(PermissionDenied):
                await uow.outbox.add(world.event(world.a.id))

    async def test_duplicate_event_ids_conflict(self, world: World) -> None:
        event = world.event(world.a.id)
        await world.save(world.a.id, event)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            with pytest.raises(Conflict):
                await uow.outbox.add(event)


class AuditConformance(GatewayKit):
    """Append-only, one hash chain per location plus the system chain."""

    async def test_the_port_has_no_way_to_change_history(self, gateway: DatabaseGateway) -> None:
        forbidden = ("update", "delete", "remove", "edit", "replace", "truncate", "clear", "purge")
        uow = gateway.unit_of_work("any-location")
        for name in forbidden:
            assert not hasattr(AuditRepository, name), name
            assert not hasattr(uow.audit, name), name

    async def test_append_assigns_sequence_and_hashes(self, world: World) -> None:
        a = world.a.id
        edge = world.audit(
            a,
            user_id=fill(64),
            action="EXPORT",
            resource_type=fill(64),
            resource_id=fill(255),
            outcome="denied",
            ip_address="2001:db8::1",
            user_agent=fill(500),
            request_id=fill(64, "req-"),
            request_method="PATCH",
            request_path="/api/contacts/" + fill(1986),
            status_code=403,
            duration_ms=0,
            detail=fill(2000),
            occurred_at=world.at(microseconds=654321).astimezone(MINUS_0330),
        )
        async with world.gateway.unit_of_work(a) as uow:
            appended = [await uow.audit.append(world.audit(a)), await uow.audit.append(edge)]
            appended.extend(await uow.audit.append_many([world.audit(a), world.audit(a)]))
            await uow.commit()
        assert [e.sequence for e in appended] == [1, 2, 3, 4]
        assert appended[0].prev_hash == GENESIS
        assert all(e.prev_hash == p.hash for p, e in itertools.pairwise(appended))
        assert_same(attrs.evolve(appended[1], sequence=0, prev_hash="", hash=""), edge)
        async with world.gateway.unit_of_work(a) as uow:
            chain = list(await uow.audit.chain())
            assert_same(await uow.audit.get(edge.id), appended[1])
        for stored, returned in zip(chain, appended, strict=True):
            assert_same(stored, returned)
        assert verify_chain(chain, a) is None

    async def test_chains_are_independent(self, world: World) -> None:
        counts = {world.a.id: 3, world.b.id: 2, None: 2}
        for tenant, n in counts.items():
            for _ in range(n):
                await world.save(tenant, world.audit(tenant))
        for tenant, n in counts.items():
            async with world.gateway.unit_of_work(tenant) as uow:
                chain = list(await uow.audit.chain())
                assert await uow.audit.count(AuditQuery()) == n
            assert [e.sequence for e in chain] == list(range(1, n + 1))
            assert verify_chain(chain, tenant) is None
            assert all(e.tenant_id == tenant for e in chain)

    async def test_chain_reads_after_a_sequence(self, world: World) -> None:
        entries = [world.audit(world.a.id) for _ in range(4)]
        await world.save_all(world.a.id, entries)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            tail = await uow.audit.chain(after_sequence=1, limit=2)
        assert [e.id for e in tail] == [entries[1].id, entries[2].id]
        assert [e.sequence for e in tail] == [2, 3]

    async def test_another_location_sees_nothing(self, world: World) -> None:
        entry = world.audit(world.a.id)
        await world.save(world.a.id, entry)
        for tenant in (world.b.id, None):
            async with world.gateway.unit_of_work(tenant) as uow:
                with pytest.raises(NotFound):
                    await uow.audit.get(entry.id)
                assert (await uow.audit.list(AuditQuery())).items == ()
                assert await uow.audit.count(AuditQuery()) == 0
                assert list(await uow.audit.chain()) == []

    async def test_entries_of_another_chain_are_refused(self, world: World) -> None:
        for tenant in (world.b.id, None):
            async with world.gateway.unit_of_work(tenant) as uow:
                with pytest.raises(PermissionDenied):
                    await uow.audit.append(world.audit(world.a.id))
        async with world.gateway.unit_of_work(world.a.id) as uow:
            with pytest.raises(PermissionDenied):
                await uow.audit.append(world.audit(None))

    async def test_rolled_back_appends_leave_no_gap(self, world: World) -> None:
        a = world.a.id
        async with world.gateway.unit_of_work(a) as uow:
            await uow.audit.append(world.audit(a))
            await uow.rollback()
        kept = world.audit(a)
        await world.save(a, kept)
        async with world.gateway.unit_of_work(a) as uow:
            chain = list(await uow.audit.chain())
        assert [(e.id, e.sequence) for e in chain] == [(kept.id, 1)]
        assert verify_chain(chain, a) is None

    async def test_duplicate_entry_ids_conflict(self, world: World) -> None:
        entry = world.audit(world.a.id)
        await world.save(world.a.id, entry)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            with pytest.raises(Conflict):
                await uow.audit.append(entry)

    async def test_audit_list_filters_and_pages(self, world: World) -> None:
        a = world.a.id
        variants = [
            world.audit(a, user_id="u-1", action="READ", resource_type="contact",
                        resource_id="c-1", occurred_at=world.at(minutes=-3)),
            world.audit(a, user_id="u-2", action="UPDATE", resource_type="contact",
                        resource_id="c-2", outcome="denied", occurred_at=world.at(minutes=-2)),
            world.audit(a, user_id="u-1", action="READ", resource_type="booking",
                        resource_id="b-1", outcome="failed", occurred_at=world.at(minutes=-1)),
            world.audit(a, action="LOGIN", resource_type="session", occurred_at=world.at()),
        ]  # fmt: skip
        await world.save_all(a, variants)
        await world.save(world.b.id, world.audit(world.b.id, user_id="u-1"))
        problems: list[str] = []
        async with world.gateway.unit_of_work(a) as uow:
            for field in attrs.fields(AuditQuery):
                spec = field.metadata.get("filter")
                if spec is None:
                    continue
                spec = FilterSpec(spec.op, spec.columns or (field.name,))
                value = _filter_value(spec, variants)
                query = AuditQuery(**{field.name: value}, limit=MAX_LIMIT)
                expected = sorted((e.id for e in variants if matches(query, e)), reverse=True)
                if not 0 < len(expected) < len(variants):
                    problems.append(f"{field.name}: sample data cannot tell it apart")
                    continue
                got = [e.id for e in (await uow.audit.list(query)).items]
                if got != expected or await uow.audit.count(query) != len(expected):
                    problems.append(f"{field.name}={value!r}: listed {got}, expected {expected}")
            first = await uow.audit.list(AuditQuery(limit=3))
            rest = await uow.audit.list(AuditQuery(limit=3, cursor=first.next_cursor))
        assert not problems, "audit filters:\n  " + "\n  ".join(problems)
        newest_first = sorted((e.id for e in variants), reverse=True)
        assert [e.id for e in (*first.items, *rest.items)] == newest_first
        assert rest.next_cursor is None

    async def test_audit_time_filters_take_aware_times_only(self, world: World) -> None:
        a = world.a.id
        entries = [world.audit(a, occurred_at=world.at(minutes=-m)) for m in (3, 2, 1, 0)]
        await world.save_all(a, entries)
        async with world.gateway.unit_of_work(a) as uow:
            stored = list((await uow.audit.list(AuditQuery(limit=MAX_LIMIT))).items)

        async def listed(query: AuditQuery) -> list[str]:
            async with world.gateway.unit_of_work(a) as uow:
                return [e.id for e in (await uow.audit.list(query)).items]

        problems = await check_time_filters(AuditQuery, stored, listed)
        assert not problems, "audit time filters:\n  " + "\n  ".join(problems)


__all__ = ["AuditConformance", "OutboxConformance"]
