"""Bulk contact import: validate raw rows, report the bad ones, store the good ones fast.

Rows are plain mappings (a CSV reader's dicts, a JSON array).  Each valid row
becomes a :class:`~crm_domain.entities.Contact` (email and phone normalised);
an invalid row is reported with its index, the offending field and why, and is
never stored.  Valid contacts are stored with ``contacts.add_many`` — COPY on
PostgreSQL, one prepared ``executemany`` on SQLite — in batches, each batch
all or nothing in its own unit of work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import attrs
from crm_domain.entities import Contact, ContactSource
from crm_domain.errors import ValidationError
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.values import parse_email, parse_phone

#: Columns an import row may carry.
COLUMNS = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "phone",
        "source",
        "status",
        "warmness",
        "tags",
        "email_opt_in",
        "sms_opt_in",
        "service_interest",
        "date_of_birth",
        "notes",
    }
)
_TRUE = frozenset({"1", "true", "yes", "y", "on"})
_FALSE = frozenset({"", "0", "false", "no", "n", "off"})


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


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _flag(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValidationError(field, f"{value!r} is not yes/no")


def _int(value: Any, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValidationError(field, f"{value!r} is not a whole number") from None


def contact_from_row(
    row: Mapping[str, Any], *, tenant_id: str, contact_id: str, now: datetime
) -> Contact:
    """One raw row as a valid contact, or ``ValidationError`` naming the field."""
    unknown = sorted(set(row) - COLUMNS)
    if unknown:
        raise ValidationError(unknown[0], "is not an import column")
    email = _text(row.get("email"))
    phone = _text(row.get("phone"))
    tags = row.get("tags") or ()
    if isinstance(tags, str):
        tags = tags.replace(";", ",").split(",")
    dob = _text(row.get("date_of_birth"))
    try:
        birth = date.fromisoformat(dob) if dob else None
    except ValueError:
        raise ValidationError("date_of_birth", f"{dob!r} is not YYYY-MM-DD") from None
    fields: dict[str, Any] = {
        "id": contact_id,
        "tenant_id": tenant_id,
        "first_name": _text(row.get("first_name")) or "",
        "last_name": _text(row.get("last_name")) or "",
        "email": None if email is None else parse_email(email),
        "phone": None if phone is None else parse_phone(phone),
        "source": _text(row.get("source")) or ContactSource.IMPORT,
        "tags": tags,
        "email_opt_in": _flag(row.get("email_opt_in"), "email_opt_in"),
        "sms_opt_in": _flag(row.get("sms_opt_in"), "sms_opt_in"),
        "service_interest": _text(row.get("service_interest")),
        "date_of_birth": birth,
        "notes": _text(row.get("notes")),
        "created_at": now,
        "updated_at": now,
    }
    if _text(row.get("status")):
        fields["status"] = _text(row.get("status"))
    if row.get("warmness") not in (None, ""):
        fields["warmness"] = _int(row.get("warmness"), "warmness")
    if fields["email_opt_in"] or fields["sms_opt_in"]:
        fields["consent_updated_at"] = now
    return Contact(**fields)


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
