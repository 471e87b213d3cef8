"""ContactImportService on the in-memory gateway: what is stored, refused, audited, resumed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from crm_domain.entities import Role
from crm_domain.errors import PermissionDenied, ValidationError
from crm_domain.importing import ColumnMap, fingerprint
from crm_domain.queries import ContactQuery
from crm_domain.services import ContactImportService, Rejection
from crm_domain.services.imports import IMPORT_RESOURCE

pytestmark = pytest.mark.anyio

HEADER = ("First Name", "Last Name", "E-mail", "Mobile")
MAPPING = {"E-mail": "email", "Mobile": "phone"}


class Collected:
    """A rejection sink that keeps what it is given."""

    def __init__(self) -> None:
        self.items: list[Rejection] = []

    def write(self, rejections: Sequence[Rejection]) -> None:
        self.items.extend(rejections)


class Interrupted(Exception):
    """Stands for Ctrl-C or a lost connection in the middle of a file."""


def importer(world: Any) -> ContactImportService:
    return ContactImportService.of(world.services)


def sheet(count: int) -> list[list[str]]:
    """``count`` rows: every 10th invalid (bad email), every 10th (+5) a repeat of row 1's phone."""
    rows = []
    for i in range(1, count + 1):
        email = f"patient{i}@example.com"
        phone = f"+6141{i:07d}"
        if i % 10 == 0:
            email = f"patient{i}-at-example.com"
        if i % 10 == 5:
            email, phone = "", "+61410000001"
        rows.append([f"P{i}", "Ng", email, phone])
    return rows


def until(rows: list[list[str]], stop: int) -> Iterator[list[str]]:
    """The rows, interrupted after ``stop`` of them."""
    for index, row in enumerate(rows):
        if index == stop:
            raise Interrupted
        yield row


async def stored(world: Any) -> list[Any]:
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        contacts = []
        query = ContactQuery(limit=200)
        while True:
            page = await uow.contacts.list(query)
            contacts.extend(page.items)
            if page.next_cursor is None:
                return contacts
            query = ContactQuery(limit=200, cursor=page.next_cursor)


async def test_import_stores_valid_rows_refuses_the_rest_and_audits_each_batch(world: Any) -> None:
    await world.new_contact(email="patient3@example.com", phone=None)
    sink = Collected()
    summary = await importer(world).run(
        world.ctx(Role.ADMIN),
        sheet(40),
        ColumnMap.for_header(HEADER, MAPPING),
        import_id="file-a",
        batch_rows=16,
        rejections=sink,
    )
    # 40 rows: 4 invalid (10, 20, 30, 40), 4 repeats of row 1's phone (5, 15, 25, 35),
    # and row 3 already stored by email.
    assert (summary.rows, summary.rejected, summary.duplicates, summary.stored) == (40, 4, 5, 31)
    refused = {item.row: (item.field, item.reason) for item in sink.items}
    assert refused[10][0] == "email"
    assert refused[5] == ("phone", "duplicate of row 1")
    assert refused[3][0] == "email" and refused[3][1].startswith("duplicate of contact ")
    assert sink.items[0].values == ("P3", "Ng", "patient3@example.com", "+61410000003")
    contacts = await stored(world)
    assert len(contacts) == 32
    assert len({c.phone for c in contacts}) == 32
    assert {c.email for c in contacts} >= {"patient1@example.com", "patient39@example.com"}
    batches = [e for e in await world.audit() if e.resource_type == IMPORT_RESOURCE]
    assert [e.detail for e in batches if e.action == "CREATE"] == [
        "rows 1-16: 12 stored, 4 refused",
        "rows 17-32: 13 stored, 3 refused",
        "rows 33-40: 6 stored, 2 refused",
    ]
    events = await world.events("ContactsImported")
    assert [e.payload["stored"] for e in events] == [12, 13, 6]


