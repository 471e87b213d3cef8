"""CRUD round trips, filters, cursor pagination and tenant isolation, per repository."""

from __future__ import annotations

import enum
import math
import typing
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from crm_domain.errors import NotFound, PermissionDenied, ValidationError
from crm_domain.ports import gateway as gateway_port
from crm_domain.ports.gateway import Repository, UnitOfWork
from crm_domain.queries import (
    MAX_LIMIT,
    BookingQuery,
    ContactQuery,
    FilterSpec,
    ListQuery,
    Op,
    matches,
)
from crm_domain.testing._base import MAX_PAGES, GatewayKit, assert_same
from crm_domain.testing._specs import SPECS, TENANT_SPECS, RepoSpec
from crm_domain.testing._world import MINUS_0330, PLUS_1030, World, evolve, repository_of


def _tenant(spec: RepoSpec, world: World) -> str | None:
    return world.a.id if spec.tenant_owned else None


async def _make_saved(spec: RepoSpec, world: World, tenant: str | None = None) -> Any:
    tenant = tenant or world.a.id
    entity = await spec.make(world, tenant)
    await world.save(tenant if spec.tenant_owned else None, entity)
    return entity


async def _all(world: World, spec: RepoSpec, tenant: str | None, query: ListQuery) -> list[Any]:
    """Every matching row, walking the cursor."""
    rows: list[Any] = []
    async with world.gateway.unit_of_work(tenant) as uow:
        repo = repository_of(uow, spec.name)
        for _ in range(MAX_PAGES):
            page = await repo.list(query)
            rows.extend(page.items)
            if page.next_cursor is None:
                return rows
            query = attrs.evolve(query, cursor=page.next_cursor)
    raise AssertionError(f"{spec.name}: the cursor never ends (pages repeat rows?)")


def _ids(rows: list[Any]) -> list[str]:
    return [r.id for r in rows]


def _crud_repositories() -> set[str]:
    """Names of the ``UnitOfWork`` properties whose type is a CRUD ``Repository``."""
    names = set()
    for name, member in vars(UnitOfWork).items():
        if isinstance(member, property) and member.fget is not None:
            returned = typing.get_type_hints(member.fget, vars(gateway_port)).get("return")
            if isinstance(returned, type) and Repository in getattr(returned, "__mro__", ()):
                names.add(name)
    return names


