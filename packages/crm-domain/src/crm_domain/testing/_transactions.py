"""Units of work, concurrent writers, unique keys, foreign keys and delete rules."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from crm_domain.audit_chain import verify_chain
from crm_domain.entities import DeliveryStatus, OutboxStatus, Role
from crm_domain.errors import Conflict, NotFound, Reference, ValidationError
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.queries import ContactQuery, TaskQuery, TouchpointQuery
from crm_domain.relations import AUDIT_KIND
from crm_domain.testing._base import GatewayKit
from crm_domain.testing._world import World, evolve


class _Boom(Exception):
    """Raised inside a unit of work to prove it rolls back."""


async def _nothing_landed(world: World, contact_id: str) -> None:
    async with world.gateway.unit_of_work(world.a.id) as uow:
        with pytest.raises(NotFound):
            await uow.contacts.get(contact_id)
        assert list(await uow.audit.chain()) == []
    async with world.gateway.unit_of_work() as uow:
        assert list(await uow.outbox.list_status(OutboxStatus.PENDING)) == []


class UnitOfWorkConformance(GatewayKit):
    """Data, outbox events and audit entries commit together or not at all."""

    async def test_gateway_and_unit_of_work_satisfy_the_ports(
        self, gateway: DatabaseGateway
    ) -> None:
        assert isinstance(gateway, DatabaseGateway)
        uow = gateway.unit_of_work("any-location")
        assert isinstance(uow, UnitOfWork)
        assert uow.tenant_id == "any-location"
        assert gateway.unit_of_work().tenant_id is None

    async def test_an_exception_rolls_back_data_events_and_audit(self, world: World) -> None:
        contact = world.contact(world.a.id)

        async def fail_midway() -> None:
            async with world.gateway.unit_of_work(world.a.id) as uow:
                await uow.contacts.add(contact)
                await uow.outbox.add(world.event(world.a.id, aggregate_id=contact.id))
                await uow.audit.append(world.audit(world.a.id, resource_id=contact.id))
                raise _Boom

        with pytest.raises(_Boom):
            await fail_midway()
        await _nothing_landed(world, contact.id)

    async def test_rollback_discards_everything(self, world: World) -> None:
        contact = world.contact(world.a.id)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            await uow.contacts.add(contact)
            await uow.outbox.add(world.event(world.a.id))
            await uow.audit.append(world.audit(world.a.id))
            await uow.rollback()
        await _nothing_landed(world, contact.id)

    async def test_leaving_without_commit_discards_everything(self, world: World) -> None:
        contact = world.contact(world.a.id)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            await uow.contacts.add(contact)
            await uow.outbox.add(world.event(world.a.id))
            await uow.audit.append(world.audit(world.a.id))
        await _nothing_landed(world, contact.id)

    async def test_commit_makes_data_events_and_audit_visible_together(self, world: World) -> None:
        contact = world.contact(world.a.id)
        event = world.event(world.a.id, aggregate_id=contact.id)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            await uow.contacts.add(contact)
            await uow.outbox.add(event)
            entry = await uow.audit.append(world.audit(world.a.id, resource_id=contact.id))
            await uow.commit()
        async with world.gateway.unit_of_work(world.a.id) as uow:
            assert (await uow.contacts.get(contact.id)).id == contact.id
            assert [e.id for e in await uow.audit.chain()] == [entry.id]
        async with world.gateway.unit_of_work() as uow:
            pending = await uow.outbox.list_status(OutboxStatus.PENDING)
            assert [m.event.id for m in pending] == [event.id]

    async def test_uncommitted_changes_are_invisible_to_other_units_of_work(
        self, world: World
    ) -> None:
        contact = world.contact(world.a.id)
        async with world.gateway.unit_of_work(world.a.id) as writer:
            await writer.contacts.add(contact)
            async with world.gateway.unit_of_work(world.a.id) as reader:
                with pytest.raises(NotFound):
                    await reader.contacts.get(contact.id)
                assert await reader.contacts.count(ContactQuery()) == 0
            await writer.commit()
        async with world.gateway.unit_of_work(world.a.id) as reader:
            assert await reader.contacts.count(ContactQuery()) == 1

    async def test_a_unit_of_work_keeps_working_after_commit(self, world: World) -> None:
        first, second, third = (world.contact(world.a.id) for _ in range(3))
        async with world.gateway.unit_of_work(world.a.id) as uow:
            await uow.contacts.add(first)
            await uow.commit()
            await uow.contacts.add(second)
            await uow.commit()
            await uow.contacts.add(third)  # never committed
        async with world.gateway.unit_of_work(world.a.id) as uow:
            ids = {c.id for c in (await uow.contacts.list(ContactQuery())).items}
        assert ids == {first.id, second.id}

    async def test_a_refused_write_leaves_the_unit_of_work_usable(self, world: World) -> None:
        existing = world.contact(world.a.id)
        await world.save(world.a.id, existing)
        fresh = world.contact(world.a.id)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            with pytest.raises(Conflict):
                await uow.contacts.add(existing)
            with pytest.raises(ValidationError):
                await uow.touchpoints.add(world.touchpoint(world.a.id, "no-such-contact"))
            await uow.contacts.add(fresh)
            await uow.commit()
        async with world.gateway.unit_of_work(world.a.id) as uow:
            assert (await uow.contacts.get(fresh.id)).id == fresh.id

    async def test_add_many_is_all_or_nothing(self, world: World) -> None:
        tenant = world.a.id
        existing = world.contact(tenant)
        await world.save(tenant, existing)
        batch = [world.contact(tenant) for _ in range(3)]
        async with world.gateway.unit_of_work(tenant) as uow:
            with pytest.raises(Conflict):
                await uow.contacts.add_many([*batch, existing])
            assert await uow.contacts.count(ContactQuery()) == 1
            await uow.commit()
        bulk = [world.contact(tenant, first_name=f"Bulk {i}") for i in range(150)]
        async with world.gateway.unit_of_work(tenant) as uow:
            await uow.contacts.add_many(bulk)
            await uow.commit()
        async with world.gateway.unit_of_work(tenant) as uow:
            assert await uow.contacts.count(ContactQuery()) == 151


class ConcurrencyConformance(GatewayKit):
    """Concurrent units of work neither lose writes nor break the audit chain."""

    async def test_concurrent_writers_all_land_and_the_chain_holds(self, world: World) -> None:
        tenant = world.a.id
        writers = 20

        async def writer(n: int) -> None:
            async with world.gateway.unit_of_work(tenant) as uow:
                await uow.contacts.add(world.contact(tenant, first_name=f"Writer {n}"))
                await anyio.lowlevel.checkpoint()  # let the others interleave
                await uow.contacts.add(world.contact(tenant, first_name=f"Writer {n}b"))
                await uow.audit.append(world.audit(tenant, detail=f"writer {n}"))
                await uow.outbox.add(world.event(tenant))
                await anyio.lowlevel.checkpoint()
                await uow.commit()

        async with anyio.create_task_group() as group:
            for n in range(writers):
                group.start_soon(writer, n)

        async with world.gateway.unit_of_work(tenant) as uow:
            assert await uow.contacts.count(ContactQuery()) == 2 * writers
            chain = list(await uow.audit.chain())
        assert [e.sequence for e in chain] == list(range(1, writers + 1))
        assert verify_chain(chain, tenant) is None
        async with world.gateway.unit_of_work() as uow:
            assert len(await uow.outbox.list_status(OutboxStatus.PENDING)) == writers

    async def test_concurrent_writers_in_two_locations(self, world: World) -> None:
        async def writer(tenant: str) -> None:
            async with world.gateway.unit_of_work(tenant) as uow:
                await uow.contacts.add(world.contact(tenant))
                await uow.audit.append(world.audit(tenant))
                await anyio.lowlevel.checkpoint()
                await uow.commit()

        async with anyio.create_task_group() as group:
            for n in range(10):
                group.start_soon(writer, world.a.id if n % 2 else world.b.id)
        for tenant in (world.a.id, world.b.id):
            async with world.gateway.unit_of_work(tenant) as uow:
                assert await uow.contacts.count(ContactQuery()) == 5
                chain = list(await uow.audit.chain())
            assert [e.sequence for e in chain] == [1, 2, 3, 4, 5]
            assert verify_chain(chain, tenant) is None

    async def test_a_delivery_is_claimed_by_one_of_two_racing_workers(self, world: World) -> None:
        # Two sending workers read the same pending delivery and both try to claim it:
        # at most one claim may land (the other sees False, or Conflict at commit).
        tenant = world.a.id
        contact = world.contact(tenant)
        campaign = world.campaign(tenant)
        delivery = world.delivery(tenant, campaign.id, contact.id)
        await world.save(tenant, contact, campaign, delivery)
        both_read = anyio.Event()
        readers: list[int] = []
        landed: list[int] = []

        async def worker(n: int) -> None:
            try:
                async with world.gateway.unit_of_work(tenant) as uow:
                    seen = await uow.deliveries.get(delivery.id)
                    readers.append(n)
                    if len(readers) == 2:
                        both_read.set()
                    await both_read.wait()  # both have seen it pending before either claims
                    assert seen.status is DeliveryStatus.PENDING
                    claimed = evolve(seen, status=DeliveryStatus.SENDING, error=f"worker {n}")
                    if await uow.deliveries.replace_if_unchanged(seen, claimed):
                        await uow.commit()
                        landed.append(n)
            except Conflict:
                pass

        async with anyio.create_task_group() as group:
            for n in range(2):
                group.start_soon(worker, n)
        assert len(landed) == 1, landed
        async with world.gateway.unit_of_work(tenant) as uow:
            stored = await uow.deliveries.get(delivery.id)
        assert stored.status is DeliveryStatus.SENDING
        assert stored.error == f"worker {landed[0]}"
        async with world.gateway.unit_of_work(tenant) as uow:
            # A claim against a row that has changed since it was read does nothing.
            assert not await uow.deliveries.replace_if_unchanged(
                delivery, evolve(delivery, status=DeliveryStatus.SENT)
            )

    async def test_a_contact_changed_since_it_was_read_is_not_overwritten(
        self, world: World
    ) -> None:
        # A rescoring worker read the contact; a STOP withdrew consent before it wrote.
        tenant = world.a.id
        contact = evolve(
            world.contact(tenant),
            sms_opt_in=True,
            tags=("mri", "referral"),
            warmness=40,
            warmness_reasons=("new lead", "reachable with consent"),
        )
        await world.save(tenant, contact)
        async with world.gateway.unit_of_work(tenant) as uow:
            seen = await uow.contacts.get(contact.id)
        async with world.gateway.unit_of_work(tenant) as uow:
            await uow.contacts.update(evolve(seen, sms_opt_in=False))
            await uow.commit()
        async with world.gateway.unit_of_work(tenant) as uow:
            scored = evolve(seen, warmness=80, warmness_reasons=("booked",))
            assert not await uow.contacts.replace_if_unchanged(seen, scored)
            await uow.commit()
        async with world.gateway.unit_of_work(tenant) as uow:
            fresh = await uow.contacts.get(contact.id)
            assert (fresh.sms_opt_in, fresh.warmness) == (False, 40)
            # Against what is stored now, the same change lands.
            assert await uow.contacts.replace_if_unchanged(fresh, evolve(fresh, warmness=80))
            await uow.commit()
        async with world.gateway.unit_of_work(tenant) as uow:
            stored = await uow.contacts.get(contact.id)
        assert (stored.sms_opt_in, stored.warmness, stored.tags) == (False, 80, ("mri", "referral"))


class ConstraintConformance(GatewayKit):
    """Unique keys raise ``Conflict``; dangling references raise ``ValidationError``."""

    async def test_duplicate_ids_conflict(self, world: World) -> None:
        contact = world.contact(world.a.id)
        await world.save(world.a.id, contact)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            with pytest.raises(Conflict):
                await uow.contacts.add(evolve(contact, email="other@kit.example"))

    async def test_global_unique_keys(self, world: World) -> None:
        user = world.user()
        await world.save(None, user, world.membership(user.id, world.a.id))
        await world.save(None, world.permission(Role.DOCTOR, "contacts", "read"))
        cases = [
            ("locations", world.location(code=world.a.code)),
            ("users", world.user(email=user.email)),
            ("memberships", world.membership(user.id, world.a.id, role=Role.ADMIN)),
            ("permissions", world.permission(Role.DOCTOR, "contacts", "read")),
        ]
        for name, entity in cases:
            async with world.gateway.unit_of_work() as uow:
                with pytest.raises(Conflict):
                    await getattr(uow, name).add(entity)

    async def test_updating_into_a_taken_unique_key_conflicts(self, world: World) -> None:
        async with world.gateway.unit_of_work() as uow:
            with pytest.raises(Conflict):
                await uow.locations.update(evolve(world.b, code=world.a.code))

    async def test_tenant_unique_keys(self, world: World) -> None:
        a, b = world.a.id, world.b.id
        contact, campaign = world.contact(a), world.campaign(a)
        rule = world.ip_rule(a, cidr="203.0.113.0/24")
        booking = world.booking(a, contact.id, external_id="wix-42")
        delivery = world.delivery(a, campaign.id, contact.id)
        await world.save(a, contact, campaign, rule, booking, delivery)
        cases = [
            ("ip_rules", world.ip_rule(a, cidr="203.0.113.0/24")),
            ("bookings", world.booking(a, contact.id, external_id="wix-42")),
            ("deliveries", world.delivery(a, campaign.id, contact.id)),
        ]
        for name, entity in cases:
            async with world.gateway.unit_of_work(a) as uow:
                with pytest.raises(Conflict):
                    await getattr(uow, name).add(entity)
        # The same keys are free in another location; no external id is not a key;
        # two contacts may share an email.
        other = world.contact(b)
        await world.save(
            b,
            other,
            world.ip_rule(b, cidr="203.0.113.0/24"),
            world.booking(b, other.id, external_id="wix-42"),
        )
        await world.save(
            a,
            world.booking(a, contact.id),
            world.booking(a, contact.id),
            world.contact(a, email=contact.email),
        )
        async with world.gateway.unit_of_work(a) as uow:
            assert await uow.contacts.count(ContactQuery(email=contact.email)) == 2

    async def test_missing_references_name_the_field(self, world: World) -> None:
        a = world.a.id
        contact, campaign, user = world.contact(a), world.campaign(a), world.user()
        await world.save(None, user)
        await world.save(a, contact, campaign)
        tenant_cases = [
            ("contact_id", "touchpoints", world.touchpoint(a, "missing")),
            ("campaign_id", "touchpoints", world.touchpoint(a, contact.id, campaign_id="missing")),
            ("contact_id", "bookings", world.booking(a, "missing")),
            ("campaign_id", "deliveries", world.delivery(a, "missing", contact.id)),
            ("contact_id", "deliveries", world.delivery(a, campaign.id, "missing")),
            ("assignee_id", "tasks", world.task(a, assignee_id="missing")),
            ("booking_id", "tasks", world.task(a, booking_id="missing")),
            ("contact_id", "sms", world.sms(a, contact_id="missing")),
        ]
        for field, name, entity in tenant_cases:
            async with world.gateway.unit_of_work(a) as uow:
                with pytest.raises(ValidationError) as info:
                    await getattr(uow, name).add(entity)
                assert info.value.field == field, (name, info.value)
        global_cases = [
            ("user_id", "memberships", world.membership("missing", world.a.id)),
            ("location_id", "memberships", world.membership(user.id, "missing")),
            ("user_id", "sessions", world.session("missing")),
        ]
        for field, name, entity in global_cases:
            async with world.gateway.unit_of_work() as uow:
                with pytest.raises(ValidationError) as info:
                    await getattr(uow, name).add(entity)
                assert info.value.field == field, (name, info.value)
        async with world.gateway.unit_of_work("no-such-location") as uow:
            with pytest.raises(ValidationError) as info:
                await uow.contacts.add(world.contact("no-such-location"))
            assert info.value.field == "tenant_id"


class DeleteRulesConformance(GatewayKit):
    """What deleting a referenced row does (see ``crm_domain.relations``)."""

    async def test_deleting_a_contact_cascades_and_clears_references(self, world: World) -> None:
        a = world.a.id
        contact, campaign = world.contact(a), world.campaign(a)
        touchpoint = world.touchpoint(a, contact.id)
        sms = world.sms(a, contact_id=contact.id)
        delivery = world.delivery(a, campaign.id, contact.id)
        task = world.task(a, contact_id=contact.id)
        await world.save(a, contact, campaign, touchpoint, sms, delivery, task)
        async with world.gateway.unit_of_work(a) as uow:
            await uow.contacts.delete(contact.id)
            await uow.commit()
        async with world.gateway.unit_of_work(a) as uow:
            for name, entity_id in (
                ("touchpoints", touchpoint.id),
                ("sms", sms.id),
                ("deliveries", delivery.id),
            ):
                with pytest.raises(NotFound):
                    await getattr(uow, name).get(entity_id)
            assert (await uow.tasks.get(task.id)).contact_id is None
            assert (await uow.campaigns.get(campaign.id)).id == campaign.id

    async def test_a_contact_with_bookings_cannot_be_deleted(self, world: World) -> None:
        a = world.a.id
        contact = world.contact(a)
        touchpoint = world.touchpoint(a, contact.id)
        booking = world.booking(a, contact.id)
        await world.save(a, contact, touchpoint, booking)
        async with world.gateway.unit_of_work(a) as uow:
            with pytest.raises(Conflict):
                await uow.contacts.delete(contact.id)
            # The refused delete took nothing with it, and the unit of work goes on.
            assert (await uow.touchpoints.get(touchpoint.id)).contact_id == contact.id
            await uow.bookings.delete(booking.id)
            await uow.contacts.delete(contact.id)
            await uow.commit()
        async with world.gateway.unit_of_work(a) as uow:
            assert await uow.touchpoints.count(TouchpointQuery()) == 0

    async def test_a_refused_delete_names_what_still_refers_and_how_many(
        self, world: World
    ) -> None:
        a = world.a.id
        contact = world.contact(a)
        bookings = [world.booking(a, contact.id) for _ in range(2)]
        await world.save(a, contact, world.task(a, contact_id=contact.id), *bookings)
        async with world.gateway.unit_of_work(a) as uow:
            # One more in this unit of work: the count sees its own writes.
            await uow.bookings.add(world.booking(a, contact.id))
            with pytest.raises(Conflict) as refused:
                await uow.contacts.delete(contact.id)
        assert refused.value.references == (Reference("booking", 3),)
        assert refused.value.detail == (
            f"contact {contact.id!r} is still referenced by 3 bookings; delete or move those first"
        )

    async def test_a_refused_location_delete_counts_every_kind(self, world: World) -> None:
        place = world.location()
        await world.save(None, place)
        user = world.user()
        await world.save(None, user, world.membership(user.id, place.id))
        await world.save(place.id, world.contact(place.id), world.contact(place.id))
        await world.save(place.id, world.ip_rule(place.id), world.audit(place.id))
        async with world.gateway.unit_of_work() as uow:
            with pytest.raises(Conflict) as refused:
                await uow.locations.delete(place.id)
        assert refused.value.references == (
            Reference("membership", 1),
            Reference("ip_rule", 1),
            Reference("contact", 2),
            Reference(AUDIT_KIND, 1),
        )
        assert refused.value.detail == (
            f"location {place.id!r} is still referenced by 1 membership, 1 IP rule, "
            "2 contacts and 1 audit entry; audit entries are kept for good"
        )

    async def test_deleting_a_campaign_or_booking(self, world: World) -> None:
        a = world.a.id
        contact, campaign = world.contact(a), world.campaign(a)
        booking = world.booking(a, contact.id)
        touchpoint = world.touchpoint(a, contact.id, campaign_id=campaign.id)
        delivery = world.delivery(a, campaign.id, contact.id)
        task = world.task(a, booking_id=booking.id)
        sms = world.sms(a, booking_id=booking.id)
        await world.save(a, contact, campaign, booking, touchpoint, delivery, task, sms)
        async with world.gateway.unit_of_work(a) as uow:
            await uow.campaigns.delete(campaign.id)
            await uow.bookings.delete(booking.id)
            await uow.commit()
        async with world.gateway.unit_of_work(a) as uow:
            with pytest.raises(NotFound):
                await uow.deliveries.get(delivery.id)
            assert (await uow.touchpoints.get(touchpoint.id)).campaign_id is None
            assert (await uow.tasks.get(task.id)).booking_id is None
            assert (await uow.sms.get(sms.id)).booking_id is None

    async def test_deleting_a_user_removes_memberships_and_sessions(self, world: World) -> None:
        user = world.user()
        membership = world.membership(user.id, world.a.id)
        session = world.session(user.id)
        await world.save(None, user, membership, session)
        task = world.task(world.a.id, assignee_id=user.id)
        await world.save(world.a.id, task)
        async with world.gateway.unit_of_work() as uow:
            await uow.users.delete(user.id)
            await uow.commit()
        async with world.gateway.unit_of_work(world.a.id) as uow:
            with pytest.raises(NotFound):
                await uow.memberships.get(membership.id)
            with pytest.raises(NotFound):
                await uow.sessions.get(session.id)
            assert (await uow.tasks.get(task.id)).assignee_id is None
            assert await uow.tasks.count(TaskQuery()) == 1

    async def test_a_location_that_owns_data_cannot_be_deleted(self, world: World) -> None:
        await world.save(world.a.id, world.contact(world.a.id))
        empty = world.location()
        await world.save(None, empty)
        async with world.gateway.unit_of_work() as uow:
            with pytest.raises(Conflict):
                await uow.locations.delete(world.a.id)
            await uow.locations.delete(empty.id)
            await uow.commit()
        async with world.gateway.unit_of_work() as uow:
            with pytest.raises(NotFound):
                await uow.locations.get(empty.id)
            assert (await uow.locations.get(world.a.id)).id == world.a.id
