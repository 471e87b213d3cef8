"""Exports: ``GET /api/contacts/{id}/record`` (right of access) and ``GET /api/exports/contacts``.

The record is JSON, or a printable HTML page with ``?format=html``.  The bulk
export is streamed page by page as CSV or JSON lines (``?format=jsonl``):
the whole location is never held in memory, and no transaction stays open
while a client downloads.  Both go through
:class:`~crm_domain.services.exports.ContactExportService`, which checks the
permission and writes the audit entry before the first byte is sent.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Any, Literal

import msgspec
from crm_domain.entities import Contact, ContactSource, ContactStatus
from crm_domain.queries import ContactQuery
from crm_domain.services.exports import ContactExportService, ContactRecord
from litestar import Response, Router, get
from litestar.openapi.spec import Operation
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from crm_http_litestar.routes._common import before_service
from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes._docs import LIST_ERRORS, READ_ONE_ERRORS, permission_doc, responses
from crm_http_litestar.routes._query import Instant, Text, strict_query
from crm_http_litestar.schemas import BookingOut, ContactOut, TaskOut, TouchpointOut, out


class SmsMessageOut(msgspec.Struct):
    """An SMS message as a patient's record shows it."""

    id: str
    direction: str
    from_number: str
    to_number: str
    body: str
    status: str
    booking_id: str | None
    created_at: datetime
    sent_at: datetime | None


class ContactRecordOut(msgspec.Struct):
    """Everything the location holds about one contact."""

    contact: ContactOut
    touchpoints: list[TouchpointOut]
    bookings: list[BookingOut]
    tasks: list[TaskOut]
    messages: list[SmsMessageOut]
    exported_at: datetime


def _also(media_type: str, description: str) -> type[Operation]:
    """An operation whose 200 may also be ``media_type`` (chosen by ``format``)."""

    class _Also(Operation):
        def to_schema(self) -> dict[str, Any]:
            schema = super().to_schema()
            content = schema["responses"]["200"]["content"]
            content[media_type] = {"schema": {"type": "string", "description": description}}
            return schema

    return _Also


#: Columns of the CSV export, in order (the contact fields of the API).
CSV_COLUMNS: tuple[str, ...] = tuple(ContactOut.__struct_fields__)


def _exporter(crm: CrmDep) -> ContactExportService:
    return ContactExportService.of(crm.services)


def record_out(record: ContactRecord) -> ContactRecordOut:
    """The HTTP shape of a contact's record."""
    return ContactRecordOut(
        contact=out(record.contact, ContactOut),
        touchpoints=[out(t, TouchpointOut) for t in record.touchpoints],
        bookings=[out(b, BookingOut) for b in record.bookings],
        tasks=[out(t, TaskOut) for t in record.tasks],
        messages=[out(m, SmsMessageOut) for m in record.messages],
        exported_at=record.exported_at,
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, list):
        return "; ".join(str(item) for item in value)
    return str(value)


def _section(title: str, rows: Sequence[msgspec.Struct]) -> str:
    if not rows:
        return f"<h2>{html.escape(title)}</h2><p>None.</p>"
    fields = type(rows[0]).__struct_fields__
    head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(getattr(r, f)))}</td>" for f in fields) + "</tr>"
        for r in rows
    )
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def record_html(record: ContactRecordOut) -> str:
    """A printable page of the record (every value HTML-escaped)."""
    contact = record.contact
    name = html.escape(f"{contact.first_name} {contact.last_name}".strip() or contact.id)
    facts = "".join(
        f"<tr><th>{html.escape(f)}</th><td>{html.escape(_cell(getattr(contact, f)))}</td></tr>"
        for f in contact.__struct_fields__
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Record of {name}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px;text-align:left}</style></head><body>"
        f"<h1>Record of {name}</h1><p>Exported {record.exported_at.isoformat()}</p>"
        f"<h2>Contact and consents</h2><table>{facts}</table>"
        + _section("Touchpoints", record.touchpoints)
        + _section("Bookings", record.bookings)
        + _section("Tasks", record.tasks)
        + _section("SMS messages", record.messages)
        + "</body></html>"
    )


@get(
    "/api/contacts/{id:str}/record",
    opt={"permission": "contacts:read"},
    summary="Export one contact's full record (right of access)",
    description=permission_doc(
        "contacts:read",
        "The contact with its consents, touchpoints, bookings, tasks and SMS messages; "
        "`format=html` for a printable page. Audited as a READ of `contact_record`.",
    ),
    responses=responses(*READ_ONE_ERRORS),
    operation_class=_also("text/html", "`format=html`: a printable page"),
)
async def contact_record(
    crm: CrmDep, id: FromPath[str], format: FromQuery[Literal["json", "html"]] = "json"
) -> Response[ContactRecordOut] | Response[str]:
    """A patient's data, as JSON or HTML."""
    record = record_out(await crm.pipeline.use_case(_exporter(crm).record(crm.ctx, id)))
    if format == "html":
        return Response(record_html(record), media_type="text/html")
    return Response(record)


def _csv_line(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([_cell(v) for v in values])
    return buffer.getvalue()


async def _encode(
    pages: AsyncIterator[Sequence[Contact]], kind: Literal["csv", "jsonl"]
) -> AsyncIterator[bytes]:
    encoder = msgspec.json.Encoder()
    if kind == "csv":
        yield _csv_line(CSV_COLUMNS).encode()
    async for page in pages:
        shown = [out(contact, ContactOut) for contact in page]
        if kind == "csv":
            yield "".join(
                _csv_line([getattr(c, name) for name in CSV_COLUMNS]) for c in shown
            ).encode()
        else:
            yield b"".join(encoder.encode(c) + b"\n" for c in shown)


@get(
    "/api/exports/contacts",
    opt={"permission": "contacts:export"},
    summary="Export the location's contacts (CSV or JSON lines, streamed)",
    description=permission_doc(
        "contacts:export",
        "Every contact of the location matching the filters, newest first, streamed; "
        "`format=jsonl` for one JSON object per line. Audited once, with the count, "
        "before the first byte.",
    ),
    responses=responses(*LIST_ERRORS),
    media_type="text/csv",
    operation_class=_also("application/x-ndjson", "`format=jsonl`: one contact per line"),
)
async def export_contacts(
    crm: CrmDep,
    format: FromQuery[Literal["csv", "jsonl"]] = "csv",
    status: FromQuery[ContactStatus | None] = None,
    source: FromQuery[ContactSource | None] = None,
    tag: Text = None,
    created_from: Instant = None,
    created_to: Instant = None,
) -> Stream:
    """All matching contacts as a download."""
    pipeline = crm.pipeline
    query = before_service(
        pipeline,
        lambda: ContactQuery(
            status=status,
            source=source,
            tag=tag,
            created_from=created_from,
            created_to=created_to,
        ),
    )
    pages = await pipeline.use_case(_exporter(crm).contacts(crm.ctx, query, export_format=format))
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return Stream(
        _encode(pages, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="contacts.{format}"'},
    )


def exports_router() -> Router:
    """The export routes (paths are absolute: one sits under ``/api/contacts``)."""
    return Router(
        path="/",
        route_handlers=[contact_record, export_contacts],
        tags=["exports"],
        before_request=strict_query,
    )


__all__ = ["ContactRecordOut", "exports_router", "record_html", "record_out"]
