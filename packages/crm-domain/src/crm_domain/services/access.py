"""Administration of access: locations, staff, IP allowlists, permissions.

Also the read path of every entry point — :meth:`AccessService.resolve_access`
(which membership does this user hold at this location?),
:meth:`AccessService.find_location` (which location has this code?) and
:meth:`AccessService.allowlist` (which client addresses may reach it?).  Those
take no :class:`Context` (they run before one exists) and write no audit
entry: the pipeline audits the request they belong to.  They are the one
access cache of a process: answers are kept for ``cache_ttl`` (at most 60 s,
the contract's bound; the HTTP server's ``CRM_ACCESS_CACHE_TTL``), so a change
made elsewhere — another worker, the CLI, the database — takes effect within
that time, and a change made through this service at once.  ``on_change``
(awaited after every such change) lets an entry point tell its other
processes, which then drop their caches too.

Everything else is an admin use case checked against RBAC and audited like any
other.  Staff, memberships and IP rules are managed at the caller's own
location (``ctx.tenant_id``).  Creating a location is audited in the *new*
location's chain — its first entry — since the location is where the data
will live.  Operators working from the CLI pass ``Context.system(location_id)``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import (
    Action,
    IpRule,
    Location,
    Membership,
    PermissionOverride,
    Resource,
    Role,
    StaffUser,
)
from crm_domain.errors import Conflict, NotFound, PermissionDenied
from crm_domain.pagination import Page
from crm_domain.policies.ip import IpAllowlist
from crm_domain.policies.rbac import Authorizer, default_permissions
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.queries import IpRuleQuery, LocationQuery, MembershipQuery
from crm_domain.services._base import ServiceBase
from crm_domain.services.commands import (
    AddUser,
    AllowIp,
    CreateLocation,
    UpdateLocation,
    changes,
)
from crm_domain.services.events import EventName
from crm_domain.values import parse_cidr, parse_email


@attrs.frozen(slots=True, kw_only=True)
class Access:
    """A user's standing at one location, as the store says: the location and the membership."""

    location: Location
    membership: Membership

    @property
    def user_id(self) -> str:
        """The user's id."""
        return self.membership.user_id

    @property
    def roles(self) -> frozenset[Role]:
        """The roles the membership gives (one per membership today)."""
        return frozenset({self.membership.role})

    @property
    def custom_permissions(self) -> tuple[PermissionOverride, ...]:
        """The membership's single-grant additions and removals."""
        return self.membership.custom_permissions


class NoAccess(PermissionDenied):
    """No active user with an active membership at an active location of that code or id."""


#: The contract's bound on how long roles and IP rules may be cached.
MAX_CACHE_TTL = timedelta(seconds=60)

_T = TypeVar("_T")
_P = ParamSpec("_P")


