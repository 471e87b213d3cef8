"""Erasure and retention: removing a contact's data for good, on request or when its time is up.

* :meth:`LifecycleService.erase` (``contacts:delete``) — a patient's request
  to be forgotten: the contact, its touchpoints, bookings, tasks, SMS messages
  and campaign deliveries are deleted in one unit of work.  The audit trail is
  not touched: its entries hold ids and PHI-free notes only, so every entry
  stays and the hash chains still verify; the erasure itself is one more entry
  (``DELETE`` of the contact, detail ``erased …``) — the erasure marker.  A
  contact under legal hold is refused (``Conflict``).
* :meth:`LifecycleService.purge` (``contacts:delete``) — retention: every
  contact of the location neither created nor changed within the location's
  ``LocationSettings.retention_days`` and not under legal hold is erased the
  same way, one unit of work and one marker each.  Audit entries are never
  purged: nothing in the CRM deletes them (the SQL stores refuse it outright),
  which keeps them at least the six years HIPAA asks for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import attrs

from crm_domain.audit import AuditAction
from crm_domain.context import Context
from crm_domain.entities import Action, Resource
from crm_domain.errors import Conflict
from crm_domain.pagination import Page
from crm_domain.ports.gateway import UnitOfWork
from crm_domain.queries import (
    MAX_LIMIT,
    BookingQuery,
    ContactQuery,
    ListQuery,
    SmsQuery,
    TaskQuery,
    TouchpointQuery,
)
from crm_domain.services._ported import PortedService, every
from crm_domain.services.events import EventName

#: The tag that puts a contact under legal hold: no erasure, no purge.
LEGAL_HOLD_TAG = "legal-hold"


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


E = TypeVar("E", bound=_Identified)
Q = TypeVar("Q", bound=ListQuery)


@attrs.frozen(slots=True, kw_only=True)
class Erasure:
    """What erasing one contact removed."""

    contact_id: str
    touchpoints: int
    bookings: int
    tasks: int
    messages: int


@attrs.frozen(slots=True, kw_only=True)
class PurgeReport:
    """What a retention purge did at one location."""

    erased: tuple[str, ...]
    held: int
    retention_days: int


class LifecycleService(PortedService):
    """Use cases: erase a contact, purge what retention no longer allows."""

    async def erase(self, ctx: Context, contact_id: str, *, reason: str = "on request") -> Erasure:
        """Delete a contact and everything linked to it; audit the erasure (see module doc)."""
        async with self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.DELETE,
            audit=AuditAction.DELETE,
            resource_type="contact",
            resource_id=contact_id,
            write=True,
        ) as call:
            uow = call.uow
            contact = await uow.contacts.get(contact_id)
            if LEGAL_HOLD_TAG in contact.tags:
                raise Conflict(f"contact {contact_id} is under legal hold and cannot be erased")
            one, most = contact_id, MAX_LIMIT
            touchpoints = await _ids_of(
                uow.touchpoints.list, TouchpointQuery(contact_id=one, limit=most)
            )
            bookings = await _ids_of(uow.bookings.list, BookingQuery(contact_id=one, limit=most))
            tasks = await _ids_of(uow.tasks.list, TaskQuery(contact_id=one, limit=most))
            messages = await _ids_of(uow.sms.list, SmsQuery(contact_id=one, limit=most))
            for task_id in tasks:
                await uow.tasks.delete(task_id)
            for message_id in messages:
                await uow.sms.delete(message_id)
            for touchpoint_id in touchpoints:
                await uow.touchpoints.delete(touchpoint_id)
            for booking_id in bookings:
                await uow.bookings.delete(booking_id)
            await uow.contacts.delete(contact_id)
            erasure = Erasure(
                contact_id=contact_id,
                touchpoints=len(touchpoints),
                bookings=len(bookings),
                tasks=len(tasks),
                messages=len(messages),
            )
            # The erasure marker: ids and counts only, never what was erased.
            call.detail = (
                f"erased {reason}: {erasure.touchpoints} touchpoints, {erasure.bookings} "
                f"bookings, {erasure.tasks} tasks, {erasure.messages} messages"
            )
            await call.emit(
                EventName.CONTACT_ERASED, "contact", contact_id, {"contact_id": contact_id}
            )
            return erasure

    async def purge(self, ctx: Context) -> PurgeReport:
        """Erase the location's contacts past its retention period (not those on hold)."""
        async with self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.DELETE,
            audit=AuditAction.LIST,
            resource_type="retention_purge",
            write=False,
        ) as call:
            location = await call.uow.locations.get(ctx.tenant_id)
            days = location.settings.retention_days
            cutoff = self._base.clock.now() - timedelta(days=days)
            due: list[str] = []
            held = 0
            query = ContactQuery(created_to=cutoff, limit=MAX_LIMIT)
            while True:
                page = await call.uow.contacts.list(query)
                for contact in page.items:
                    if contact.updated_at >= cutoff or await _active_since(
                        call.uow, contact.id, cutoff
                    ):
                        continue
                    if LEGAL_HOLD_TAG in contact.tags:
                        held += 1
                    else:
                        due.append(contact.id)
                if page.next_cursor is None:
                    break
                query = attrs.evolve(query, cursor=page.next_cursor)
            call.detail = f"retention {days} days: {len(due)} due, {held} on legal hold"
        erased: list[str] = []
        for contact_id in due:
            await self.erase(ctx, contact_id, reason=f"by retention ({days} days)")
            erased.append(contact_id)
        return PurgeReport(erased=tuple(erased), held=held, retention_days=days)


async def _active_since(uow: UnitOfWork, contact_id: str, cutoff: datetime) -> bool:
    """Whether the contact had a booking or a touchpoint since ``cutoff``."""
    bookings = await uow.bookings.list(
        BookingQuery(contact_id=contact_id, starts_from=cutoff, limit=1)
    )
    touchpoints = await uow.touchpoints.list(
        TouchpointQuery(contact_id=contact_id, occurred_from=cutoff, limit=1)
    )
    return bool(bookings.items or touchpoints.items)


async def _ids_of(list_page: Callable[[Q], Awaitable[Page[E]]], query: Q) -> list[str]:
    return [item.id for item in await every(list_page, query)]


__all__ = ["LEGAL_HOLD_TAG", "Erasure", "LifecycleService", "PurgeReport"]
