"""Bulk contact import: validate raw rows, report the bad ones, store the good ones fast.

Rows are plain mappings (a CSV reader's dicts, a JSON array).  Each valid row
becomes a :class:`~crm_domain.entities.Contact` (email and phone normalised);
an invalid row is reported with its index, the offending field and why, and is
never stored (the row rules are the domain's, :mod:`crm_domain.importing`;
the import use case with dedupe, resume and audit is
:class:`crm_domain.services.imports.ContactImportService`).  Valid contacts
are stored with ``contacts.add_many`` — COPY on PostgreSQL, one prepared
``executemany`` on SQLite — in batches, each batch all or nothing in its own
unit of work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs
from crm_domain.entities import Contact
from crm_domain.errors import ValidationError
from crm_domain.importing import COLUMNS, contact_from_row
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway


@attrs.frozen(slots=True, kw_only=True)
class RowError:
    """Why row number ``row`` (0-based) was not imported."""

    row: int
    field: str
    message: str


@attrs.frozen(slots=True, kw_only=True)
class ImportReport:
    """What an import stored and what it refused."""

    imported: int
    errors: tuple[RowError, ...]


def validate_rows(
    rows: Iterable[Mapping[str, Any]], *, tenant_id: str, ids: IdFactory, now: datetime
) -> tuple[list[Contact], list[RowError]]:
    """Split raw rows into valid contacts and per-row errors (nothing is stored)."""
    contacts: list[Contact] = []
    errors: list[RowError] = []
    for index, row in enumerate(rows):
        try:
            contacts.append(
                contact_from_row(row, tenant_id=tenant_id, contact_id=ids.new_id(), now=now)
            )
        except ValidationError as exc:
            errors.append(RowError(row=index, field=exc.field, message=exc.reason))
    return contacts, errors


async def import_contacts(
    gateway: DatabaseGateway,
    tenant_id: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    ids: IdFactory,
    clock: Clock,
    batch_size: int = 5000,
) -> ImportReport:
    """Validate ``rows`` and store the valid ones in all-or-nothing batches."""
    contacts, errors = validate_rows(rows, tenant_id=tenant_id, ids=ids, now=clock.now())
    for start in range(0, len(contacts), batch_size):
        batch: Sequence[Contact] = contacts[start : start + batch_size]
        async with gateway.unit_of_work(tenant_id) as uow:
            await uow.contacts.add_many(batch)
            await uow.commit()
    return ImportReport(imported=len(contacts), errors=tuple(errors))


__all__ = [
    "COLUMNS",
    "ImportReport",
    "RowError",
    "contact_from_row",
    "import_contacts",
    "validate_rows",
]