async def test_an_interrupted_import_resumes_without_duplicates(world: Any) -> None:
    rows = sheet(100)
    columns = ColumnMap.for_header(HEADER, MAPPING)
    service = importer(world)
    first = Collected()
    with pytest.raises(Interrupted):
        await service.run(
            world.ctx(), until(rows, 57), columns, import_id="f", batch_rows=20, rejections=first
        )
    # Rows 1-40 committed in two batches; 41-57 were read but never stored.
    assert len(await stored(world)) == 2 * (20 - 2 - 2)
    assert await service.checkpoint(world.ctx(), "f") == 40

    second = Collected()
    progress: list[int] = []
    summary = await service.run(
        world.ctx(),
        rows,
        columns,
        import_id="f",
        batch_rows=20,
        rejections=second,
        progress=progress.append,
    )
    assert summary.resumed_after == 40
    assert summary.rows == 60
    assert sum(progress) == 100
    contacts = await stored(world)
    # The whole file once: 100 rows less 10 invalid and 10 repeats of row 1's phone.
    assert len(contacts) == 80
    assert len({c.email for c in contacts if c.email}) == len([c for c in contacts if c.email])
    assert min(item.row for item in second.items) > 40
    # Run again: nothing more.
    again = await service.run(world.ctx(), rows, columns, import_id="f", batch_rows=20)
    assert (again.rows, again.stored) == (0, 0)
    assert len(await stored(world)) == 80


async def test_a_dry_run_stores_nothing_and_reports_the_same(world: Any) -> None:
    columns = ColumnMap.for_header(HEADER, MAPPING)
    sink = Collected()
    summary = await importer(world).run(
        world.ctx(), sheet(30), columns, import_id="d", dry_run=True, rejections=sink
    )
    assert (summary.stored, summary.rejected, summary.duplicates) == (24, 3, 3)
    assert len(sink.items) == 6
    assert await stored(world) == []
    assert await world.events("ContactsImported") == []


async def test_a_readonly_user_may_not_import_and_is_audited(world: Any) -> None:
    with pytest.raises(PermissionDenied):
        await importer(world).run(
            world.ctx(Role.READONLY),
            sheet(3),
            ColumnMap.for_header(HEADER, MAPPING),
            import_id="r",
        )
    assert await stored(world) == []
    (entry,) = [e for e in await world.audit() if e.resource_type == IMPORT_RESOURCE]
    assert entry.outcome == "denied"


async def test_imports_stay_in_their_location(world: Any) -> None:
    columns = ColumnMap.for_header(HEADER, MAPPING)
    await importer(world).run(world.ctx(), sheet(10), columns, import_id="s")
    # The same people at another location are not duplicates there.
    summary = await importer(world).run(
        world.ctx(location=world.melbourne), sheet(10), columns, import_id="m"
    )
    assert summary.stored == 8
    assert len(await stored(world)) == 8


@pytest.mark.parametrize(
    ("header", "mapping", "field"),
    [
        (("Name", "email"), {}, "Name"),
        (("email",), {"Mail": "email"}, "Mail"),
        (("Mail",), {"Mail": "birthday"}, "Mail"),
        (("email", "E-mail"), {"E-mail": "email"}, "E-mail"),
        (("Fax",), {"Fax": ""}, "header"),
    ],
)
def test_a_header_that_cannot_be_mapped_names_the_column(
    header: tuple[str, ...], mapping: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        ColumnMap.for_header(header, mapping)
    assert caught.value.field == field


def test_column_names_match_fields_loosely_and_short_rows_are_padded() -> None:
    columns = ColumnMap.for_header(("First Name", "last-name", "Notes", "Fax"), {"Fax": ""})
    assert columns.apply(["Ann", "Lee"]) == {"first_name": "Ann", "last_name": "Lee", "notes": ""}


def test_the_fingerprint_names_file_location_and_mapping() -> None:
    one = fingerprint([b"a,b\n", b"1,2\n"], tenant_id="t", mapping={"a": "email"})
    assert one == fingerprint([b"a,b\n1,2\n"], tenant_id="t", mapping={"a": "email"})
    assert one != fingerprint([b"a,b\n1,3\n"], tenant_id="t", mapping={"a": "email"})
    assert one != fingerprint([b"a,b\n1,2\n"], tenant_id="u", mapping={"a": "email"})
    assert one != fingerprint([b"a,b\n1,2\n"], tenant_id="t", mapping={"a": "phone"})
