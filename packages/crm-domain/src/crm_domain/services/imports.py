"""Importing a location's contacts from a spreadsheet: validated, deduplicated, resumable.

The use case behind ``crm import contacts`` (docs/contract.md "CLI").  Rows
arrive as lists of cells with a :class:`~crm_domain.importing.ColumnMap`; each
row is validated (:func:`~crm_domain.importing.contact_from_row`) and checked
against every contact already at the location and every earlier row of the
file, by normalised email and E.164 phone.  A refused row goes to the
caller's :class:`RejectionSink` with its field and reason; nothing of it is
stored.

Valid rows are stored in batches through the gateway's bulk path
(``contacts.add_many``).  Each batch is one unit of work holding its contacts,
one ``ContactsImported`` event and one audit entry (``contact_import``, the
import's fingerprint, ``rows A-B``) — so the audit trail is also the import's
journal: :meth:`ContactImportService.checkpoint` reads the last committed row
from it, and an interrupted import run again with the same file skips what is
stored, without duplicates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs

from crm_domain.audit import AuditAction
from crm_domain.context import Context
from crm_domain.entities import Action, AuditOutcome, Contact, Resource
from crm_domain.errors import ValidationError
from crm_domain.importing import ColumnMap, contact_from_row, duplicate_keys
from crm_domain.ports.gateway import UnitOfWork
from crm_domain.queries import MAX_LIMIT, AuditQuery, ContactQuery
from crm_domain.services._base import Call
from crm_domain.services._ported import PortedService, every
from crm_domain.services.events import EventName

#: ``AuditEntry.resource_type`` of an import's entries; the resource id is its fingerprint.
IMPORT_RESOURCE = "contact_import"
#: Rows per unit of work: large enough for the bulk path, small enough to lose little.
DEFAULT_BATCH_ROWS = 2000
_ROWS = re.compile(r"^rows (\d+)-(\d+):")


@attrs.frozen(slots=True, kw_only=True)
class Rejection:
    """Why data row ``row`` (1 = the first row under the header) was not imported."""

    row: int
    field: str
    reason: str
    #: The row's cells as read, so the report can be corrected and imported again.
    values: tuple[str, ...]


class RejectionSink(Protocol):
    """Where refused rows go (the CLI writes them to the report file)."""

    def write(self, rejections: Sequence[Rejection]) -> None:
        """Keep ``rejections``; called before the batch they belong to commits."""
        ...


@attrs.frozen(slots=True, kw_only=True)
class ImportSummary:
    """What one run of an import did."""

    import_id: str
    #: Data rows read in this run (rows before ``resumed_after`` not counted).
    rows: int
    stored: int
    #: Refused as invalid.
    rejected: int
    #: Refused as the same person as a stored contact or an earlier row.
    duplicates: int
    #: The last row an earlier, interrupted run had committed (0: a fresh import).
    resumed_after: int
    dry_run: bool


class ContactImportService(PortedService):
    """Use case: import a location's contacts (permission ``contacts:create``)."""

    def _reading(self, ctx: Context, import_id: str) -> AbstractAsyncContextManager[Call]:
        """A read of the store for an import: its checkpoint, the keys to dedupe against."""
        return self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.CREATE,
            audit=AuditAction.READ,
            resource_type=IMPORT_RESOURCE,
            resource_id=import_id,
            write=False,
        )

    async def checkpoint(self, ctx: Context, import_id: str) -> int:
        """The last data row an earlier run of ``import_id`` committed (0: none)."""
        async with self._reading(ctx, import_id) as call:
            last = await _committed_through(call.uow, import_id)
            call.detail = f"checkpoint: row {last}"
            return last

    async def run(
        self,
        ctx: Context,
        rows: Iterable[Sequence[str]],
        columns: ColumnMap,
        *,
        import_id: str,
        dry_run: bool = False,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        rejections: RejectionSink | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ImportSummary:
        """Import ``rows`` (data rows, header excluded) into ``ctx``'s location.

        Resumes after the last row a run of ``import_id`` committed.  With
        ``dry_run`` nothing is written: the summary and the rejections are what
        a real run would give.  ``progress`` is told how many rows each step
        consumed (skipped ones included), for a progress bar.
        """
        if batch_rows < 1:
            raise ValidationError("batch_rows", "must be at least 1")
        resumed_after, seen = await self._prepare(ctx, import_id)
        batch = _Batch(first_row=resumed_after + 1)
        totals = {"rows": 0, "stored": 0, "rejected": 0, "duplicates": 0}
        row_number = 0
        reported = 0

        def tick() -> None:
            nonlocal reported
            if progress is not None and row_number > reported:
                progress(row_number - reported)
            reported = row_number

        base = self._base
        now = base.clock.now()
        for row_number, values in enumerate(rows, start=1):
            if row_number <= resumed_after:
                if row_number % batch_rows == 0:
                    tick()
                continue
            totals["rows"] += 1
            try:
                contact = contact_from_row(
                    columns.apply(values),
                    tenant_id=ctx.tenant_id,
                    contact_id=base.ids.new_id(),
                    now=now,
                )
            except ValidationError as exc:
                totals["rejected"] += 1
                batch.refuse(row_number, exc.field, exc.reason, values)
            else:
                keys = duplicate_keys(contact)
                matched = next((key for key in keys if key in seen), None)
                if matched is not None:
                    totals["duplicates"] += 1
                    field = matched.split(":", 1)[0]
                    batch.refuse(row_number, field, f"duplicate of {seen[matched]}", values)
                else:
                    for key in keys:
                        seen[key] = f"row {row_number}"
                    batch.contacts.append(contact)
            if row_number - batch.first_row + 1 >= batch_rows:
                totals["stored"] += await self._flush(
                    ctx, import_id, batch, row_number, dry_run, rejections
                )
                tick()
                batch = _Batch(first_row=row_number + 1)
        if row_number >= batch.first_row:
            totals["stored"] += await self._flush(
                ctx, import_id, batch, row_number, dry_run, rejections
            )
        tick()
        return ImportSummary(
            import_id=import_id,
            resumed_after=resumed_after,
            dry_run=dry_run,
            **totals,
        )

    async def _prepare(self, ctx: Context, import_id: str) -> tuple[int, dict[str, str]]:
        """The checkpoint and the duplicate keys of every contact stored at the location."""
        async with self._reading(ctx, import_id) as call:
            last = await _committed_through(call.uow, import_id)
            seen: dict[str, str] = {}
            query = ContactQuery(limit=MAX_LIMIT)
            stored = 0
            while True:
                page = await call.uow.contacts.list(query)
                for contact in page.items:
                    stored += 1
                    for key in duplicate_keys(contact):
                        seen.setdefault(key, f"contact {contact.id}")
                if page.next_cursor is None:
                    break
                query = attrs.evolve(query, cursor=page.next_cursor)
            call.detail = f"prepared: resume after row {last}; {stored} contacts to dedupe against"
            return last, seen

    async def _flush(
        self,
        ctx: Context,
        import_id: str,
        batch: _Batch,
        last_row: int,
        dry_run: bool,
        rejections: RejectionSink | None,
    ) -> int:
        # Rejections are written before the commit: a crash between the two
        # leaves report lines past the checkpoint, which the next run replaces.
        if rejections is not None and batch.rejections:
            rejections.write(batch.rejections)
        if dry_run:
            return len(batch.contacts)
        async with self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type=IMPORT_RESOURCE,
            resource_id=import_id,
            write=True,
        ) as call:
            if batch.contacts:
                await call.uow.contacts.add_many(batch.contacts)
            call.detail = (
                f"rows {batch.first_row}-{last_row}: {len(batch.contacts)} stored, "
                f"{len(batch.rejections)} refused"
            )
            await call.emit(
                EventName.CONTACTS_IMPORTED,
                IMPORT_RESOURCE,
                import_id,
                {
                    "import_id": import_id,
                    "first_row": batch.first_row,
                    "last_row": last_row,
                    "stored": len(batch.contacts),
                },
            )
        return len(batch.contacts)


@attrs.define
class _Batch:
    first_row: int
    contacts: list[Contact] = attrs.Factory(list)
    rejections: list[Rejection] = attrs.Factory(list)

    def refuse(self, row: int, field: str, reason: str, values: Sequence[str]) -> None:
        self.rejections.append(Rejection(row=row, field=field, reason=reason, values=tuple(values)))


async def _committed_through(uow: UnitOfWork, import_id: str) -> int:
    """The last row of ``import_id`` whose batch committed, from its audit entries."""
    query = AuditQuery(
        resource_type=IMPORT_RESOURCE,
        resource_id=import_id,
        action=AuditAction.CREATE.value,
        outcome=AuditOutcome.SUCCESS.value,
        limit=MAX_LIMIT,
    )
    last = 0
    for entry in await every(uow.audit.list, query):
        matched = _ROWS.match(entry.detail or "")
        if matched is not None:
            last = max(last, int(matched.group(2)))
    return last


__all__ = [
    "DEFAULT_BATCH_ROWS",
    "IMPORT_RESOURCE",
    "ContactImportService",
    "ImportSummary",
    "Rejection",
    "RejectionSink",
]
