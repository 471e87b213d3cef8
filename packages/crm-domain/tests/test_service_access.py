"""AccessService: locations, staff, IP rules, permissions, and the pipeline's read path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from crm_domain.bootstrap import bootstrap
from crm_domain.clock import FixedClock
from crm_domain.context import Context
from crm_domain.entities import Action, Resource, Role
from crm_domain.errors import Conflict, NotFound, PermissionDenied, ValidationError
from crm_domain.memory import InMemoryGateway
from crm_domain.policies import DEFAULT_GRANTS, Authorizer, GrantSource
from crm_domain.services import AddUser, AllowIp, CreateLocation, NoAccess, UpdateLocation

pytestmark = pytest.mark.anyio


async def test_create_location_starts_its_own_chain(world: Any) -> None:
    chain = await world.audit(world.sydney)
    assert (chain[0].action, chain[0].resource_type, chain[0].resource_id) == (
        "CREATE",
        "location",
        world.sydney.id,
    )
    assert chain[0].sequence == 1
    with pytest.raises(Conflict):
        await world.services.access.create_location(
            world.ctx(), CreateLocation(code="sydney", name="Again", timezone="Australia/Sydney")
        )
    with pytest.raises(ValidationError) as caught:
        await world.services.access.create_location(
            world.ctx(), CreateLocation(code="Perth!", name="Perth", timezone="Australia/Perth")
        )
    assert caught.value.field == "code"
    with pytest.raises(PermissionDenied):
        await world.services.access.create_location(
            world.ctx(Role.RECEPTIONIST),
            CreateLocation(code="perth", name="Perth", timezone="Australia/Perth"),
        )
    # Refusals are audited in the caller's chain.
    assert [e.outcome.value for e in (await world.audit())[-3:]] == ["failed", "failed", "denied"]


async def test_locations_get_list_update(world: Any) -> None:
    access = world.services.access
    assert (await access.get_location(world.ctx())).code == "sydney"
    assert (await access.get_location(world.ctx(), world.melbourne.id)).code == "melbourne"
    page = await access.list_locations(world.ctx())
    assert {loc.code for loc in page.items} == {"sydney", "melbourne"}
    updated = await access.update_location(
        world.ctx(), UpdateLocation(name="Sydney CBD", address="1 George St")
    )
    assert (updated.name, updated.address, updated.id) == (
        "Sydney CBD",
        "1 George St",
        world.sydney.id,
    )
    [event] = await world.events("LocationUpdated")
    assert event.payload["changed"] == ["address", "name"]
    with pytest.raises(ValidationError) as caught:
        await access.update_location(world.ctx(), UpdateLocation(timezone="Mars/Olympus"))
    assert caught.value.field == "timezone"
    with pytest.raises(PermissionDenied):
        await access.list_locations(world.ctx(Role.DOCTOR))


async def test_add_user_creates_once_and_updates_membership(world: Any) -> None:
    access = world.services.access
    first = await access.add_user(
        world.ctx(), AddUser(email="Sam@Example.com", role="receptionist", name="Sam")
    )
    assert first.user.email == "sam@example.com"
    assert first.membership.location_id == world.sydney.id
    elsewhere = await access.add_user(
        world.ctx(location=world.melbourne), AddUser(email="sam@example.com", role="doctor")
    )
    assert elsewhere.user.id == first.user.id
    promoted = await access.add_user(world.ctx(), AddUser(email="sam@example.com", role="admin"))
    assert promoted.membership.id == first.membership.id
    assert promoted.membership.role is Role.ADMIN
    page = await access.list_users(world.ctx())
    assert [(m.user.email, m.membership.role) for m in page.items] == [
        ("sam@example.com", Role.ADMIN)
    ]
    with pytest.raises(ValidationError) as caught:
        await access.add_user(world.ctx(), AddUser(email="sam@example.com", role="janitor"))
    assert caught.value.field == "role"


async def test_resolve_access(world: Any) -> None:
    access = world.services.access
    member = await access.add_user(world.ctx(), AddUser(email="r@example.com", role="receptionist"))
    found = await access.resolve_access(member.user.id, "sydney")
    assert (found.location.id, found.membership.id) == (world.sydney.id, member.membership.id)
    assert found.roles == {Role.RECEPTIONIST}
    membership = found.membership
    by_id = await access.resolve_access(member.user.id, world.sydney.id)
    assert by_id == found
    for user_id, where in (
        (member.user.id, "melbourne"),  # no membership there
        (member.user.id, "atlantis"),  # no such location
        ("nobody", "sydney"),  # no such user
    ):
        with pytest.raises(PermissionDenied):
            await access.resolve_access(user_id, where)
    # A revoked membership stops working at once.
    await access.deactivate_membership(world.ctx(), member.membership.id)
    with pytest.raises(PermissionDenied):
        await access.resolve_access(member.user.id, "sydney")
    # ...and an admin of another location cannot touch it.
    with pytest.raises(NotFound):
        await access.deactivate_membership(world.ctx(location=world.melbourne), membership.id)


async def test_resolve_access_refuses_inactive_user_and_location(world: Any) -> None:
    access = world.services.access
    member = await access.add_user(world.ctx(), AddUser(email="x@example.com", role="doctor"))
    async with world.gateway.unit_of_work(None) as uow:
        await uow.users.update(attrs.evolve(member.user, is_active=False))
        await uow.commit()
    # Written behind the service's back: seen once the cache is dropped (or its TTL passed).
    access.invalidate()
    with pytest.raises(PermissionDenied):
        await access.resolve_access(member.user.id, "sydney")
    async with world.gateway.unit_of_work(None) as uow:
        await uow.users.update(member.user)
        await uow.commit()
    access.invalidate()
    await access.resolve_access(member.user.id, "sydney")
    await access.update_location(world.ctx(), UpdateLocation(is_active=False))
    with pytest.raises(PermissionDenied):
        await access.resolve_access(member.user.id, "sydney")


async def test_ip_rules_and_allowlist(world: Any) -> None:
    access = world.services.access
    assert not (await access.allowlist(world.sydney.id)).allows("127.0.0.1")  # nobody
    rule = await access.allow_ip(world.ctx(), AllowIp(cidr="127.0.0.0/8", description="local"))
    await access.allow_ip(world.ctx(), AllowIp(cidr="2001:db8::/32"))
    allowlist = await access.allowlist(world.sydney.id)
    assert allowlist.allows("127.0.0.1")
    assert allowlist.allows("::ffff:127.0.0.1")
    assert allowlist.allows("2001:db8::5")
    assert not (await access.allowlist(world.melbourne.id)).allows("127.0.0.1")

    with pytest.raises(ValidationError) as caught:
        await access.allow_ip(world.ctx(), AllowIp(cidr="10.0.0.5/24"))
    assert caught.value.field == "cidr"
    assert "10.0.0.0/24" in caught.value.detail
    with pytest.raises(Conflict):
        await access.allow_ip(world.ctx(), AllowIp(cidr="127.0.0.0/8"))

    page = await access.list_ip_rules(world.ctx())
    assert {r.cidr for r in page.items} == {"127.0.0.0/8", "2001:db8::/32"}
    assert rule.created_by == "user-admin"

    await access.remove_ip(world.ctx(), "127.0.0.0/8")
    assert not (await access.allowlist(world.sydney.id)).allows("127.0.0.1")
    with pytest.raises(NotFound):
        await access.remove_ip(world.ctx(), "127.0.0.0/8")
    with pytest.raises(PermissionDenied):
        await access.allow_ip(world.ctx(Role.RECEPTIONIST), AllowIp(cidr="10.0.0.0/8"))
    names = [n for n in await world.event_names() if n.startswith("IpRule")]
    assert names == ["IpRuleAdded", "IpRuleAdded", "IpRuleRemoved"]


async def test_allowlist_cache_expires(world: Any) -> None:
    access = world.services.access
    await access.allow_ip(world.ctx(), AllowIp(cidr="127.0.0.0/8"))
    assert (await access.allowlist(world.sydney.id)).allows("127.0.0.1")
    # A rule removed behind the service's back (another process) is seen after the TTL.
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        [rule] = await uow.ip_rules.active()
        await uow.ip_rules.delete(rule.id)
        await uow.commit()
    assert (await access.allowlist(world.sydney.id)).allows("127.0.0.1")
    world.clock.advance(timedelta(seconds=31))
    assert not (await access.allowlist(world.sydney.id)).allows("127.0.0.1")


async def test_seed_permissions_is_idempotent(world: Any) -> None:
    access = world.services.access
    assert await access.seed_permissions(world.ctx()) == 0
    async with world.gateway.unit_of_work(None) as uow:
        stored = await uow.permissions.all()
    assert len(stored) == sum(len(g) for g in DEFAULT_GRANTS.values())
    with pytest.raises(PermissionDenied):
        await access.seed_permissions(world.ctx(Role.DOCTOR))


async def test_grant_source_reads_the_store_and_caches_for_at_most_60_seconds() -> None:
    from datetime import UTC, datetime

    gateway = InMemoryGateway()
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    source = GrantSource(gateway, clock)
    authorizer = Authorizer(source)
    ctx = Context.for_roles("loc", "u", ["receptionist"])
    # No rows: the default matrix.
    assert await authorizer.allowed(ctx, Resource.CONTACTS, Action.CREATE)
    assert source.using_defaults

    from crm_domain.clock import UlidFactory
    from crm_domain.policies import default_permissions

    rows = [
        p
        for p in default_permissions(clock, UlidFactory())
        if not (p.role is Role.RECEPTIONIST and p.resource is Resource.CONTACTS)
    ]
    async with gateway.unit_of_work(None) as uow:
        for row in rows:
            await uow.permissions.add(row)
        await uow.commit()
    clock.advance(timedelta(seconds=59))
    assert await authorizer.allowed(ctx, Resource.CONTACTS, Action.CREATE)  # still cached
    clock.advance(timedelta(seconds=1))
    assert not await authorizer.allowed(ctx, Resource.CONTACTS, Action.CREATE)
    assert not source.using_defaults
    assert await authorizer.allowed(ctx, Resource.BOOKINGS, Action.CREATE)

    async with gateway.unit_of_work(None) as uow:
        await uow.permissions.remove(Role.RECEPTIONIST, "bookings", "create")
        await uow.commit()
    source.invalidate()
    assert not await authorizer.allowed(ctx, Resource.BOOKINGS, Action.CREATE)
    with pytest.raises(ValueError, match="60 seconds"):
        GrantSource(gateway, clock, ttl=timedelta(seconds=61))


async def test_the_access_cache_keeps_outside_changes_for_its_ttl_only(world: Any) -> None:
    access = world.services.access
    member = await access.add_user(world.ctx(), AddUser(email="t@example.com", role="doctor"))
    await access.allow_ip(world.ctx(), AllowIp(cidr="10.1.0.0/16"))
    assert (await access.resolve_access(member.user.id, "sydney")).roles == {Role.DOCTOR}
    assert (await access.allowlist(world.sydney.id)).allows("10.1.2.3")
    # Another process (another worker, the CLI) ends the membership and the rule.
    async with world.gateway.unit_of_work(None) as uow:
        await uow.memberships.update(attrs.evolve(member.membership, is_active=False))
        await uow.commit()
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        for rule in await uow.ip_rules.active():
            await uow.ip_rules.delete(rule.id)
        await uow.commit()
    world.clock.advance(timedelta(seconds=29))
    await access.resolve_access(member.user.id, "sydney")  # still cached
    assert (await access.allowlist(world.sydney.id)).allows("10.1.2.3")
    world.clock.advance(timedelta(seconds=1))
    with pytest.raises(NoAccess):
        await access.resolve_access(member.user.id, "sydney")
    assert not (await access.allowlist(world.sydney.id)).allows("10.1.2.3")


async def test_the_services_own_writes_take_effect_at_once(world: Any) -> None:
    access = world.services.access
    with pytest.raises(NotFound):
        await access.find_location("hobart")  # a miss, cached
    place = await access.create_location(
        world.ctx(), CreateLocation(code="hobart", name="Hobart", timezone="Australia/Hobart")
    )
    assert (await access.find_location("hobart")).id == place.id
    member = await access.add_user(world.ctx(), AddUser(email="u@example.com", role="doctor"))
    await access.resolve_access(member.user.id, "sydney")
    await access.add_user(world.ctx(), AddUser(email="u@example.com", role="receptionist"))
    assert (await access.resolve_access(member.user.id, "sydney")).roles == {Role.RECEPTIONIST}


def test_the_cache_ttl_is_bounded_by_the_contract() -> None:
    with pytest.raises(ValueError, match="60 seconds"):
        bootstrap(InMemoryGateway(), access_cache_ttl=timedelta(seconds=61))


async def test_on_change_is_awaited_after_every_access_change_and_never_on_reads(
    world: Any,
) -> None:
    access = world.services.access
    told: list[str] = []

    async def tell() -> None:
        told.append("changed")

    access.on_change = tell
    await access.find_location("sydney")
    await access.allowlist(world.sydney.id)
    await access.list_ip_rules(world.ctx())
    assert told == []
    await access.allow_ip(world.ctx(), AllowIp(cidr="192.0.2.0/24"))
    assert told == ["changed"]
    with pytest.raises(PermissionDenied):  # refused: told all the same (the cache was dropped)
        await access.allow_ip(world.ctx(Role.RECEPTIONIST), AllowIp(cidr="198.51.100.0/24"))
    assert told == ["changed"] * 2
    await access.seed_permissions(world.ctx())
    assert told == ["changed"] * 3