def _invalidates_access(
    method: Callable[Concatenate[AccessService, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[AccessService, _P], Coroutine[Any, Any, _T]]:
    """Mark a write whose effect the read path's cache must not hide.

    The cache is dropped once the use case has ended, committed or refused, so
    no reader can cache the old answer between the drop and the commit.
    """

    @functools.wraps(method)
    async def write(service: AccessService, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await method(service, *args, **kwargs)
        finally:
            service.invalidate()
            if service.on_change is not None:
                await service.on_change()

    return write


@attrs.frozen(slots=True, kw_only=True)
class Member:
    """A staff user together with their membership at one location."""

    user: StaffUser
    membership: Membership


class AccessService:
    """Admin use cases on locations, staff, IP rules and permissions.

    Permissions: ``locations:*``, ``users:*``, ``ip_rules:*`` as named on each
    method; seeding role permissions needs ``users:update``.
    """

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
        *,
        cache_ttl: timedelta = timedelta(seconds=30),
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if cache_ttl > MAX_CACHE_TTL:
            raise ValueError("roles and IP rules may be cached for at most 60 seconds")
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)
        self._ttl = cache_ttl
        # One cache for the read path, keyed by kind: ("access", user, location),
        # ("location", code or id), ("allowlist", location id).  Misses are kept too.
        self._cache: dict[tuple[str, ...], tuple[datetime, object]] = {}
        #: Awaited after every change of locations, members, IP rules or grants made here.
        self.on_change = on_change

    def invalidate(self) -> None:
        """Forget every cached answer (this service's own writes do it themselves)."""
        self._cache.clear()

    async def _cached(self, key: tuple[str, ...], load: Callable[[], Awaitable[_T]]) -> _T:
        now = self._base.clock.now()
        hit = self._cache.get(key)
        if hit is not None and timedelta(0) <= now - hit[0] < self._ttl:
            return cast("_T", hit[1])
        value = await load()
        self._cache[key] = (now, value)
        return value

    # -- locations ------------------------------------------------------------

    @_invalidates_access
    async def create_location(self, ctx: Context, command: CreateLocation) -> Location:
        """Open a location (``locations:create``); emits ``LocationCreated``.

        The new location has no IP rule, so nobody reaches it over HTTP until
        one is added.  A taken code is a ``Conflict``.
        """
        base = self._base
        location_id = base.ids.new_id()
        async with base.use_case(
            ctx,
            Resource.LOCATIONS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="location",
            resource_id=location_id,
            write=True,
            tenant_id=location_id,
        ) as call:
            location = Location(
                id=location_id,
                code=command.code,
                name=command.name,
                timezone=command.timezone,
                address=command.address,
                settings=command.settings,
                created_at=base.clock.now(),
            )
            await call.uow.locations.add(location)
            await call.emit(
                EventName.LOCATION_CREATED,
                "location",
                location.id,
                {"location_id": location.id, "code": location.code},
            )
            return location

    async def get_location(self, ctx: Context, location_id: str | None = None) -> Location:
        """Return a location (default: the caller's) — ``locations:read``."""
        wanted = ctx.tenant_id if location_id is None else location_id
        async with self._base.use_case(
            ctx,
            Resource.LOCATIONS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="location",
            resource_id=wanted,
            write=False,
        ) as call:
            return await call.uow.locations.get(wanted)

    async def list_locations(
        self, ctx: Context, query: LocationQuery | None = None
    ) -> Page[Location]:
        """One page of every location — ``locations:read``."""
        async with self._base.use_case(
            ctx,
            Resource.LOCATIONS,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="location",
            write=False,
        ) as call:
            page = await call.uow.locations.list(query or LocationQuery())
            call.detail = f"{len(page.items)} returned"
            return page

    @_invalidates_access
    async def update_location(self, ctx: Context, command: UpdateLocation) -> Location:
        """Change the caller's location — ``locations:update``; emits ``LocationUpdated``."""
        async with self._base.use_case(
            ctx,
            Resource.LOCATIONS,
            Action.UPDATE,
            audit=AuditAction.UPDATE,
            resource_type="location",
            resource_id=ctx.tenant_id,
            write=True,
        ) as call:
            current = await call.uow.locations.get(ctx.tenant_id)
            requested = changes(command)
            updated = attrs.evolve(current, **requested)
            changed = sorted(n for n in requested if getattr(updated, n) != getattr(current, n))
            if not changed:
                return current
            await call.uow.locations.update(updated)
            await call.emit(
                EventName.LOCATION_UPDATED,
                "location",
                updated.id,
                {"location_id": updated.id, "changed": changed},
            )
            return updated

    # -- staff ------------------------------------------------------------------

    @_invalidates_access
    async def add_user(self, ctx: Context, command: AddUser) -> Member:
        """Give a person a role at the caller's location — ``users:create``.

        Creates the staff user when the email is new; an existing membership at
        the location gets the new role and custom permissions and is re-activated.
        Emits ``MembershipGranted``.
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.USERS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="membership",
            write=True,
        ) as call:
            email = parse_email(command.email)
            now = base.clock.now()
            uow = call.uow
            try:
                user = await uow.users.get_by_email(email)
            except NotFound:
                user = StaffUser(
                    id=base.ids.new_id(), email=email, name=command.name, created_at=now
                )
                await uow.users.add(user)
            existing = await self._membership_at(uow, user.id, ctx.tenant_id)
            if existing is None:
                membership = Membership(
                    id=base.ids.new_id(),
                    user_id=user.id,
                    location_id=ctx.tenant_id,
                    role=command.role,
                    custom_permissions=command.custom_permissions,
                    created_at=now,
                )
                await uow.memberships.add(membership)
            else:
                membership = attrs.evolve(
                    existing,
                    role=command.role,
                    custom_permissions=command.custom_permissions,
                    is_active=True,
                )
                await uow.memberships.update(membership)
            call.resource_id = membership.id
            call.detail = f"user {user.id} as {membership.role.value}"
            await call.emit(
                EventName.MEMBERSHIP_GRANTED,
                "membership",
                membership.id,
                {
                    "membership_id": membership.id,
                    "user_id": user.id,
                    "role": membership.role.value,
                },
            )
            return Member(user=user, membership=membership)

    async def list_users(self, ctx: Context, query: MembershipQuery | None = None) -> Page[Member]:
        """One page of the caller's location's members — ``users:read``.

        ``query.location_id`` is always the caller's location.
        """
        async with self._base.use_case(
            ctx,
            Resource.USERS,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="membership",
            write=False,
        ) as call:
            scoped = attrs.evolve(query or MembershipQuery(), location_id=ctx.tenant_id)
            page = await call.uow.memberships.list(scoped)
            members = []
            for membership in page.items:
                user = await call.uow.users.get(membership.user_id)
                members.append(Member(user=user, membership=membership))
            call.detail = f"{len(members)} returned"
            return Page(tuple(members), page.next_cursor)

    @_invalidates_access
    async def deactivate_membership(self, ctx: Context, membership_id: str) -> Membership:
        """End a membership at the caller's location — ``users:update``.

        The user's next request at this location is refused (roles are read
        from the store on each request).  Emits ``MembershipDeactivated``.
        """
        async with self._base.use_case(
            ctx,
            Resource.USERS,
            Action.UPDATE,
            audit=AuditAction.UPDATE,
            resource_type="membership",
            resource_id=membership_id,
            write=True,
        ) as call:
            membership = await call.uow.memberships.get(membership_id)
            if membership.location_id != ctx.tenant_id:
                # Another location's membership reads as unknown, never as forbidden.
                raise NotFound(f"membership {membership_id} not found")
            updated = attrs.evolve(membership, is_active=False)
            await call.uow.memberships.update(updated)
            await call.emit(
                EventName.MEMBERSHIP_DEACTIVATED,
                "membership",
                updated.id,
                {"membership_id": updated.id, "user_id": updated.user_id},
            )
            return updated

    # -- IP allowlist -------------------------------------------------------------

    @_invalidates_access
    async def allow_ip(self, ctx: Context, command: AllowIp) -> IpRule:
        """Allow a network at the caller's location — ``ip_rules:create``; emits ``IpRuleAdded``.

        The CIDR is validated (host bits set is an error that suggests the
        network); an existing inactive rule for it is re-activated, an active
        one is a ``Conflict``.
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.IP_RULES,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="ip_rule",
            write=True,
        ) as call:
            cidr = parse_cidr(command.cidr, field="cidr")
            existing = await self._rule_for(call.uow, cidr)
            if existing is not None and existing.is_active:
                raise Conflict(f"{cidr} is already allowed at this location")
            if existing is not None:
                rule = attrs.evolve(existing, is_active=True, description=command.description)
                await call.uow.ip_rules.update(rule)
            else:
                rule = IpRule(
                    id=base.ids.new_id(),
                    tenant_id=ctx.tenant_id,
                    cidr=cidr,
                    description=command.description,
                    created_at=base.clock.now(),
                    created_by=ctx.user_id or "system",
                )
                await call.uow.ip_rules.add(rule)
            call.resource_id = rule.id
            call.detail = cidr
            await call.emit(
                EventName.IP_RULE_ADDED, "ip_rule", rule.id, {"ip_rule_id": rule.id, "cidr": cidr}
            )
        return rule

    async def list_ip_rules(self, ctx: Context, query: IpRuleQuery | None = None) -> Page[IpRule]:
        """One page of the caller's location's IP rules — ``ip_rules:read``."""
        async with self._base.use_case(
            ctx,
            Resource.IP_RULES,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="ip_rule",
            write=False,
        ) as call:
            page = await call.uow.ip_rules.list(query or IpRuleQuery())
            call.detail = f"{len(page.items)} returned"
            return page

    @_invalidates_access
    async def remove_ip(self, ctx: Context, cidr: str) -> None:
        """Remove a network from the caller's location — ``ip_rules:delete``.

        ``NotFound`` when no rule has that CIDR.  Emits ``IpRuleRemoved``.
        """
        async with self._base.use_case(
            ctx,
            Resource.IP_RULES,
            Action.DELETE,
            audit=AuditAction.DELETE,
            resource_type="ip_rule",
            write=True,
        ) as call:
            canonical = parse_cidr(cidr, field="cidr")
            call.detail = canonical
            rule = await self._rule_for(call.uow, canonical)
            if rule is None:
                raise NotFound(f"no IP rule for {canonical} at this location")
            call.resource_id = rule.id
            await call.uow.ip_rules.delete(rule.id)
            await call.emit(
                EventName.IP_RULE_REMOVED,
                "ip_rule",
                rule.id,
                {"ip_rule_id": rule.id, "cidr": canonical},
            )

    # -- permissions --------------------------------------------------------------

    async def seed_permissions(self, ctx: Context) -> int:
        """Store the default permission matrix's missing rows — ``users:update``.

        Idempotent; returns how many grants were added.  Role grants are read
        by the authorizer at most 60 s later (at once in this process).
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.USERS,
            Action.UPDATE,
            audit=AuditAction.CREATE,
            resource_type="permission",
            write=True,
        ) as call:
            present = {(p.role, p.resource, p.action) for p in await call.uow.permissions.all()}
            added = 0
            for permission in default_permissions(base.clock, base.ids):
                if (permission.role, permission.resource, permission.action) not in present:
                    await call.uow.permissions.add(permission)
                    added += 1
            call.detail = f"{added} default grants added"
        base.authorizer.source.invalidate()
        if self.on_change is not None:
            await self.on_change()
        return added

    # -- the security pipeline's read path -------------------------------------------

    async def find_location(self, location_code_or_id: str) -> Location:
        """The location with this code (or id) — ``NotFound`` when there is none.

        Like :meth:`resolve_access` this takes no :class:`Context`: entry points
        call it to learn which location a request or an operator's command is
        about before a context exists (a location's code, name and timezone are
        not patient data, so the lookup is not audited).  Cached.
        """
        location = await self._location(location_code_or_id)
        if location is None:
            raise NotFound(f"no location with code {location_code_or_id!r}")
        return location

    async def _location(self, code_or_id: str) -> Location | None:
        async def load() -> Location | None:
            async with self._base.gateway.unit_of_work(None) as uow:
                return await self._find_location(uow, code_or_id)

        return await self._cached(("location", code_or_id), load)

    async def resolve_access(self, user_id: str, location_code_or_id: str) -> Access:
        """The location and the user's active membership there (cached).

        Raises :class:`NoAccess` (a ``PermissionDenied``) when the user is
        unknown or inactive, the location is unknown or inactive, or the user
        holds no active membership there — one error for all, so the answer
        reveals nothing about which locations exist.
        """
        location = await self._location(location_code_or_id)

        async def load() -> Access | None:
            if location is None or not location.is_active:
                return None
            async with self._base.gateway.unit_of_work(None) as uow:
                try:
                    user = await uow.users.get(user_id)
                except NotFound:
                    return None
                membership = await self._membership_at(uow, user_id, location.id)
            if not user.is_active or membership is None or not membership.is_active:
                return None
            return Access(location=location, membership=membership)

        where = location_code_or_id if location is None else location.id
        access = await self._cached(("access", user_id, where), load)
        if access is None:
            raise NoAccess("no active membership at this location")
        return access

    async def allowlist(self, location_id: str) -> IpAllowlist:
        """The location's active IP rules as an :class:`IpAllowlist` (empty: nobody); cached."""

        async def load() -> IpAllowlist:
            async with self._base.gateway.unit_of_work(location_id) as uow:
                rules: Sequence[IpRule] = await uow.ip_rules.active()
            return IpAllowlist.from_cidrs(rule.cidr for rule in rules)

        return await self._cached(("allowlist", location_id), load)

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    async def _find_location(uow: UnitOfWork, code_or_id: str) -> Location | None:
        try:
            return await uow.locations.get_by_code(code_or_id)
        except NotFound:
            pass
        try:
            return await uow.locations.get(code_or_id)
        except NotFound:
            return None

    @staticmethod
    async def _membership_at(uow: UnitOfWork, user_id: str, location_id: str) -> Membership | None:
        page = await uow.memberships.list(
            MembershipQuery(user_id=user_id, location_id=location_id, limit=1)
        )
        return page.items[0] if page.items else None

    @staticmethod
    async def _rule_for(uow: UnitOfWork, cidr: str) -> IpRule | None:
        query = IpRuleQuery(limit=200)
        while True:
            page = await uow.ip_rules.list(query)
            for rule in page.items:
                if rule.cidr == cidr:
                    return rule
            if page.next_cursor is None:
                return None
            query = attrs.evolve(query, cursor=page.next_cursor)


__all__ = ["MAX_CACHE_TTL", "Access", "AccessService", "Member", "NoAccess"]
