"""Avatar Imaging CRM domain library: entities, ports, policies and use cases.

Framework-free: this package imports no web framework, SQL library or HTTP
client.  Storage, AI and messaging come from adapter packages that implement
the Protocols in :mod:`crm_domain.ports`.
"""

from crm_domain.context import Context
from crm_domain.errors import (
    Conflict,
    CrmError,
    IpNotAllowed,
    NotFound,
    PermissionDenied,
    Unavailable,
    ValidationError,
)
from crm_domain.pagination import Page

__version__ = "0.1.0"

__all__ = [
    "Conflict",
    "Context",
    "CrmError",
    "IpNotAllowed",
    "NotFound",
    "Page",
    "PermissionDenied",
    "Unavailable",
    "ValidationError",
    "__version__",
]
