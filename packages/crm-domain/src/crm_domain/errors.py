"""Domain errors: the only failures a service or a port may raise.

Adapters translate their own failures (driver errors, HTTP errors) into these,
so the HTTP layer can map them to problem details in one place.
"""

from __future__ import annotations

import attrs


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


@attrs.frozen(slots=True)
class Reference:
    """How many records of one kind still refer to a record whose delete was refused."""

    #: The referring records' kind, e.g. ``"booking"`` (``crm_domain.relations.Table.kind``).
    kind: str
    count: int


class Conflict(CrmError):
    """The change contradicts the current state (duplicate key, illegal transition).

    ``references`` is set when a delete is refused because other records still
    refer to the record (a ``restrict`` rule of ``crm_domain.relations``): one
    :class:`Reference` per referring kind, in the rules' order.
    """

    def __init__(self, detail: str, *, references: tuple[Reference, ...] = ()) -> None:
        super().__init__(detail)
        self.references = references


class Unavailable(CrmError):
    """A backend (database, queue, AI or messaging provider) is down or timed out."""


__all__ = [
    "Conflict",
    "CrmError",
    "IpNotAllowed",
    "NotFound",
    "PermissionDenied",
    "Reference",
    "Unavailable",
    "ValidationError",
]
