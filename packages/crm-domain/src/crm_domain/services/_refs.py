"""References to other records carried in a command (BOLA/BOPLA by body field).

A command may name another record by id (a booking's ``contact_id``, a task's
``assignee_id``).  The unit of work is bound to the caller's location, so
looking the id up there finds only that location's records: an id that does
not exist and one that exists only at another location fail the same way —
:class:`~crm_domain.errors.NotFound` naming the field, with the same detail
(the id echoed back, nothing else), so a caller cannot tell them apart.

Checked in the services, before anything is stored, so every adapter and every
gateway answers alike (a store's own foreign key would only say 422).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from crm_domain.errors import NotFound
from crm_domain.ports.gateway import UnitOfWork
from crm_domain.queries import MembershipQuery


def unknown_reference(field: str, noun: str, ref_id: str) -> NotFound:
    """The one error for a referenced id unknown at the caller's location."""
    return NotFound(f"{field}: {noun} {ref_id!r} not found", field=field)


async def require_reference(
    get: Callable[[str], Awaitable[object]], field: str, noun: str, ref_id: str
) -> None:
    """``get(ref_id)`` in the caller's location, or :func:`unknown_reference`."""
    try:
        await get(ref_id)
    except NotFound:
        raise unknown_reference(field, noun, ref_id) from None


async def has_membership(
    uow: UnitOfWork, user_id: str, location_id: str, *, active_only: bool
) -> bool:
    """Whether ``user_id`` holds a membership (an active one) at ``location_id``.

    Users are global; only a membership makes one visible at a location, so
    this — never ``uow.users.get`` — decides whether a user id is known here.
    """
    query = MembershipQuery(
        user_id=user_id,
        location_id=location_id,
        is_active=True if active_only else None,
    )
    return await uow.memberships.count(query) > 0


__all__ = ["has_membership", "require_reference", "unknown_reference"]