class RepositoryConformance(GatewayKit):
    """Create, get, update and delete round trips for every CRUD repository."""

    def test_the_kit_covers_every_crud_repository_of_the_port(self) -> None:
        ports = _crud_repositories()
        assert len(ports) >= 12
        assert ports == {s.name for s in SPECS}, "crm_domain.testing._specs needs a RepoSpec"

    @pytest.mark.parametrize("spec", SPECS, ids=str)
    async def test_add_then_get_returns_the_same_entity(self, world: World, spec: RepoSpec) -> None:
        entity = await _make_saved(spec, world)
        async with world.gateway.unit_of_work(_tenant(spec, world)) as uow:
            repo = repository_of(uow, spec.name)
            assert_same(await repo.get(entity.id), entity)
            listed = {e.id: e for e in (await repo.list(spec.query(limit=MAX_LIMIT))).items}
            assert entity.id in listed
            assert_same(listed[entity.id], entity)

    async def test_times_are_returned_in_utc_whatever_offset_they_came_with(
        self, world: World
    ) -> None:
        # The library's one timezone rule: an entity normalises every aware
        # datetime to UTC on construction, so what add, get, list and update
        # give back is the same instant in the same form on every gateway.
        plus_11 = timezone(timedelta(hours=11))
        starts = datetime(2026, 7, 1, 9, 30, 15, 123456, tzinfo=plus_11)
        contact = world.contact(world.a.id)
        booking = world.booking(
            world.a.id, contact.id, starts_at=starts, ends_at=starts + timedelta(hours=1)
        )
        assert booking.starts_at.utcoffset() == timedelta(0)
        assert booking.starts_at.isoformat() == "2026-06-30T22:30:15.123456+00:00"
        await world.save(world.a.id, contact, booking)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            got = await uow.bookings.get(booking.id)
            (listed,) = (await uow.bookings.list(BookingQuery())).items
        for returned in (got, listed):
            assert returned.starts_at.isoformat() == "2026-06-30T22:30:15.123456+00:00"
            assert returned.ends_at.isoformat() == "2026-06-30T23:30:15.123456+00:00"
            assert returned.starts_at == starts
        moved = evolve(got, starts_at=starts.astimezone(MINUS_0330), updated_at=starts)
        assert moved.starts_at.utcoffset() == timedelta(0)
        async with world.gateway.unit_of_work(world.a.id) as uow:
            await uow.bookings.update(moved)
            await uow.commit()
        async with world.gateway.unit_of_work(world.a.id) as uow:
            again = await uow.bookings.get(booking.id)
        assert again.starts_at.isoformat() == "2026-06-30T22:30:15.123456+00:00"
        assert again.updated_at.isoformat() == "2026-06-30T22:30:15.123456+00:00"

    @pytest.mark.parametrize("spec", SPECS, ids=str)
    async def test_edge_values_round_trip(self, world: World, spec: RepoSpec) -> None:
        entity = await spec.edge(world, world.a.id)
        await world.save(_tenant(spec, world), entity)
        async with world.gateway.unit_of_work(_tenant(spec, world)) as uow:
            repo = repository_of(uow, spec.name)
            assert_same(await repo.get(entity.id), entity)
            listed = {e.id: e for e in (await repo.list(spec.query(limit=MAX_LIMIT))).items}
            assert_same(listed[entity.id], entity)

    @pytest.mark.parametrize("spec", SPECS, ids=str)
    async def test_update_replaces_the_stored_entity(self, world: World, spec: RepoSpec) -> None:
        entity = await _make_saved(spec, world)
        changed = spec.change(world, entity)
        assert changed != entity
        async with world.gateway.unit_of_work(_tenant(spec, world)) as uow:
            await repository_of(uow, spec.name).update(changed)
            await uow.commit()
        async with world.gateway.unit_of_work(_tenant(spec, world)) as uow:
            assert_same(await repository_of(uow, spec.name).get(entity.id), changed)

    @pytest.mark.parametrize("spec", SPECS, ids=str)
    async def test_delete_removes_the_entity(self, world: World, spec: RepoSpec) -> None:
        entity = await _make_saved(spec, world)
        tenant = _tenant(spec, world)
        async with world.gateway.unit_of_work(tenant) as uow:
            repo = repository_of(uow, spec.name)
            before = await repo.count(spec.query())
            await repo.delete(entity.id)
            await uow.commit()
        async with world.gateway.unit_of_work(tenant) as uow:
            repo = repository_of(uow, spec.name)
            with pytest.raises(NotFound):
                await repo.get(entity.id)
            assert await repo.count(spec.query()) == before - 1
            assert entity.id not in _ids(list((await repo.list(spec.query())).items))
            with pytest.raises(NotFound):
                await repo.delete(entity.id)

    @pytest.mark.parametrize("spec", SPECS, ids=str)
    async def test_unknown_ids_are_not_found(self, world: World, spec: RepoSpec) -> None:
        entity = await spec.make(world, world.a.id)
        async with world.gateway.unit_of_work(_tenant(spec, world)) as uow:
            repo = repository_of(uow, spec.name)
            with pytest.raises(NotFound):
                await repo.get(entity.id)
            with pytest.raises(NotFound):
                await repo.update(entity)
            with pytest.raises(NotFound):
                await repo.delete(entity.id)

    @pytest.mark.parametrize("spec", SPECS, ids=str)
    async def test_a_unit_of_work_reads_its_own_writes(self, world: World, spec: RepoSpec) -> None:
        entity = await spec.make(world, world.a.id)
        async with world.gateway.unit_of_work(_tenant(spec, world)) as uow:
            repo = repository_of(uow, spec.name)
            before = await repo.count(spec.query())
            await repo.add(entity)
            assert_same(await repo.get(entity.id), entity)
            assert await repo.count(spec.query()) == before + 1
            assert entity.id in _ids(list((await repo.list(spec.query(limit=MAX_LIMIT))).items))
            changed = spec.change(world, entity)
            await repo.update(changed)
            assert_same(await repo.get(entity.id), changed)
            await repo.delete(entity.id)
            with pytest.raises(NotFound):
                await repo.get(entity.id)
            assert await repo.count(spec.query()) == before


