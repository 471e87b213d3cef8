"""Every role × resource × action of docs/contract.md's matrix, over HTTP (deny by default)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import pytest
from crm_domain.entities import (
    Action,
    AutomationRule,
    Booking,
    Contact,
    IpRule,
    Membership,
    Resource,
    Role,
    RuleAction,
    StaffUser,
    Suppression,
    Task,
)
from crm_domain.policies import DEFAULT_GRANTS

from crm_http_litestar.testing import World

#: Where each role works in the demo data.
ROLE_USER = {
    Role.ADMIN: ("owner", "sydney"),
    Role.RECEPTIONIST: ("reception", "sydney"),
    Role.READONLY: ("auditor", "sydney"),
    Role.DOCTOR: ("doctor", "melbourne"),
}

Case = Callable[[World, str, dict[str, str]], Awaitable[httpx.Response]]


async def _contact(w: World, loc: str) -> Contact:
    now = w.clock.now()
    c = Contact(
        id=w.runtime.ids.new_id(),
        tenant_id=w.locations[loc],
        first_name="Matrix",
        email=f"matrix-{w.runtime.ids.new_id().lower()}@example.com",
        created_at=now,
        updated_at=now,
    )
    async with w.gateway.unit_of_work(c.tenant_id) as uow:
        await uow.contacts.add(c)
        await uow.commit()
    return c


async def _booking(w: World, loc: str) -> Booking:
    c = await _contact(w, loc)
    start = w.clock.now() + timedelta(days=200)
    b = Booking(
        id=w.runtime.ids.new_id(),
        tenant_id=c.tenant_id,
        contact_id=c.id,
        service_type="Matrix scan",
        starts_at=start,
        ends_at=start + timedelta(minutes=30),
        created_at=w.clock.now(),
        updated_at=w.clock.now(),
    )
    async with w.gateway.unit_of_work(c.tenant_id) as uow:
        await uow.bookings.add(b)
        await uow.commit()
    return b


async def _task(w: World, loc: str) -> Task:
    t = Task(
        id=w.runtime.ids.new_id(),
        tenant_id=w.locations[loc],
        title="Matrix task",
        created_at=w.clock.now(),
        updated_at=w.clock.now(),
    )
    async with w.gateway.unit_of_work(t.tenant_id) as uow:
        await uow.tasks.add(t)
        await uow.commit()
    return t


async def _membership(w: World, loc: str) -> Membership:
    now = w.clock.now()
    user = StaffUser(
        id=w.runtime.ids.new_id(),
        email=f"temp-{w.runtime.ids.new_id().lower()}@x.example",
        created_at=now,
    )
    m = Membership(
        id=w.runtime.ids.new_id(),
        user_id=user.id,
        location_id=w.locations[loc],
        role=Role.READONLY,
        created_at=now,
    )
    async with w.gateway.unit_of_work(None) as uow:
        await uow.users.add(user)
        await uow.memberships.add(m)
        await uow.commit()
    return m


async def _ip_rule(w: World, loc: str) -> IpRule:
    rule = IpRule(
        id=w.runtime.ids.new_id(),
        tenant_id=w.locations[loc],
        cidr="10.99.0.0/16",
        created_at=w.clock.now(),
        created_by="test",
    )
    async with w.gateway.unit_of_work(rule.tenant_id) as uow:
        await uow.ip_rules.add(rule)
        await uow.commit()
    return rule


async def _automation(w: World, loc: str) -> AutomationRule:
    now = w.clock.now()
    rule = AutomationRule(
        id=w.runtime.ids.new_id(),
        tenant_id=w.locations[loc],
        name="Matrix rule",
        trigger="ContactCreated",
        actions=[RuleAction(kind="add_tag", params={"tag": "matrix"})],
        created_at=now,
        updated_at=now,
    )
    async with w.gateway.unit_of_work(rule.tenant_id) as uow:
        await uow.automations.add(rule)
        await uow.commit()
    return rule


_RULE = {
    "name": "Tag web leads",
    "trigger": "ContactCreated",
    "conditions": [{"field": "source", "op": "eq", "value": "website"}],
    "actions": [{"kind": "add_tag", "params": {"tag": "web"}}],
}


async def automations_create(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.post("/api/automations", headers=h, json=_RULE)


async def automations_read(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.get(f"/api/automations/{(await _automation(w, loc)).id}", headers=h)


async def automations_update(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    rule = await _automation(w, loc)
    return await w.client.patch(f"/api/automations/{rule.id}", headers=h, json={"enabled": False})


async def automations_delete(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.delete(f"/api/automations/{(await _automation(w, loc)).id}", headers=h)


def _fresh_mobile(w: World) -> str:
    """A new valid mobile number: 0412 is an allocated block (some 04xx blocks are not,
    and phonenumbers rightly refuses their numbers)."""
    return f"+61412{int(w.runtime.ids.new_id()[-8:], 36) % 1_000_000:06d}"


async def _suppression(w: World, loc: str) -> Suppression:
    entry = Suppression(
        id=w.runtime.ids.new_id(),
        tenant_id=w.locations[loc],
        channel="sms",
        # A fresh Australian mobile number each time (the list is unique per number).
        address=_fresh_mobile(w),
        reason="manual",
        created_at=w.clock.now(),
        created_by="matrix",
    )
    async with w.gateway.unit_of_work(entry.tenant_id) as uow:
        await uow.suppressions.add(entry)
        await uow.commit()
    return entry


async def suppressions_create(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    number = _fresh_mobile(w)
    return await w.client.post(
        "/api/suppressions", headers=h, json={"channel": "sms", "address": number}
    )


async def suppressions_read(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    await _suppression(w, loc)
    return await w.client.get("/api/suppressions", headers=h)


async def suppressions_delete(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.delete(f"/api/suppressions/{(await _suppression(w, loc)).id}", headers=h)


def _future(w: World, days: int) -> dict[str, str]:
    start = w.clock.now() + timedelta(days=days)
    return {
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(),
    }


async def contacts_create(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    body = {"first_name": "New", "email": f"new-{w.runtime.ids.new_id().lower()}@example.com"}
    return await w.client.post("/api/contacts", headers=h, json=body)


async def contacts_read(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.get(f"/api/contacts/{(await _contact(w, loc)).id}", headers=h)


async def contacts_export(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.get("/api/exports/contacts", headers=h)


async def contacts_update(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    c = await _contact(w, loc)
    return await w.client.patch(f"/api/contacts/{c.id}", headers=h, json={"warmness": 42})


async def contacts_delete(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.delete(f"/api/contacts/{(await _contact(w, loc)).id}", headers=h)


async def bookings_create(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    c = await _contact(w, loc)
    body = {"contact_id": c.id, "service_type": "MRI matrix", **_future(w, 300)}
    return await w.client.post("/api/bookings", headers=h, json=body)


async def bookings_read(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.get(f"/api/bookings/{(await _booking(w, loc)).id}", headers=h)


async def bookings_update(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    b = await _booking(w, loc)
    return await w.client.patch(f"/api/bookings/{b.id}", headers=h, json={"status": "confirmed"})


async def tasks_create(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.post("/api/tasks", headers=h, json={"title": "Call back"})


async def tasks_read(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.get(f"/api/tasks/{(await _task(w, loc)).id}", headers=h)


async def tasks_update(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    t = await _task(w, loc)
    return await w.client.patch(f"/api/tasks/{t.id}", headers=h, json={"priority": "high"})


async def tasks_delete(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.delete(f"/api/tasks/{(await _task(w, loc)).id}", headers=h)


async def locations_create(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    body = {"code": "brisbane", "name": "Brisbane", "timezone": "Australia/Brisbane"}
    return await w.client.post("/api/admin/locations", headers=h, json=body)


async def locations_read(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.get(f"/api/admin/locations/{w.locations[loc]}", headers=h)


async def locations_update(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.patch(
        f"/api/admin/locations/{w.locations[loc]}", headers=h, json={"name": "Renamed"}
    )


async def users_create(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    body = {"email": "new.staff@avatar-imaging.example", "role": "readonly"}
    return await w.client.post("/api/admin/users", headers=h, json=body)


async def users_read(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.get("/api/admin/users", headers=h)


async def users_update(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    m = await _membership(w, loc)
    return await w.client.patch(f"/api/admin/users/{m.id}", headers=h, json={"is_active": False})


async def ip_rules_create(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.post("/api/admin/ip-rules", headers=h, json={"cidr": "10.1.0.0/16"})


async def ip_rules_read(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.get("/api/admin/ip-rules", headers=h)


async def ip_rules_delete(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    await _ip_rule(w, loc)
    return await w.client.delete("/api/admin/ip-rules?cidr=10.99.0.0/16", headers=h)


async def audit_read(w: World, loc: str, h: dict[str, str]) -> httpx.Response:
    return await w.client.get("/api/admin/audit", headers=h)


CASES: dict[tuple[Resource, Action], tuple[Case, int]] = {
    (Resource.CONTACTS, Action.CREATE): (contacts_create, 201),
    (Resource.CONTACTS, Action.READ): (contacts_read, 200),
    (Resource.CONTACTS, Action.UPDATE): (contacts_update, 200),
    (Resource.CONTACTS, Action.DELETE): (contacts_delete, 204),
    (Resource.CONTACTS, Action.EXPORT): (contacts_export, 200),
    (Resource.BOOKINGS, Action.CREATE): (bookings_create, 201),
    (Resource.BOOKINGS, Action.READ): (bookings_read, 200),
    (Resource.BOOKINGS, Action.UPDATE): (bookings_update, 200),
    (Resource.TASKS, Action.CREATE): (tasks_create, 201),
    (Resource.TASKS, Action.READ): (tasks_read, 200),
    (Resource.TASKS, Action.UPDATE): (tasks_update, 200),
    (Resource.TASKS, Action.DELETE): (tasks_delete, 204),
    (Resource.LOCATIONS, Action.CREATE): (locations_create, 201),
    (Resource.LOCATIONS, Action.READ): (locations_read, 200),
    (Resource.LOCATIONS, Action.UPDATE): (locations_update, 200),
    (Resource.USERS, Action.CREATE): (users_create, 201),
    (Resource.USERS, Action.READ): (users_read, 200),
    (Resource.USERS, Action.UPDATE): (users_update, 200),
    (Resource.IP_RULES, Action.CREATE): (ip_rules_create, 201),
    (Resource.IP_RULES, Action.READ): (ip_rules_read, 200),
    (Resource.IP_RULES, Action.DELETE): (ip_rules_delete, 204),
    (Resource.AUDIT, Action.READ): (audit_read, 200),
    (Resource.AUTOMATIONS, Action.CREATE): (automations_create, 201),
    (Resource.AUTOMATIONS, Action.READ): (automations_read, 200),
    (Resource.AUTOMATIONS, Action.UPDATE): (automations_update, 200),
    (Resource.AUTOMATIONS, Action.DELETE): (automations_delete, 204),
    (Resource.SUPPRESSIONS, Action.CREATE): (suppressions_create, 201),
    (Resource.SUPPRESSIONS, Action.READ): (suppressions_read, 200),
    (Resource.SUPPRESSIONS, Action.DELETE): (suppressions_delete, 204),
}


@pytest.mark.anyio
@pytest.mark.parametrize("role", list(ROLE_USER), ids=str)
@pytest.mark.parametrize("grant", list(CASES), ids=lambda g: f"{g[0]}:{g[1]}")
async def test_role_may_exactly_what_the_matrix_grants(
    world: World, role: Role, grant: tuple[Resource, Action]
) -> None:
    who, loc = ROLE_USER[role]
    case, success = CASES[grant]
    headers = await world.headers(who, loc)
    before = len(await world.audit(loc))
    response = await case(world, loc, headers)
    allowed = grant in DEFAULT_GRANTS[role]
    if allowed:
        assert response.status_code == success, response.text
    else:
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    # Exactly one audit entry for the request, in the location's chain.
    entries = (await world.audit(loc))[before:]
    if allowed and grant == (Resource.LOCATIONS, Action.CREATE):
        # A new location's chain starts with its own creation.
        async with world.gateway.unit_of_work(response.json()["id"]) as uow:
            entries = list(await uow.audit.chain(0, 100))
    mine = [e for e in entries if e.request_id == response.headers["x-request-id"]]
    assert len(mine) == 1, entries
    assert mine[0].outcome.value == ("success" if allowed else "denied")


def test_matrix_covers_every_routed_grant() -> None:
    """Grants without an HTTP route are named here, so a new route must join the matrix."""
    every = {(r, a) for grants in DEFAULT_GRANTS.values() for (r, a) in grants}
    unrouted = every - set(CASES)
    assert {r for r, _ in unrouted} <= {
        Resource.SMS,
        Resource.CAMPAIGNS,
        Resource.REPORTS,
        Resource.AUTOMATIONS,
        Resource.BOOKINGS,
        Resource.LOCATIONS,
        Resource.USERS,
        Resource.IP_RULES,
    }
    assert (Resource.BOOKINGS, Action.DELETE) in unrouted  # no delete use case: cancel instead
