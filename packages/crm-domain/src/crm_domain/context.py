"""Who is asking, for which location, from where."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from crm_domain.entities.staff import PermissionOverride, Role


def _roles(value: Iterable[Role | str]) -> frozenset[Role]:
    return frozenset(Role(r) for r in value)


def _overrides(value: Iterable[PermissionOverride]) -> tuple[PermissionOverride, ...]:
    # A typed converter (not bare ``tuple``) so mypy sees the __init__ parameter's type.
    return tuple(value)


@attrs.frozen(slots=True, kw_only=True)
class Context:
    """The caller of a use case, resolved by the entry point (HTTP, CLI, worker).

    Services take it on every call and check RBAC themselves; they never trust
    an id from a request body to pick the location — only ``tenant_id``.
    """

    tenant_id: str
    user_id: str | None
    roles: frozenset[Role] = attrs.field(converter=_roles)
    custom_permissions: tuple[PermissionOverride, ...] = attrs.field(
        default=(), converter=_overrides
    )
    client_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    request_method: str | None = None
    request_path: str | None = None

    @classmethod
    def system(
        cls,
        tenant_id: str,
        *,
        request_id: str | None = None,
        request_method: str | None = None,
        request_path: str | None = None,
    ) -> Context:
        """A context for work no signed-in user asked for: acts as admin, ``user_id`` None.

        Background work (automations, outbox consumers) passes only the location;
        an operator at the CLI also passes ``request_method="CLI"`` and the
        command as ``request_path`` (e.g. ``"crm user add"``), so the audit
        entry says who acted — the operator, through which command.
        """
        return cls(
            tenant_id=tenant_id,
            user_id=None,
            roles=frozenset({Role.ADMIN}),
            request_id=request_id,
            request_method=request_method,
            request_path=request_path,
        )

    @classmethod
    def for_roles(
        cls,
        tenant_id: str,
        user_id: str,
        roles: Iterable[Role | str],
        *,
        client_ip: str | None = None,
    ) -> Context:
        """A context for a signed-in user with the given roles at ``tenant_id``."""
        return cls(
            tenant_id=tenant_id,
            user_id=user_id,
            roles=frozenset(Role(r) for r in roles),
            client_ip=client_ip,
        )
