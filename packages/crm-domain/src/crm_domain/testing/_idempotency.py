"""``Idempotency-Key`` reservations: reserve, complete, release, take over.

These are the store guarantees the HTTP layer's "at most once" POSTs rest on:
one reservation per (location, user, key) even under concurrent units of
work, completion and release only by the reservation's holder, and a stale
reservation taken over by exactly one of several concurrent requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import anyio
import anyio.lowlevel
import pytest

from crm_domain.entities import IdempotencyRecord, IdempotencyState
from crm_domain.errors import Conflict, NotFound, PermissionDenied, ValidationError
from crm_domain.testing._base import GatewayKit, assert_same
from crm_domain.testing._world import MINUS_0330, World, evolve


async def _reserve(
    world: World, reservation: IdempotencyRecord, stale_before: datetime | None = None
) -> None:
    async with world.gateway.unit_of_work(reservation.tenant_id) as uow:
        await uow.idempotency.reserve(reservation, stale_before=stale_before)
        await uow.commit()


async def _stored(world: World, tenant_id: str, key: str, user_id: str) -> IdempotencyRecord | None:
    async with world.gateway.unit_of_work(tenant_id) as uow:
        return await uow.idempotency.get(key, user_id)


async def _race(
    world: World, reservations: Sequence[tuple[IdempotencyRecord, datetime | None]]
) -> int:
    """Reserve all at once in concurrent units of work; return how many committed.

    Every contender reserves, yields so the others reserve too, then commits;
    a loser must fail with ``Conflict`` (at ``reserve`` or at ``commit``).
    """
    won = 0

    async def contender(reservation: IdempotencyRecord, stale_before: datetime | None) -> None:
        nonlocal won
        try:
            async with world.gateway.unit_of_work(reservation.tenant_id) as uow:
                await uow.idempotency.reserve(reservation, stale_before=stale_before)
                await anyio.lowlevel.checkpoint()  # let the others reserve before we commit
                await uow.commit()
        except Conflict:
            return
        won += 1

    async with anyio.create_task_group() as group:
        for reservation, stale_before in reservations:
            group.start_soon(contender, reservation, stale_before)
    return won


class IdempotencyConformance(GatewayKit):
    """Reservations for idempotent POSTs: at most one holder per key, ever."""

    async def test_reserve_twice_conflicts(self, world: World) -> None:
        a = world.a.id
        first = world.reservation(a, key="k-1", created_at=world.at(microseconds=5))
        await _reserve(world, first)
        stored = await _stored(world, a, "k-1", first.user_id)
        assert stored is not None
        assert stored.state is IdempotencyState.PENDING
        assert_same(stored, first)
        again = world.reservation(a, key="k-1", request_fingerprint="e" * 64)
        async with world.gateway.unit_of_work(a) as uow:
            with pytest.raises(Conflict):
                await uow.idempotency.reserve(again)
        # A fresh (not stale) reservation is not taken over, even when asked to.
        async with world.gateway.unit_of_work(a) as uow:
            with pytest.raises(Conflict):
                await uow.idempotency.reserve(again, stale_before=first.created_at)
        assert_same(await _stored(world, a, "k-1", first.user_id), first)

    async def test_concurrent_reservations_of_one_key_one_wins(self, world: World) -> None:
        a = world.a.id
        contenders = [
            (world.reservation(a, key="race", request_fingerprint=f"{n:064x}"), None)
            for n in range(6)
        ]
        assert await _race(world, contenders) == 1
        stored = await _stored(world, a, "race", "user-1")
        assert stored is not None and stored.pending
        assert stored.request_fingerprint in {r.request_fingerprint for r, _ in contenders}

    async def test_only_pending_records_are_reserved(self, world: World) -> None:
        async with world.gateway.unit_of_work(world.a.id) as uow:
            with pytest.raises(ValidationError):
                await uow.idempotency.reserve(world.idempotency(world.a.id))
        with pytest.raises(ValidationError):
            world.reservation(world.a.id, status_code=201)
        with pytest.raises(ValidationError):
            world.idempotency(world.a.id, completed_at=None)

    async def test_complete_then_get(self, world: World) -> None:
        a = world.a.id
        reservation = world.reservation(a, key="k-2", created_at=world.at(seconds=1))
        await _reserve(world, reservation)
        body = '{"id": "c-1", "name": "Zoë 🦄 שלום"}'
        async with world.gateway.unit_of_work(a) as uow:
            done = await uow.idempotency.complete(
                reservation,
                status_code=201,
                response_body=body,
                completed_at=world.at(seconds=2).astimezone(MINUS_0330),
            )
            await uow.commit()
        expected = evolve(
            reservation,
            state=IdempotencyState.COMPLETED,
            status_code=201,
            response_body=body,
            completed_at=world.at(seconds=2),
        )
        assert_same(done, expected)
        assert_same(await _stored(world, a, "k-2", "user-1"), expected)
        async with world.gateway.unit_of_work(a) as uow:
            with pytest.raises(Conflict):
                await uow.idempotency.complete(
                    reservation, status_code=200, response_body="{}", completed_at=world.now
                )
            with pytest.raises(Conflict):
                await uow.idempotency.release(reservation)
            # An answer is never taken over, however old.
            with pytest.raises(Conflict):
                await uow.idempotency.reserve(
                    world.reservation(a, key="k-2"), stale_before=world.at(days=400)
                )
        assert_same(await _stored(world, a, "k-2", "user-1"), expected)

    async def test_complete_and_release_need_a_reservation(self, world: World) -> None:
        ghost = world.reservation(world.a.id, key="never-reserved")
        async with world.gateway.unit_of_work(world.a.id) as uow:
            with pytest.raises(NotFound):
                await uow.idempotency.complete(
                    ghost, status_code=201, response_body="{}", completed_at=world.now
                )
            with pytest.raises(NotFound):
                await uow.idempotency.release(ghost)

    async def test_release_then_reserve_again(self, world: World) -> None:
        a = world.a.id
        reservation = world.reservation(a, key="k-3")
        await _reserve(world, reservation)
        async with world.gateway.unit_of_work(a) as uow:
            await uow.idempotency.release(reservation)
            await uow.commit()
        assert await _stored(world, a, "k-3", "user-1") is None
        retry = world.reservation(a, key="k-3", request_fingerprint="d" * 64)
        await _reserve(world, retry)
        assert_same(await _stored(world, a, "k-3", "user-1"), retry)
        # A release that is rolled back keeps the reservation.
        async with world.gateway.unit_of_work(a) as uow:
            await uow.idempotency.release(retry)
            await uow.rollback()
        assert_same(await _stored(world, a, "k-3", "user-1"), retry)

    async def test_stale_reservation_is_taken_over_once(self, world: World) -> None:
        a = world.a.id
        stale = world.reservation(a, key="k-4", created_at=world.at(hours=-25))
        await _reserve(world, stale)
        newer = [
            (
                world.reservation(
                    a, key="k-4", request_fingerprint=f"{n:064x}", created_at=world.at(seconds=n)
                ),
                world.at(hours=-24),
            )
            for n in range(5)
        ]
        assert await _race(world, newer) == 1
        stored = await _stored(world, a, "k-4", "user-1")
        assert stored is not None and stored.pending
        winner = next(r for r, _ in newer if r.request_fingerprint == stored.request_fingerprint)
        assert_same(stored, winner)
        # The displaced holder can neither complete nor release any more.
        async with world.gateway.unit_of_work(a) as uow:
            with pytest.raises(Conflict):
                await uow.idempotency.complete(
                    stale, status_code=201, response_body="{}", completed_at=world.now
                )
            with pytest.raises(Conflict):
                await uow.idempotency.release(stale)
        async with world.gateway.unit_of_work(a) as uow:
            await uow.idempotency.complete(
                winner, status_code=201, response_body="{}", completed_at=world.now
            )
            await uow.commit()
        done = await _stored(world, a, "k-4", "user-1")
        assert done is not None and done.state is IdempotencyState.COMPLETED

    async def test_completion_racing_a_take_over_cannot_both_win(self, world: World) -> None:
        a = world.a.id
        stale = world.reservation(a, key="k-5", created_at=world.at(hours=-30))
        await _reserve(world, stale)
        newer = world.reservation(a, key="k-5", request_fingerprint="c" * 64)
        outcomes: list[str] = []

        async def complete() -> None:
            try:
                async with world.gateway.unit_of_work(a) as uow:
                    await uow.idempotency.complete(
                        stale, status_code=201, response_body="{}", completed_at=world.now
                    )
                    await anyio.lowlevel.checkpoint()
                    await uow.commit()
                outcomes.append("completed")
            except Conflict:
                outcomes.append("lost")

        async def take_over() -> None:
            try:
                async with world.gateway.unit_of_work(a) as uow:
                    await uow.idempotency.reserve(newer, stale_before=world.at(hours=-24))
                    await anyio.lowlevel.checkpoint()
                    await uow.commit()
                outcomes.append("took over")
            except Conflict:
                outcomes.append("lost")

        async with anyio.create_task_group() as group:
            group.start_soon(complete)
            group.start_soon(take_over)
        assert sorted(outcomes) in (["completed", "lost"], ["lost", "took over"])
        stored = await _stored(world, a, "k-5", "user-1")
        assert stored is not None
        if "completed" in outcomes:
            assert stored.state is IdempotencyState.COMPLETED
            assert stored.request_fingerprint == stale.request_fingerprint
        else:
            assert_same(stored, newer)

    async def test_reservations_stay_in_their_location(self, world: World) -> None:
        a, b = world.a.id, world.b.id
        in_a = world.reservation(a, key="shared", created_at=world.at(hours=-48))
        await _reserve(world, in_a)
        assert await _stored(world, b, "shared", "user-1") is None
        async with world.gateway.unit_of_work(b) as uow:
            for call in (
                uow.idempotency.reserve(in_a),
                uow.idempotency.complete(
                    in_a, status_code=201, response_body="{}", completed_at=world.now
                ),
                uow.idempotency.release(in_a),
            ):
                with pytest.raises(PermissionDenied):
                    await call
        # The same key and user in another location is another reservation, and
        # a take-over there (however stale the bound) cannot touch location a's.
        in_b = world.reservation(b, key="shared", request_fingerprint="b" * 64)
        await _reserve(world, in_b, stale_before=world.at(days=1))
        async with world.gateway.unit_of_work(b) as uow:
            await uow.idempotency.release(in_b)
            await uow.commit()
        assert_same(await _stored(world, a, "shared", "user-1"), in_a)
        assert await _stored(world, b, "shared", "user-1") is None
        async with world.gateway.unit_of_work() as uow:
            with pytest.raises(PermissionDenied):
                await uow.idempotency.reserve(world.reservation(a))
