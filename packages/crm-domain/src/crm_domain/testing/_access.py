"""Sessions, permissions, webhook receipts, idempotency records and key lookups."""

from __future__ import annotations

import pytest

from crm_domain.entities import PermissionConditions, Role
from crm_domain.errors import Conflict, NotFound, PermissionDenied
from crm_domain.testing._base import GatewayKit, assert_same
from crm_domain.testing._world import MINUS_0330, PLUS_1030, World, evolve, fill


class AccessStoreConformance(GatewayKit):
    """The stores behind sign-in, RBAC, webhooks and idempotent POSTs."""

    async def test_sessions_round_trip_touch_and_revoke(self, world: World) -> None:
        user = world.user()
        session = world.session(
            user.id,
            location_id=world.a.id,
            created_at=world.at(microseconds=1).astimezone(PLUS_1030),
            last_seen_at=world.at(microseconds=2).astimezone(MINUS_0330),
            expires_at=world.at(hours=8, microseconds=3),
        )
        await world.save(None, user, session)
        async with world.gateway.unit_of_work() as uow:
            assert_same(await uow.sessions.get(session.id), session)
            await uow.sessions.touch(session.id, world.at(minutes=5).astimezone(PLUS_1030))
            await uow.commit()
        async with world.gateway.unit_of_work() as uow:
            touched = await uow.sessions.get(session.id)
            assert_same(touched, evolve(session, last_seen_at=world.at(minutes=5)))
            await uow.sessions.revoke(session.id, world.at(minutes=6))
            await uow.commit()
        async with world.gateway.unit_of_work(world.b.id) as uow:
            revoked = await uow.sessions.get(session.id)
            assert revoked.revoked_at == world.at(minutes=6)
            assert revoked.last_seen_at == world.at(minutes=5)
            for call in (
                uow.sessions.get("missing"),
                uow.sessions.touch("missing", world.now),
                uow.sessions.revoke("missing", world.now),
            ):
                with pytest.raises(NotFound):
                    await call
            with pytest.raises(Conflict):
                await uow.sessions.add(session)

    async def test_permissions(self, world: World) -> None:
        doctor_read = world.permission(Role.DOCTOR, "contacts", "read")
        doctor_update = world.permission(Role.DOCTOR, "contacts", "update")
        admin_delete = evolve(
            world.permission(Role.ADMIN, "contacts", "delete"),
            conditions=PermissionConditions(own_location_only=False),
            created_at=world.at(microseconds=5).astimezone(PLUS_1030),
        )
        await world.save(None, doctor_read, doctor_update, admin_delete)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            every = {p.id: p for p in await uow.permissions.all()}
            assert set(every) == {doctor_read.id, doctor_update.id, admin_delete.id}
            assert_same(every[admin_delete.id], admin_delete)
            doctors = await uow.permissions.for_roles([Role.DOCTOR])
            assert {p.id for p in doctors} == {doctor_read.id, doctor_update.id}
            both = await uow.permissions.for_roles([Role.DOCTOR, Role.ADMIN])
            assert len(both) == 3
            assert list(await uow.permissions.for_roles([Role.READONLY])) == []
            with pytest.raises(Conflict):
                await uow.permissions.add(world.permission(Role.DOCTOR, "contacts", "read"))
            await uow.permissions.remove(Role.DOCTOR, "contacts", "update")
            with pytest.raises(NotFound):
                await uow.permissions.remove(Role.DOCTOR, "contacts", "update")
            await uow.commit()
        async with world.gateway.unit_of_work() as uow:
            assert {p.id for p in await uow.permissions.all()} == {doctor_read.id, admin_delete.id}

    async def test_webhook_receipts_reject_replays(self, world: World) -> None:
        receipt = world.receipt(event_id=fill(255, "evt-✓-"), tenant_id=world.a.id)
        async with world.gateway.unit_of_work() as uow:
            assert await uow.webhook_receipts.record(receipt) is True
            assert await uow.webhook_receipts.record(receipt) is False
            await uow.commit()
        async with world.gateway.unit_of_work(world.b.id) as uow:
            replay = evolve(receipt, received_at=world.at(hours=1))
            assert await uow.webhook_receipts.record(replay) is False
            other_source = evolve(receipt, source="manychat")
            assert await uow.webhook_receipts.record(other_source) is True
            await uow.commit()
        async with world.gateway.unit_of_work() as uow:
            assert await uow.webhook_receipts.record(world.receipt()) is True
            await uow.rollback()

    async def test_idempotency_records(self, world: World) -> None:
        a = world.a.id
        record = world.idempotency(
            a,
            key=fill(255, "key-"),
            user_id="user-7",
            status_code=201,
            response_body='{"name": "Zoë 🦄", "rtl": "שלום"}' + " " * 1000,
            created_at=world.at(microseconds=8).astimezone(MINUS_0330),
        )
        await world.save(a, record)
        async with world.gateway.unit_of_work(a) as uow:
            stored = await uow.idempotency.get(record.key, "user-7")
            assert stored is not None
            assert_same(stored, record)
            assert await uow.idempotency.get(record.key, "user-8") is None
            assert await uow.idempotency.get("other-key", "user-7") is None
            with pytest.raises(Conflict):
                await uow.idempotency.reserve(
                    world.reservation(a, key=record.key, user_id="user-7")
                )
            await uow.idempotency.reserve(world.reservation(a, key=record.key, user_id="user-8"))
            with pytest.raises(PermissionDenied):
                await uow.idempotency.reserve(world.reservation(world.b.id))
        async with world.gateway.unit_of_work() as uow:
            with pytest.raises(PermissionDenied):
                await uow.idempotency.get(record.key, "user-7")

    async def test_lookups_by_natural_key(self, world: World) -> None:
        user = world.user()
        other = world.user()
        memberships = [
            world.membership(user.id, world.a.id, role=Role.ADMIN),
            world.membership(user.id, world.b.id, role=Role.DOCTOR, is_active=False),
            world.membership(other.id, world.a.id),
        ]
        await world.save(None, user, other, *memberships)
        contact = world.contact(world.a.id)
        booking = world.booking(world.a.id, contact.id, external_id="wix-Ω-1")
        rules = [
            world.ip_rule(world.a.id, cidr="::1/128"),
            world.ip_rule(world.a.id, cidr="127.0.0.0/8"),
            world.ip_rule(world.a.id, cidr="192.0.2.0/24", is_active=False),
        ]
        await world.save(world.a.id, contact, booking, *rules)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            assert (await uow.users.get_by_email(user.email)).id == user.id
            with pytest.raises(NotFound):
                await uow.users.get_by_email("nobody@kit.example")
            assert (await uow.locations.get_by_code(world.b.code)).id == world.b.id
            with pytest.raises(NotFound):
                await uow.locations.get_by_code("no-such-code")
            mine = await uow.memberships.for_user(user.id)
            assert {m.id for m in mine} == {memberships[0].id, memberships[1].id}
            assert list(await uow.memberships.for_user("nobody")) == []
            assert_same(await uow.bookings.get_by_external_id("wix-Ω-1"), booking)
            with pytest.raises(NotFound):
                await uow.bookings.get_by_external_id("wix-Ω-2")
            assert {r.id for r in await uow.ip_rules.active()} == {rules[0].id, rules[1].id}
