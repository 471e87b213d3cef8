"""Role-based access control: the default matrix, the pure decision and the authorizer.

The decision (:func:`is_allowed`) is a pure function of the caller's roles, the
membership's custom permissions and the role grants, so it can be tested
exhaustively; :class:`Authorizer` feeds it the grants stored in the database
(through :class:`GrantSource`) and turns a refusal into ``PermissionDenied``.

Deny by default: a (resource, action) pair is allowed only when a grant says
so, and any resource or action this policy does not know is denied — never an
exception, so a typo in a route's declared permission fails closed.

``own_location_only``: every grant applies only to the data of the location the
caller's :class:`~crm_domain.context.Context` is bound to.  A Context is always
one location (the HTTP layer resolves it from the token and checks the user's
membership there), and every service runs its work in a unit of work bound to
``ctx.tenant_id`` whose tenant-owned repositories cannot reach another
location's rows.  So the condition is enforced structurally by the tenant-bound
unit of work; :func:`is_allowed` additionally refuses any request about another
location (``own_location=False``) whatever the grants say — a user works at a
second location only through a membership there.  The store may record a grant
with ``own_location_only=False``; this policy does not widen access for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Protocol

import anyio

from crm_domain.context import Context
from crm_domain.entities import Action, Effect, Permission, PermissionOverride, Resource, Role
from crm_domain.errors import PermissionDenied
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway

#: A grant: an action on a resource.
Grant = tuple[Resource, Action]
#: Role grants as the policy reads them.
RoleGrants = Mapping[Role, frozenset[Grant]]

_C, _R, _U, _D, _S = Action.CREATE, Action.READ, Action.UPDATE, Action.DELETE, Action.SEND
_E = Action.EXPORT


def _grants(spec: Mapping[Resource, Iterable[Action]]) -> frozenset[Grant]:
    return frozenset((resource, action) for resource, actions in spec.items() for action in actions)


#: The default permission matrix of docs/contract.md ("Default permissions").
DEFAULT_GRANTS: RoleGrants = MappingProxyType(
    {
        Role.ADMIN: _grants(
            {
                Resource.CONTACTS: (_C, _R, _U, _D, _E),
                Resource.BOOKINGS: (_C, _R, _U, _D),
                Resource.TASKS: (_C, _R, _U, _D),
                Resource.SMS: (_S, _R),
                Resource.CAMPAIGNS: (_C, _R, _U, _S),
                Resource.REPORTS: (_R,),
                Resource.AUTOMATIONS: (_C, _R, _U, _D),
                Resource.SUPPRESSIONS: (_C, _R, _D),
                Resource.LOCATIONS: (_C, _R, _U, _D),
                Resource.USERS: (_C, _R, _U, _D),
                Resource.IP_RULES: (_C, _R, _U, _D),
                Resource.AUDIT: (_R,),
            }
        ),
        Role.DOCTOR: _grants(
            {
                Resource.CONTACTS: (_R, _U),
                Resource.BOOKINGS: (_R, _U),
                Resource.TASKS: (_C, _R, _U),
                Resource.SMS: (_R,),
                Resource.REPORTS: (_R,),
            }
        ),
        Role.RECEPTIONIST: _grants(
            {
                Resource.CONTACTS: (_C, _R, _U),
                Resource.BOOKINGS: (_C, _R, _U),
                Resource.TASKS: (_C, _R, _U),
                Resource.SMS: (_S, _R),
                Resource.CAMPAIGNS: (_R,),
                Resource.REPORTS: (_R,),
                # Reception takes "don't text me" at the desk; removing one is an admin's call.
                Resource.SUPPRESSIONS: (_C, _R),
            }
        ),
        Role.READONLY: _grants(
            {
                Resource.CONTACTS: (_R,),
                Resource.BOOKINGS: (_R,),
                Resource.TASKS: (_R,),
                Resource.REPORTS: (_R,),
                Resource.SUPPRESSIONS: (_R,),
            }
        ),
    }
)


def default_permissions(clock: Clock, ids: IdFactory) -> list[Permission]:
    """The default matrix as :class:`Permission` rows, ready to seed a store.

    Sorted by role, resource and action so seeding is reproducible.
    """
    now = clock.now()
    return [
        Permission(id=ids.new_id(), role=role, resource=resource, action=action, created_at=now)
        for role in sorted(DEFAULT_GRANTS)
        for resource, action in sorted(DEFAULT_GRANTS[role])
    ]


def grants_from_permissions(permissions: Iterable[Permission]) -> RoleGrants:
    """Group stored :class:`Permission` rows into role grants."""
    collected: dict[Role, set[Grant]] = {}
    for permission in permissions:
        collected.setdefault(permission.role, set()).add((permission.resource, permission.action))
    return MappingProxyType({role: frozenset(grants) for role, grants in collected.items()})


def _parse(resource: str, action: str) -> Grant | None:
    try:
        return Resource(resource), Action(action)
    except ValueError:
        return None


def is_allowed(
    roles: Iterable[Role | str],
    custom_permissions: Iterable[PermissionOverride],
    resource: Resource | str,
    action: Action | str,
    grants: RoleGrants,
    *,
    own_location: bool = True,
) -> bool:
    """Decide whether a member may do ``action`` on ``resource``.

    * Allowed when any of ``roles`` has the grant in ``grants``, or a custom
      permission of the membership allows exactly this (resource, action).
    * A custom permission denying exactly this (resource, action) wins over
      every allow; it touches no other grant.
    * Everything else is denied, including unknown roles, resources and actions.
    * ``own_location=False`` (the data belongs to another location than the
      caller's context) is always denied; see the module docstring.
    """
    if not own_location:
        return False
    grant = _parse(str(resource), str(action))
    if grant is None:
        return False
    allowed = False
    for override in custom_permissions:
        if _parse(override.resource, override.action) != grant:
            continue
        if override.effect is Effect.DENY:
            return False
        allowed = True
    if allowed:
        return True
    for role in roles:
        try:
            known = Role(role)
        except ValueError:
            continue
        if grant in grants.get(known, frozenset()):
            return True
    return False


class GrantProvider(Protocol):
    """Where an :class:`Authorizer` gets role grants from."""

    async def grants(self) -> RoleGrants:
        """Return the current role grants."""
        ...

    def invalidate(self) -> None:
        """Drop any cached grants."""
        ...


class GrantSource:
    """Role grants read from the store, cached for at most ``ttl``.

    Grants are loaded with ``uow.permissions.all()`` in a unit of work bound to
    no location (permissions are global).  If the store holds no permission rows
    at all — a fresh database that was never seeded — the source falls back to
    :data:`DEFAULT_GRANTS`, so a new install works and still denies by default;
    once any row exists only the stored rows count.  The cache is timed with the
    injected clock; :meth:`invalidate` drops it at once (after seeding or
    editing permissions in this process).
    """

    def __init__(
        self,
        gateway: DatabaseGateway,
        clock: Clock,
        *,
        ttl: timedelta = timedelta(seconds=60),
    ) -> None:
        if ttl > timedelta(seconds=60):
            raise ValueError("role grants may be cached for at most 60 seconds (docs/contract.md)")
        self._gateway = gateway
        self._clock = clock
        self._ttl = ttl
        self._cached: RoleGrants | None = None
        self._loaded_at: datetime | None = None
        self._lock = anyio.Lock()
        #: True when the last load found no rows and used the default matrix.
        self.using_defaults = False

    def _fresh(self) -> RoleGrants | None:
        if self._cached is None or self._loaded_at is None:
            return None
        age = self._clock.now() - self._loaded_at
        if age < timedelta(0) or age >= self._ttl:
            return None
        return self._cached

    async def grants(self) -> RoleGrants:
        """Return the current role grants (from the cache when fresh)."""
        cached = self._fresh()
        if cached is not None:
            return cached
        # One loader at a time: a burst of requests after expiry costs one query.
        async with self._lock:
            cached = self._fresh()
            if cached is not None:
                return cached
            async with self._gateway.unit_of_work(None) as uow:
                rows: Sequence[Permission] = await uow.permissions.all()
            self.using_defaults = not rows
            self._cached = grants_from_permissions(rows) if rows else DEFAULT_GRANTS
            self._loaded_at = self._clock.now()
            return self._cached

    def invalidate(self) -> None:
        """Forget the cached grants; the next call reads the store."""
        self._cached = None
        self._loaded_at = None


class StaticGrants:
    """A grant source that always answers the same grants (tests, tools)."""

    def __init__(self, grants: RoleGrants = DEFAULT_GRANTS) -> None:
        self._grants = grants

    async def grants(self) -> RoleGrants:
        """Return the fixed grants."""
        return self._grants

    def invalidate(self) -> None:
        """Nothing is cached."""


class Authorizer:
    """The RBAC check services call before touching data."""

    def __init__(self, source: GrantProvider) -> None:
        self._source = source

    @property
    def source(self) -> GrantProvider:
        """Where role grants come from."""
        return self._source

    async def allowed(self, ctx: Context, resource: Resource | str, action: Action | str) -> bool:
        """True when the caller may do ``action`` on ``resource`` at ``ctx.tenant_id``."""
        grants = await self._source.grants()
        return is_allowed(ctx.roles, ctx.custom_permissions, resource, action, grants)

    async def require(self, ctx: Context, resource: Resource | str, action: Action | str) -> None:
        """Raise :class:`PermissionDenied` unless the caller may do ``action`` on ``resource``."""
        if await self.allowed(ctx, resource, action):
            return
        roles = ", ".join(sorted(r.value for r in ctx.roles)) or "no role"
        raise PermissionDenied(
            f"{roles} may not {action} {resource} at this location "
            f"(permission {resource}:{action} is not granted)"
        )


__all__ = [
    "DEFAULT_GRANTS",
    "Authorizer",
    "Grant",
    "GrantProvider",
    "GrantSource",
    "RoleGrants",
    "StaticGrants",
    "default_permissions",
    "grants_from_permissions",
    "is_allowed",
]
