"""Domain errors: the only failures a service or a port may raise.

Adapters translate their own failures (driver errors, HTTP errors) into these,
so the HTTP layer can map them to problem details in one place.
"""

from __future__ import annotations


class CrmError(Exception):
    """Base class of every error the domain raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(CrmError):
    """The thing does not exist, or exists only in another location (never say which).

    ``field`` names the input field that carried the id when the id came in a
    body or command rather than as the addressed resource (``contact_id`` of a
    new booking); ``None`` for the resource itself.
    """

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class PermissionDenied(CrmError):
    """The caller's roles do not grant the action."""


class IpNotAllowed(PermissionDenied):
    """The client's address is outside the location's allowlist."""


class ValidationError(CrmError):
    """Input is invalid; ``field`` names the offending field (dotted for nested ones)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.reason = detail


class Conflict(CrmError):
    """The change contradicts the current state (duplicate key, illegal transition)."""


class Unavailable(CrmError):
    """A backend (database, queue, AI or messaging provider) is down or timed out."""


__all__ = [
    "Conflict",
    "CrmError",
    "IpNotAllowed",
    "NotFound",
    "PermissionDenied",
    "Unavailable",
    "ValidationError",
]
