"""Access policies: role-based permissions and per-location IP allowlists."""

from crm_domain.policies.ip import IpAllowlist
from crm_domain.policies.rbac import (
    DEFAULT_GRANTS,
    Authorizer,
    Grant,
    GrantProvider,
    GrantSource,
    RoleGrants,
    StaticGrants,
    default_permissions,
    grants_from_permissions,
    is_allowed,
)

__all__ = [
    "DEFAULT_GRANTS",
    "Authorizer",
    "Grant",
    "GrantProvider",
    "GrantSource",
    "IpAllowlist",
    "RoleGrants",
    "StaticGrants",
    "default_permissions",
    "grants_from_permissions",
    "is_allowed",
]
