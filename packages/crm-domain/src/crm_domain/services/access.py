"""Administration of access: locations, staff, IP allowlists, permissions.

Also the read path of the HTTP security pipeline — :meth:`AccessService.resolve_access`
(which membership does this user hold at this location?) and
:meth:`AccessService.allowlist` (which client addresses may reach it?).  Those
two take no :class:`Context` (they run before one exists) and write no audit
entry: the pipeline audits the request they belong to.

Everything else is an admin use case checked against RBAC and audited like any
other.  Staff, memberships and IP rules are managed at the caller's own
location (``ctx.tenant_id``).  Creating a location is audited in the *new*
location's chain — its first entry — since the location is where the data
will live.  Operators working from the CLI pass ``Context.system(location_id)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import (
    Action,
    IpRule,
    Location,
    Membership,
    Resource,
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
        allowlist_ttl: timedelta = timedelta(seconds=30),
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)
        self._allowlist_ttl = allowlist_ttl
        self._allowlists: dict[str, tuple[datetime, IpAllowlist]] = {}

    # -- locations ------------------------------------------------------------

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
        self._allowlists.pop(ctx.tenant_id, None)
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
        self._allowlists.pop(ctx.tenant_id, None)

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
        return added

    # -- the security pipeline's read path -------------------------------------------

    async def find_location(self, location_code_or_id: str) -> Location:
        """The location with this code (or id) — ``NotFound`` when there is none.

        Like :meth:`resolve_access` this takes no :class:`Context`: entry points
        call it to learn which location a request or an operator's command is
        about before a context exists (a location's code, name and timezone are
        not patient data, so the lookup is not audited).
        """
        async with self._base.gateway.unit_of_work(None) as uow:
            location = await self._find_location(uow, location_code_or_id)
        if location is None:
            raise NotFound(f"no location with code {location_code_or_id!r}")
        return location

    async def resolve_access(
        self, user_id: str, location_code_or_id: str
    ) -> tuple[Location, Membership]:
        """The location and the user's active membership there.

        Raises :class:`PermissionDenied` when the user is unknown or inactive,
        the location is unknown or inactive, or the user holds no active
        membership there — one error for all, so the answer reveals nothing
        about which locations exist.
        """
        denied = PermissionDenied("no active membership at this location")
        async with self._base.gateway.unit_of_work(None) as uow:
            location = await self._find_location(uow, location_code_or_id)
            if location is None or not location.is_active:
                raise denied
            try:
                user = await uow.users.get(user_id)
            except NotFound:
                raise denied from None
            if not user.is_active:
                raise denied
            membership = await self._membership_at(uow, user_id, location.id)
        if membership is None or not membership.is_active:
            raise denied
        return location, membership

    async def allowlist(self, location_id: str) -> IpAllowlist:
        """The location's active IP rules as an :class:`IpAllowlist` (empty: nobody).

        Cached per location for ``allowlist_ttl`` (and dropped at once when this
        service changes the location's rules).
        """
        now = self._base.clock.now()
        cached = self._allowlists.get(location_id)
        if cached is not None and timedelta(0) <= now - cached[0] < self._allowlist_ttl:
            return cached[1]
        async with self._base.gateway.unit_of_work(location_id) as uow:
            rules: Sequence[IpRule] = await uow.ip_rules.active()
        allowlist = IpAllowlist.from_cidrs(rule.cidr for rule in rules)
        self._allowlists[location_id] = (now, allowlist)
        return allowlist

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


__all__ = ["AccessService", "Member"]
