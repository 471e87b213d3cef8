"""The conformance kit, unchanged, against the ObjectStore example; plus the store's own rules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest
from crm_domain.errors import Conflict
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.queries import ContactQuery
from crm_domain.testing import GatewayConformance, World
from objectstore import InMemoryObjectStore, VersionMismatch
from objectstore_gateway import ObjectStoreGateway, create_gateway


class TestObjectStoreGateway(GatewayConformance):
    """Every conformance test on a fresh in-memory object store."""

    @pytest.fixture
    async def gateway(self) -> AsyncIterator[ObjectStoreGateway]:
        gateway = create_gateway("objectstore://")
        await gateway.migrate()
        yield gateway
        await gateway.close()


@pytest.mark.anyio
async def test_put_many_is_all_or_nothing_under_its_preconditions() -> None:
    store = InMemoryObjectStore()
    version = await store.put("a", b"1")
    with pytest.raises(VersionMismatch) as caught:
        await store.put_many({"a": b"2", "b": b"new"}, {"a": version + 1, "b": None})
    assert caught.value.keys == ["a"]
    assert await store.get("a") == (b"1", version)
    assert await store.get("b") is None
    await store.put_many({"a": None, "b": b"new"}, {"a": version, "b": None})
    assert await store.list("") == ["b"]


@pytest.mark.anyio
async def test_a_unit_of_work_that_raced_another_conflicts_and_writes_nothing() -> None:
    gateway = ObjectStoreGateway()
    world = await World(gateway).setup()
    tenant = world.a.id
    contact = world.contact(tenant)
    await world.save(tenant, contact)
    async with gateway.unit_of_work(tenant) as first, gateway.unit_of_work(tenant) as second:
        await first.contacts.update(attrs.evolve(contact, first_name="First"))
        extra = world.contact(tenant)
        await second.contacts.add(extra)
        await second.contacts.update(attrs.evolve(contact, first_name="Second"))
        await first.commit()
        with pytest.raises(Conflict, match="concurrent"):
            await second.commit()
    async with gateway.unit_of_work(tenant) as uow:
        assert (await uow.contacts.get(contact.id)).first_name == "First"
        assert await uow.contacts.count(ContactQuery()) == 1


def test_it_satisfies_the_ports() -> None:
    gateway = ObjectStoreGateway()
    assert isinstance(gateway, DatabaseGateway)
    assert isinstance(gateway.unit_of_work(), UnitOfWork)
