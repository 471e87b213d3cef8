"""Steps 3 and 4 of the pipeline: which location, with which roles, from which networks.

Roles and IP rules are read from the store and cached for at most
``ttl`` (CONTRACT.md: ≤ 60 s), so a revoked membership or a removed IP rule
stops working within that time in every worker, and at once in the worker
that made the change (:meth:`AccessResolver.invalidate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
from crm_domain.entities import Location, PermissionOverride, Role
from crm_domain.errors import NotFound, PermissionDenied
from crm_domain.policies import IpAllowlist
from crm_domain.ports.gateway import DatabaseGateway


@attrs.frozen(slots=True, kw_only=True)
class Access:
    """A user's standing at one location, as the store says."""

    location: Location
    user_id: str
    roles: frozenset[Role]
    custom_permissions: tuple[PermissionOverride, ...]


@attrs.define(slots=True)
class _Entry:
    value: object
    loaded_at: float


class NoAccess(PermissionDenied):
    """The user holds no active membership at the location (or the location is inactive)."""


class AccessResolver:
    """Cached answers to "may this user act at this location, and from this address?"."""

    def __init__(
        self,
        gateway: DatabaseGateway,
        *,
        ttl_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds > 60:
            raise ValueError("roles may be cached for at most 60 seconds")
        self._gateway = gateway
        self._ttl = ttl_seconds
        self._now = monotonic
        self._access: dict[tuple[str, str], _Entry] = {}
        self._allowlists: dict[str, _Entry] = {}
        self._codes: dict[str, _Entry] = {}

    def _fresh(self, entry: _Entry | None) -> bool:
        return entry is not None and self._now() - entry.loaded_at < self._ttl

    async def location_id_for_code(self, code: str) -> str | None:
        """The id of the location with this code (subdomain tenancy), or ``None``."""
        entry = self._codes.get(code)
        if entry is None or not self._fresh(entry):
            try:
                async with self._gateway.unit_of_work(None) as uow:
                    location = await uow.locations.get_by_code(code)
                value: str | None = location.id
            except NotFound:
                value = None
            entry = _Entry(value, self._now())
            self._codes[code] = entry
        return entry.value if isinstance(entry.value, str) else None

    async def access(self, user_id: str, location_id: str) -> Access:
        """The user's roles at the location; :class:`NoAccess` without an active membership."""
        key = (user_id, location_id)
        entry = self._access.get(key)
        if entry is None or not self._fresh(entry):
            entry = _Entry(await self._load_access(user_id, location_id), self._now())
            self._access[key] = entry
        if isinstance(entry.value, Access):
            return entry.value
        raise NoAccess("no active membership at this location")

    async def _load_access(self, user_id: str, location_id: str) -> Access | None:
        async with self._gateway.unit_of_work(None) as uow:
            try:
                user = await uow.users.get(user_id)
                location = await uow.locations.get(location_id)
            except NotFound:
                return None
            if not user.is_active or not location.is_active:
                return None
            memberships = [
                m
                for m in await uow.memberships.for_user(user_id)
                if m.location_id == location_id and m.is_active
            ]
        if not memberships:
            return None
        return Access(
            location=location,
            user_id=user_id,
            roles=frozenset(m.role for m in memberships),
            custom_permissions=tuple(p for m in memberships for p in m.custom_permissions),
        )

    async def allowlist(self, location_id: str) -> IpAllowlist:
        """The location's active IP rules, compiled for fast checks."""
        entry = self._allowlists.get(location_id)
        if entry is None or not self._fresh(entry):
            async with self._gateway.unit_of_work(location_id) as uow:
                rules = await uow.ip_rules.active()
            entry = _Entry(IpAllowlist.from_cidrs(r.cidr for r in rules), self._now())
            self._allowlists[location_id] = entry
        assert isinstance(entry.value, IpAllowlist)
        return entry.value

    def invalidate(self) -> None:
        """Forget everything cached (after this process changed users, memberships or rules)."""
        self._access.clear()
        self._allowlists.clear()
        self._codes.clear()


__all__ = ["Access", "AccessResolver", "NoAccess"]