def _filter_value(spec: FilterSpec, entities: list[Any]) -> Any:
    """A filter value that some but not all of ``entities`` match."""
    column = spec.columns[0]
    values = [getattr(e, column) for e in entities]
    values = [v.value if isinstance(v, enum.Enum) else v for v in values if v not in (None, ())]
    if not values:
        return None
    if spec.op is Op.HAS:
        return values[0][0]
    if spec.op is Op.SEARCH:
        text = str(values[0])
        # ASCII case only: SQL LIKE/ILIKE fold ASCII case everywhere, Unicode case not always.
        return text[1:4].upper()
    if spec.op in (Op.GTE, Op.LT):
        distinct = sorted(set(values))
        value = distinct[len(distinct) // 2]
        # Same instant, other offset: gateways compare instants, not wall times.
        return value.astimezone(PLUS_1030) if isinstance(value, datetime) else value
    return values[0]


def time_filters(query: type[ListQuery]) -> list[tuple[str, FilterSpec]]:
    """``(field name, spec)`` of each filter of ``query`` that bounds a time attribute."""
    found = []
    for field in attrs.fields(query):
        spec = field.metadata.get("filter")
        if spec is not None and spec.op in (Op.GTE, Op.LT) and "datetime" in str(field.type):
            found.append((field.name, FilterSpec(spec.op, spec.columns or (field.name,))))
    return found


async def check_time_filters(
    query: type[ListQuery],
    variants: list[Any],
    listed: Callable[[Any], Awaitable[list[str]]],
) -> list[str]:
    """Problems of ``query``'s time filters over ``variants`` (``listed(query)`` → ids).

    A naive bound must be refused when the query is built, naming the filter,
    so no gateway ever compares one with a stored instant; the same instant in
    UTC, +10:30 and -03:30 must select the same rows, those of :func:`matches`.
    """
    problems: list[str] = []
    for name, fspec in time_filters(query):
        value = _filter_value(fspec, variants)
        if value is None:
            problems.append(f"{name}: the kit's sample data never sets it")
            continue
        try:
            query(**{name: value.replace(tzinfo=None)})
        except ValidationError as exc:
            if exc.field != name:
                problems.append(f"{name}: a naive time is refused naming {exc.field!r}")
        else:
            problems.append(f"{name}: a naive time is accepted (gateways cannot compare it)")
        for offset in (UTC, PLUS_1030, MINUS_0330):
            bounded = query(**{name: value.astimezone(offset)}, limit=MAX_LIMIT)
            expected = sorted((e.id for e in variants if matches(bounded, e)), reverse=True)
            if not 0 < len(expected) < len(variants):
                problems.append(f"{name}: the sample data cannot tell it apart")
                break
            got = await listed(bounded)
            if got != expected:
                problems.append(
                    f"{name}={bounded_value(bounded, name)}: listed {got}, expected {expected}"
                )
    return problems


def bounded_value(query: ListQuery, name: str) -> str:
    """The bound ``name`` of ``query`` as ISO 8601, for messages."""
    value = getattr(query, name)
    return value.isoformat() if isinstance(value, datetime) else repr(value)


class FilterConformance(GatewayKit):
    """Every filter field of every query class, derived from the queries' attrs metadata.

    A filter added to a query class is tested here without touching the kit; if
    the kit's sample data cannot tell it apart the test says so.
    """

    @pytest.mark.parametrize("spec", SPECS, ids=str)
    async def test_every_filter_matches_the_reference_semantics(
        self, world: World, spec: RepoSpec
    ) -> None:
        tenant = _tenant(spec, world)
        variants = await spec.variants(world, world.a.id)
        await world.save_all(tenant, variants)
        if spec.tenant_owned:  # noise in the other location that no filter may return
            await world.save_all(world.b.id, await spec.variants(world, world.b.id))
        pool = await _all(world, spec, tenant, spec.query(limit=MAX_LIMIT))
        problems: list[str] = []
        for field in attrs.fields(spec.query):
            fspec = field.metadata.get("filter")
            if fspec is None:
                continue
            fspec = FilterSpec(fspec.op, fspec.columns or (field.name,))
            value = _filter_value(fspec, variants)
            if value is None:
                problems.append(f"{field.name}: the kit's sample data never sets it")
                continue
            query = spec.query(**{field.name: value}, limit=MAX_LIMIT)
            expected = sorted((e.id for e in pool if matches(query, e)), reverse=True)
            if not 0 < len(expected) < len(pool):
                problems.append(f"{field.name}={value!r}: the sample data cannot tell it apart")
                continue
            got = _ids(await _all(world, spec, tenant, query))
            if got != expected:
                problems.append(f"{field.name}={value!r}: listed {got}, expected {expected}")
            async with world.gateway.unit_of_work(tenant) as uow:
                counted = await repository_of(uow, spec.name).count(query)
            if counted != len(expected):
                problems.append(
                    f"{field.name}={value!r}: count {counted}, expected {len(expected)}"
                )
        assert not problems, f"{spec.name} filters:\n  " + "\n  ".join(problems)

    @pytest.mark.parametrize("spec", [s for s in SPECS if time_filters(s.query)], ids=str)
    async def test_time_filters_take_aware_times_only(self, world: World, spec: RepoSpec) -> None:
        tenant = _tenant(spec, world)
        variants = await spec.variants(world, world.a.id)
        await world.save_all(tenant, variants)
        stored = await _all(world, spec, tenant, spec.query(limit=MAX_LIMIT))

        async def listed(query: ListQuery) -> list[str]:
            return _ids(await _all(world, spec, tenant, query))

        problems = await check_time_filters(spec.query, stored, listed)
        assert not problems, f"{spec.name} time filters:\n  " + "\n  ".join(problems)

    async def test_filters_combine_with_and(self, world: World) -> None:
        tenant = world.a.id
        spec = next(s for s in SPECS if s.name == "contacts")
        variants = await spec.variants(world, tenant)
        await world.save_all(tenant, variants)
        query = ContactQuery(source="meta_ad", tag="mri", warmness_min=50)
        expected = [c.id for c in variants if matches(query, c)]
        assert len(expected) == 1
        async with world.gateway.unit_of_work(tenant) as uow:
            assert _ids(list((await uow.contacts.list(query)).items)) == expected
            assert await uow.contacts.count(query) == 1
            search = ContactQuery(search="ZED")  # last name, other case
            assert [c.first_name for c in (await uow.contacts.list(search)).items] == ["Alice"]
            by_phone = ContactQuery(search="345002")  # part of a phone number
            assert [c.first_name for c in (await uow.contacts.list(by_phone)).items] == ["Bob"]


class PaginationConformance(GatewayKit):
    """Keyset pagination: id descending, stable, no duplicates or gaps."""

    @pytest.mark.parametrize("spec", SPECS, ids=str)
    async def test_pages_cover_every_row_once_while_rows_are_inserted(
        self, world: World, spec: RepoSpec
    ) -> None:
        tenant = _tenant(spec, world)
        for _ in range(6):
            await _make_saved(spec, world)
        everything = await _all(world, spec, tenant, spec.query(limit=MAX_LIMIT))
        expected = _ids(everything)
        assert expected == sorted(expected, reverse=True), "lists must be ordered by id desc"

        seen: list[str] = []
        pages = 0
        query = spec.query(limit=3)
        while True:
            async with world.gateway.unit_of_work(tenant) as uow:
                page = await repository_of(uow, spec.name).list(query)
            pages += 1
            assert pages <= MAX_PAGES, "the cursor never ends (pages repeat rows?)"
            assert page.items, "a page is never empty (no trailing empty page)"
            assert len(page.items) <= 3
            seen.extend(_ids(list(page.items)))
            if page.next_cursor is None:
                break
            # Rows inserted between pages are newer: they never shift later pages.
            await _make_saved(spec, world)
            query = attrs.evolve(query, cursor=page.next_cursor)
        assert seen == expected
        assert pages == math.ceil(len(expected) / 3)

    async def test_cursor_survives_deleting_the_row_it_points_at(self, world: World) -> None:
        tenant = world.a.id
        contacts = [world.contact(tenant) for _ in range(5)]
        await world.save_all(tenant, contacts)
        newest_first = sorted((c.id for c in contacts), reverse=True)
        async with world.gateway.unit_of_work(tenant) as uow:
            first = await uow.contacts.list(ContactQuery(limit=2))
            assert _ids(list(first.items)) == newest_first[:2]
            await uow.contacts.delete(newest_first[1])
            await uow.commit()
        async with world.gateway.unit_of_work(tenant) as uow:
            rest = await uow.contacts.list(ContactQuery(limit=10, cursor=first.next_cursor))
        assert _ids(list(rest.items)) == newest_first[2:]
        assert rest.next_cursor is None

    async def test_pagination_with_a_filter(self, world: World) -> None:
        tenant = world.a.id
        contacts = [
            world.contact(tenant, source="meta_ad" if i % 3 else "website") for i in range(9)
        ]
        await world.save_all(tenant, contacts)
        wanted = sorted((c.id for c in contacts if c.source.value == "meta_ad"), reverse=True)
        spec = next(s for s in SPECS if s.name == "contacts")
        got = _ids(await _all(world, spec, tenant, ContactQuery(source="meta_ad", limit=2)))
        assert got == wanted

    async def test_exactly_full_last_page_has_no_next_cursor(self, world: World) -> None:
        tenant = world.a.id
        await world.save_all(tenant, [world.contact(tenant) for _ in range(4)])
        async with world.gateway.unit_of_work(tenant) as uow:
            first = await uow.contacts.list(ContactQuery(limit=2))
            second = await uow.contacts.list(ContactQuery(limit=2, cursor=first.next_cursor))
            everything = await uow.contacts.list(ContactQuery(limit=4))
        assert first.next_cursor is not None
        assert len(second.items) == 2
        assert second.next_cursor is None
        assert len(everything.items) == 4
        assert everything.next_cursor is None


class TenantIsolationConformance(GatewayKit):
    """Nothing of location A is reachable through a unit of work of location B."""

    @pytest.mark.parametrize("spec", TENANT_SPECS, ids=str)
    async def test_other_location_cannot_get_list_count_update_or_delete(
        self, world: World, spec: RepoSpec
    ) -> None:
        a, b = world.a.id, world.b.id
        entity = await _make_saved(spec, world, a)
        changed = spec.change(world, entity)
        async with world.gateway.unit_of_work(b) as uow:
            repo = repository_of(uow, spec.name)
            with pytest.raises(NotFound):
                await repo.get(entity.id)
            with pytest.raises(NotFound):
                await repo.update(evolve(changed, tenant_id=b))
            with pytest.raises((NotFound, PermissionDenied)):
                await repo.update(changed)
            with pytest.raises(NotFound):
                await repo.delete(entity.id)
            assert (await repo.list(spec.query(limit=MAX_LIMIT))).items == ()
            assert await repo.count(spec.query()) == 0
            await uow.commit()
        async with world.gateway.unit_of_work(a) as uow:
            assert_same(await repository_of(uow, spec.name).get(entity.id), entity)

    @pytest.mark.parametrize("spec", TENANT_SPECS, ids=str)
    async def test_adding_for_another_location_is_denied(
        self, world: World, spec: RepoSpec
    ) -> None:
        entity = await spec.make(world, world.a.id)
        async with world.gateway.unit_of_work(world.b.id) as uow:
            with pytest.raises(PermissionDenied):
                await repository_of(uow, spec.name).add(entity)
            await uow.commit()
        async with world.gateway.unit_of_work(world.a.id) as uow:
            with pytest.raises(NotFound):
                await repository_of(uow, spec.name).get(entity.id)

    @pytest.mark.parametrize("spec", TENANT_SPECS, ids=str)
    async def test_unit_of_work_without_location_is_denied(
        self, world: World, spec: RepoSpec
    ) -> None:
        entity = await _make_saved(spec, world)
        async with world.gateway.unit_of_work() as uow:
            repo = repository_of(uow, spec.name)
            calls: list[tuple[str, Any]] = [
                ("get", entity.id),
                ("list", spec.query()),
                ("count", spec.query()),
                ("update", entity),
                ("delete", entity.id),
                ("add", spec.change(world, evolve(entity, id=world.new_id()))),
            ]
            for method, argument in calls:
                with pytest.raises(PermissionDenied):
                    await getattr(repo, method)(argument)

    async def test_references_cannot_point_into_another_location(self, world: World) -> None:
        a, b = world.a.id, world.b.id
        contact, campaign = world.contact(a), world.campaign(a)
        await world.save(a, contact, campaign)
        local_contact, local_campaign = world.contact(b), world.campaign(b)
        await world.save(b, local_contact, local_campaign)
        attempts = [
            ("contact_id", "touchpoints", world.touchpoint(b, contact.id)),
            ("contact_id", "bookings", world.booking(b, contact.id)),
            ("campaign_id", "deliveries", world.delivery(b, campaign.id, local_contact.id)),
            ("contact_id", "deliveries", world.delivery(b, local_campaign.id, contact.id)),
            ("contact_id", "tasks", world.task(b, contact_id=contact.id)),
            ("contact_id", "sms", world.sms(b, contact_id=contact.id)),
        ]
        for field, name, entity in attempts:
            async with world.gateway.unit_of_work(b) as uow:
                with pytest.raises(ValidationError) as info:
                    await repository_of(uow, name).add(entity)
                assert info.value.field == field, (name, info.value)

    async def test_lookups_by_key_stay_in_their_location(self, world: World) -> None:
        a, b = world.a.id, world.b.id
        contact = world.contact(a)
        booking = world.booking(a, contact.id, external_id="wix-shared")
        rule = world.ip_rule(a)
        record = world.idempotency(a, user_id="u-1")
        await world.save(a, contact, booking, rule, record)
        async with world.gateway.unit_of_work(b) as uow:
            with pytest.raises(NotFound):
                await uow.bookings.get_by_external_id("wix-shared")
            assert list(await uow.ip_rules.active()) == []
            assert await uow.idempotency.get(record.key, "u-1") is None
        async with world.gateway.unit_of_work(a) as uow:
            assert (await uow.bookings.get_by_external_id("wix-shared")).id == booking.id
            assert [r.id for r in await uow.ip_rules.active()] == [rule.id]
            stored = await uow.idempotency.get(record.key, "u-1")
            assert stored is not None
            assert_same(stored, record)
