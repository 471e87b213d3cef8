"""Exporting a location's data: one patient's full record, and every contact as a stream.

* :meth:`ContactExportService.record` — a patient's right of access: the
  contact with its consents, touchpoints, bookings, tasks and SMS messages
  (``contacts:read``, audited as a ``READ`` of ``contact_record``).
* :meth:`ContactExportService.contacts` — the location's contacts, page by
  page, for a CSV or JSON-lines download that is never held in memory whole
  (``contacts:export``, audited once as an ``EXPORT`` of ``contact_export``
  with the count, *before* the first contact is yielded).

Both are bound to the caller's location: another location's contact is a
``NotFound`` like any unknown id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TypeVar

import attrs

from crm_domain.audit import AuditAction
from crm_domain.context import Context
from crm_domain.entities import Action, Booking, Contact, Resource, SmsMessage, Task, Touchpoint
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

E = TypeVar("E")
Q = TypeVar("Q", bound=ListQuery)


@attrs.frozen(slots=True, kw_only=True)
class ContactRecord:
    """Everything the location holds about one contact (a right-of-access answer)."""

    contact: Contact
    touchpoints: tuple[Touchpoint, ...]
    bookings: tuple[Booking, ...]
    tasks: tuple[Task, ...]
    messages: tuple[SmsMessage, ...]
    exported_at: datetime


class ContactExportService(PortedService):
    """Use cases: a contact's full record, and the bulk export of a location's contacts."""

    async def record(self, ctx: Context, contact_id: str) -> ContactRecord:
        """The contact and everything linked to it, read in one unit of work."""
        async with self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="contact_record",
            resource_id=contact_id,
            write=False,
        ) as call:
            uow = call.uow
            contact = await uow.contacts.get(contact_id)
            one, most = contact_id, MAX_LIMIT
            touchpoints = await every(
                uow.touchpoints.list, TouchpointQuery(contact_id=one, limit=most)
            )
            bookings = await every(uow.bookings.list, BookingQuery(contact_id=one, limit=most))
            tasks = await every(uow.tasks.list, TaskQuery(contact_id=one, limit=most))
            messages = await every(uow.sms.list, SmsQuery(contact_id=one, limit=most))
            record = ContactRecord(
                contact=contact,
                touchpoints=tuple(touchpoints),
                bookings=tuple(bookings),
                tasks=tuple(tasks),
                messages=tuple(messages),
                exported_at=self._base.clock.now(),
            )
            call.detail = (
                f"right of access: {len(record.touchpoints)} touchpoints, "
                f"{len(record.bookings)} bookings, {len(record.tasks)} tasks, "
                f"{len(record.messages)} messages"
            )
            return record

    async def contacts(
        self, ctx: Context, query: ContactQuery | None = None, *, export_format: str = "csv"
    ) -> AsyncIterator[Sequence[Contact]]:
        """The location's contacts matching ``query``, one page (≤ 200) at a time.

        The permission check and the audit entry happen when this coroutine is
        awaited, so a refused caller gets ``PermissionDenied`` before any
        response starts; each page is then read in its own short unit of work
        (no transaction is held open while a slow client downloads).
        """
        scoped = attrs.evolve(query or ContactQuery(), limit=MAX_LIMIT, cursor=None)
        async with self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.EXPORT,
            audit=AuditAction.LIST,
            resource_type="contact_export",
            write=False,
        ) as call:
            total = await call.uow.contacts.count(scoped)
            call.detail = f"bulk export ({export_format}): {total} contacts"
        return self._pages(ctx.tenant_id, scoped)

    async def _pages(self, tenant_id: str, query: ContactQuery) -> AsyncIterator[Sequence[Contact]]:
        while True:
            async with self._base.gateway.unit_of_work(tenant_id) as uow:
                page = await uow.contacts.list(query)
            if page.items:
                yield page.items
            if page.next_cursor is None:
                return
            query = attrs.evolve(query, cursor=page.next_cursor)


__all__ = ["ContactExportService", "ContactRecord"]
