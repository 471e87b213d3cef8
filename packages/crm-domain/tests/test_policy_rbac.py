"""RBAC: the default matrix, custom permissions, deny by default."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm_domain.clock import FixedClock, UlidFactory
from crm_domain.context import Context
from crm_domain.entities import Action, Effect, PermissionOverride, Resource, Role
from crm_domain.errors import PermissionDenied
from crm_domain.policies import (
    DEFAULT_GRANTS,
    Authorizer,
    StaticGrants,
    default_permissions,
    grants_from_permissions,
    is_allowed,
)

# The docs/contract.md table, transcribed independently of the implementation.
CONTRACT_TABLE = """
contacts     | create read update delete export | read update | create read update | read
bookings     | create read update delete | read update        | create read update | read
tasks        | create read update delete | create read update | create read update | read
sms          | send read                 | read               | send read          | -
campaigns    | create read update send   | -                  | read               | -
reports      | read                      | read               | read               | read
automations  | create read update delete | -                  | -                  | -
suppressions | create read delete        | -                  | create read        | read
locations    | create read update delete | -                  | -                  | -
users        | create read update delete | -                  | -                  | -
ip_rules     | create read update delete | -                  | -                  | -
audit        | read                      | -                  | -                  | -
"""
ROLE_ORDER = (Role.ADMIN, Role.DOCTOR, Role.RECEPTIONIST, Role.READONLY)


def _contract() -> dict[Role, set[tuple[Resource, Action]]]:
    table: dict[Role, set[tuple[Resource, Action]]] = {role: set() for role in ROLE_ORDER}
    for line in CONTRACT_TABLE.strip().splitlines():
        resource, *cells = (cell.strip() for cell in line.split("|"))
        for role, cell in zip(ROLE_ORDER, cells, strict=True):
            if cell != "-":
                table[role] |= {(Resource(resource), Action(a)) for a in cell.split()}
    return table


def test_default_grants_are_the_contract_matrix() -> None:
    contract = _contract()
    assert set(DEFAULT_GRANTS) == set(ROLE_ORDER)
    for role in ROLE_ORDER:
        assert set(DEFAULT_GRANTS[role]) == contract[role], role


@pytest.mark.parametrize("role", ROLE_ORDER)
def test_every_cell_of_the_matrix(role: Role) -> None:
    contract = _contract()
    for resource in Resource:
        for action in Action:
            expected = (resource, action) in contract[role]
            assert is_allowed([role], [], resource, action, DEFAULT_GRANTS) is expected


def test_default_permissions_seed_rows() -> None:
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    rows = default_permissions(clock, UlidFactory())
    assert len(rows) == sum(len(g) for g in DEFAULT_GRANTS.values())
    assert len({r.id for r in rows}) == len(rows)
    assert all(r.conditions.own_location_only for r in rows)
    assert grants_from_permissions(rows) == DEFAULT_GRANTS
    assert "contacts:delete" in {r.key for r in rows if r.role is Role.ADMIN}


def test_unknown_names_are_denied_not_raised() -> None:
    assert not is_allowed(["admin"], [], "contact", "read", DEFAULT_GRANTS)
    assert not is_allowed(["admin"], [], "contacts", "READ", DEFAULT_GRANTS)
    assert not is_allowed(["admin"], [], "", "", DEFAULT_GRANTS)
    assert not is_allowed(["superuser"], [], "contacts", "read", DEFAULT_GRANTS)
    assert not is_allowed([], [], "contacts", "read", DEFAULT_GRANTS)


def test_custom_allow_adds_one_grant() -> None:
    extra = [PermissionOverride(resource="contacts", action="delete", effect=Effect.ALLOW)]
    assert is_allowed(["receptionist"], extra, "contacts", "delete", DEFAULT_GRANTS)
    assert not is_allowed(["receptionist"], extra, "bookings", "delete", DEFAULT_GRANTS)
    assert not is_allowed(["receptionist"], extra, "audit", "read", DEFAULT_GRANTS)


def test_custom_deny_removes_one_grant_and_wins() -> None:
    overrides = [
        PermissionOverride(resource="contacts", action="delete", effect="allow"),
        PermissionOverride(resource="contacts", action="delete", effect="deny"),
    ]
    assert not is_allowed(["admin"], overrides, "contacts", "delete", DEFAULT_GRANTS)
    assert is_allowed(["admin"], overrides, "contacts", "update", DEFAULT_GRANTS)
    assert is_allowed(["admin"], overrides, "bookings", "delete", DEFAULT_GRANTS)


def test_custom_override_with_unknown_names_changes_nothing() -> None:
    overrides = [PermissionOverride(resource="everything", action="read")]
    assert not is_allowed(["readonly"], overrides, "everything", "read", DEFAULT_GRANTS)
    assert not is_allowed(["readonly"], overrides, "contacts", "update", DEFAULT_GRANTS)


def test_another_location_is_always_denied() -> None:
    assert not is_allowed(["admin"], [], "contacts", "read", DEFAULT_GRANTS, own_location=False)
    allow = [PermissionOverride(resource="contacts", action="read")]
    assert not is_allowed(["admin"], allow, "contacts", "read", DEFAULT_GRANTS, own_location=False)


def test_grants_come_from_the_given_mapping() -> None:
    only_reports = {Role.ADMIN: frozenset({(Resource.REPORTS, Action.READ)})}
    assert is_allowed(["admin"], [], "reports", "read", only_reports)
    assert not is_allowed(["admin"], [], "contacts", "read", only_reports)


@pytest.mark.anyio
async def test_authorizer_require_raises_with_a_clear_message() -> None:
    authorizer = Authorizer(StaticGrants())
    ctx = Context.for_roles("loc-1", "user-1", ["readonly"])
    await authorizer.require(ctx, Resource.CONTACTS, Action.READ)
    assert await authorizer.allowed(ctx, "contacts", "read")
    with pytest.raises(PermissionDenied) as caught:
        await authorizer.require(ctx, Resource.CONTACTS, Action.DELETE)
    assert "readonly" in caught.value.detail
    assert "contacts:delete" in caught.value.detail


@pytest.mark.anyio
async def test_authorizer_uses_context_custom_permissions() -> None:
    authorizer = Authorizer(StaticGrants())
    ctx = Context(
        tenant_id="loc-1",
        user_id="user-1",
        roles=[Role.DOCTOR],
        custom_permissions=(PermissionOverride(resource="contacts", action="read", effect="deny"),),
    )
    assert not await authorizer.allowed(ctx, "contacts", "read")
    assert await authorizer.allowed(ctx, "bookings", "read")
