"""Contact import rows: column mapping, row validation, duplicate keys, fingerprints.

What an import of a spreadsheet needs before anything is stored, shared by the
import use case (:class:`crm_domain.services.imports.ContactImportService`) and
the SQL gateway's raw bulk import (:mod:`crm_gateway_sql.importing`):

* :class:`ColumnMap` turns a file's header into contact fields (``--map
  "E-mail=email"``), refusing an unknown column up front rather than every row;
* :func:`contact_from_row` turns one mapped row into a valid
  :class:`~crm_domain.entities.Contact` or raises ``ValidationError`` naming
  the field — email and phone normalised (lower-cased email, E.164 phone);
* :func:`duplicate_keys` gives the keys two contacts are the same person by;
* :func:`fingerprint` names one import (file bytes, location, mapping), so an
  interrupted import is found again and resumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import attrs

from crm_domain.entities import Contact, ContactSource
from crm_domain.errors import ValidationError
from crm_domain.values import parse_email, parse_phone

#: Columns an import row may carry (the contact fields an import can set).
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


def duplicate_keys(contact: Contact) -> tuple[str, ...]:
    """The keys that make two contacts of a location the same person.

    The normalised email and the E.164 phone (both already normalised by the
    entity's constructors), prefixed so an email never equals a phone.
    """
    keys: list[str] = []
    if contact.email:
        keys.append(f"email:{contact.email}")
    if contact.phone:
        keys.append(f"phone:{contact.phone}")
    return tuple(keys)


def _header_key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


@attrs.frozen(slots=True, kw_only=True)
class ColumnMap:
    """Which column of a file feeds which contact field.

    Build it with :meth:`for_header`; :meth:`apply` turns one row of values
    (in header order) into a mapping of contact fields.
    """

    #: ``(position in the row, contact field)`` for every column kept.
    fields: tuple[tuple[int, str], ...]
    #: The file's header, as read.
    header: tuple[str, ...]

    @classmethod
    def for_header(cls, header: Sequence[str], mapping: Mapping[str, str]) -> ColumnMap:
        """Map ``header`` to contact fields.

        ``mapping`` names a field for a column (``{"E-mail": "email"}``); an
        empty field ignores the column.  A column not in ``mapping`` is taken
        when its name is a field (case, spaces and dashes aside:
        ``First Name`` is ``first_name``).  ``ValidationError`` names the
        column that is neither, a mapping to an unknown field, a mapped column
        the header lacks, and two columns feeding one field.
        """
        names = [str(name).strip() for name in header]
        missing = sorted(set(mapping) - set(names))
        if missing:
            raise ValidationError(missing[0], "is mapped but not a column of the file")
        fields: list[tuple[int, str]] = []
        taken: dict[str, str] = {}
        for position, name in enumerate(names):
            if name in mapping:
                field = mapping[name].strip()
                if not field:
                    continue
                if field not in COLUMNS:
                    raise ValidationError(
                        name, f"is mapped to {field!r}, which is not a contact field"
                    )
            else:
                field = _header_key(name)
                if field not in COLUMNS:
                    raise ValidationError(
                        name,
                        "is not a contact field: map it with --map "
                        f"'{name}=FIELD' or ignore it with --map '{name}='",
                    )
            if field in taken:
                raise ValidationError(name, f"feeds {field!r}, as column {taken[field]!r} does")
            taken[field] = name
            fields.append((position, field))
        if not fields:
            raise ValidationError("header", "no column maps to a contact field")
        return cls(fields=tuple(fields), header=tuple(names))

    def apply(self, values: Sequence[str]) -> dict[str, str]:
        """The contact fields of one row (missing trailing cells are empty)."""
        width = len(values)
        return {field: values[pos] if pos < width else "" for pos, field in self.fields}


def fingerprint(chunks: Iterable[bytes], *, tenant_id: str, mapping: Mapping[str, str]) -> str:
    """A short stable name for importing these bytes at this location with this mapping.

    The same file imported again with the same mapping has the same
    fingerprint, which is how an interrupted import is resumed; 24 hex
    characters of SHA-256.
    """
    digest = hashlib.sha256()
    digest.update(tenant_id.encode())
    for column, field in sorted(mapping.items()):
        digest.update(b"\0" + column.encode() + b"=" + field.encode())
    digest.update(b"\0\0")
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()[:24]


__all__ = [
    "COLUMNS",
    "ColumnMap",
    "contact_from_row",
    "duplicate_keys",
    "fingerprint",
]
