"""The suppression list: one address per location and channel, invisible elsewhere."""

from __future__ import annotations

import pytest

from crm_domain.errors import Conflict, NotFound, PermissionDenied
from crm_domain.queries import SuppressionQuery
from crm_domain.testing._base import GatewayKit
from crm_domain.testing._world import World


class SuppressionConformance(GatewayKit):
    """``suppressions``: the (location, channel, address) key, ``find_address``, isolation."""

    async def test_an_address_is_suppressed_once_per_location_and_channel(
        self, world: World
    ) -> None:
        a, b = world.a.id, world.b.id
        first = world.suppression(a, address="+61412345678")
        await world.save(a, first)
        async with world.gateway.unit_of_work(a) as uow:
            with pytest.raises(Conflict):
                await uow.suppressions.add(
                    world.suppression(a, address="+61412345678", reason="manual")
                )
        # The refused add left nothing behind; the same key is free on the other
        # channel's namespace and in another location.
        await world.save(b, world.suppression(b, address="+61412345678"))
        await world.save(
            a, world.suppression(a, channel="email", address="ann@kit.example", reason="bounce")
        )
        async with world.gateway.unit_of_work(a) as uow:
            assert await uow.suppressions.count(SuppressionQuery(address="+61412345678")) == 1
            assert await uow.suppressions.count(SuppressionQuery()) == 2
        async with world.gateway.unit_of_work(b) as uow:
            assert await uow.suppressions.count(SuppressionQuery()) == 1

    async def test_find_address_sees_only_its_location_and_channel(self, world: World) -> None:
        a, b = world.a.id, world.b.id
        mine = world.suppression(a, address="+61412345679")
        theirs = world.suppression(b, channel="email", address="bob@kit.example", reason="bounce")
        await world.save(a, mine)
        await world.save(b, theirs)
        async with world.gateway.unit_of_work(a) as uow:
            found = await uow.suppressions.find_address("sms", "+61412345679")
            assert found is not None and found.id == mine.id
            assert await uow.suppressions.find_address("email", "+61412345679") is None
            # Another location's suppression is invisible, by id and by address.
            assert await uow.suppressions.find_address("email", "bob@kit.example") is None
            with pytest.raises(NotFound):
                await uow.suppressions.get(theirs.id)
            with pytest.raises(NotFound):
                await uow.suppressions.delete(theirs.id)
        async with world.gateway.unit_of_work(b) as uow:
            found = await uow.suppressions.find_address("email", "bob@kit.example")
            assert found is not None and found.id == theirs.id

    async def test_unknown_and_deleted_suppressions_are_not_found(self, world: World) -> None:
        a = world.a.id
        entry = world.suppression(a)
        await world.save(a, entry)
        async with world.gateway.unit_of_work(a) as uow:
            with pytest.raises(NotFound):
                await uow.suppressions.get("no-such-suppression")
            await uow.suppressions.delete(entry.id)
            await uow.commit()
        async with world.gateway.unit_of_work(a) as uow:
            assert await uow.suppressions.find_address("sms", entry.address) is None
            with pytest.raises(NotFound):
                await uow.suppressions.delete(entry.id)
        # Deleted, the address may be suppressed again (the key is free).
        await world.save(a, world.suppression(a, address=entry.address))

    async def test_a_unit_of_work_without_location_cannot_see_the_list(self, world: World) -> None:
        async with world.gateway.unit_of_work() as uow:
            with pytest.raises(PermissionDenied):
                await uow.suppressions.find_address("sms", "+61412345678")
