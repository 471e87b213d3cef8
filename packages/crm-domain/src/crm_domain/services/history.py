"""Use case: bring a location's past records in as they were (ids and dates kept).

The demo seeds months of history, and a clinic moving from another CRM brings
years of it: contacts with their touchpoints, bookings, tasks and SMS, each
dated when it happened.  The ordinary use cases cannot do that (they stamp
``now``, queue reminders, run automations and rescore warmness for each
record), and writing to the gateway directly would bypass permission, audit
and events.  :class:`HistoryImportService` writes one batch in one unit of
work with one audit entry and one ``HistoryImported`` event, after checking
that every record belongs to the caller's location and that what refers to a
contact refers to one in the batch or already stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from crm_domain.audit import AuditAction
from crm_domain.context import Context
from crm_domain.entities import Action, Booking, Contact, Resource, SmsMessage, Task, Touchpoint
from crm_domain.errors import NotFound, ValidationError
from crm_domain.services._ported import PortedService
from crm_domain.services.events import EventName

#: The audit ``resource_type`` (and event aggregate) of a history import.
HISTORY_RESOURCE = "history_import"


@attrs.frozen(slots=True, kw_only=True)
class History:
    """Records of one location, as they were: ids, dates and statuses are kept."""

    contacts: Sequence[Contact] = ()
    touchpoints: Sequence[Touchpoint] = ()
    bookings: Sequence[Booking] = ()
    tasks: Sequence[Task] = ()
    sms: Sequence[SmsMessage] = ()

    def counts(self) -> dict[str, int]:
        """How many records of each kind."""
        return {
            "contacts": len(self.contacts),
            "touchpoints": len(self.touchpoints),
            "bookings": len(self.bookings),
            "tasks": len(self.tasks),
            "sms": len(self.sms),
        }


class HistoryImportService(PortedService):
    """Import past records (permission ``contacts:create``, like the CSV import)."""

    async def restore(self, ctx: Context, import_id: str, history: History) -> dict[str, int]:
        """Write ``history`` into ``ctx``'s location; all of it or (on any error) none.

        ``ValidationError`` names the first record of another location, or one
        referring to a contact neither in the batch nor stored; nothing is
        written then.  Returns the counts written.
        """
        counts = history.counts()
        async with self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type=HISTORY_RESOURCE,
            resource_id=import_id,
            write=True,
        ) as call:
            _same_location(ctx.tenant_id, history)
            batch = {c.id for c in history.contacts}
            referred: list[str | None] = [
                *(t.contact_id for t in history.touchpoints),
                *(b.contact_id for b in history.bookings),
                *(t.contact_id for t in history.tasks),
                *(m.contact_id for m in history.sms),
            ]
            wanted = {c for c in referred if c is not None} - batch
            for contact_id in sorted(wanted):
                try:
                    await call.uow.contacts.get(contact_id)
                except NotFound:
                    raise ValidationError(
                        "contact_id", f"refers to contact {contact_id}, not in this location"
                    ) from None
            uow = call.uow
            if history.contacts:
                await uow.contacts.add_many(history.contacts)
            # In id order (ids sort by time), so a store that checks references
            # sees a record's parents before it.
            for repository, records in (
                (uow.touchpoints, history.touchpoints),
                (uow.bookings, history.bookings),
                (uow.tasks, history.tasks),
                (uow.sms, history.sms),
            ):
                adder: Any = repository
                for record in sorted(records, key=lambda r: str(r.id)):
                    await adder.add(record)
            call.detail = ", ".join(f"{n} {kind}" for kind, n in counts.items())
            await call.emit(
                EventName.HISTORY_IMPORTED,
                HISTORY_RESOURCE,
                import_id,
                {"import_id": import_id, **counts},
            )
        return counts


def _same_location(tenant_id: str, history: History) -> None:
    for kind, records in (
        ("contacts", history.contacts),
        ("touchpoints", history.touchpoints),
        ("bookings", history.bookings),
        ("tasks", history.tasks),
        ("sms", history.sms),
    ):
        for record in records:
            if record.tenant_id != tenant_id:
                raise ValidationError(
                    f"{kind}.tenant_id", f"{record.id} belongs to another location"
                )


__all__ = ["HISTORY_RESOURCE", "History", "HistoryImportService"]
