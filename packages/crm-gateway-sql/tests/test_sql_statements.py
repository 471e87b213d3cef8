"""Statement construction apart from execution: the contract the D1 gateway relies on."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from crm_domain.entities import Contact, Location
from crm_domain.errors import PermissionDenied
from crm_domain.queries import ContactQuery, encode_cursor
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateTable

from crm_gateway_sql import schema
from crm_gateway_sql import statements as st
from crm_gateway_sql.gateway import SqlGateway
from crm_gateway_sql.mapping import from_row, from_row_validated, to_row

NOW = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def test_every_tenant_statement_is_scoped_in_one_place() -> None:
    statement = st.list_page(schema.contacts, "A", ContactQuery(status="new"))
    assert statement.params[st.TENANT_PARAM] == "A"
    compiled = st.compile_sqlite(statement.clause)
    assert f"contacts.tenant_id = :{st.TENANT_PARAM}" in compiled.sql
    with pytest.raises(PermissionDenied):
        st.get(schema.contacts, None, "c1")
    # Global tables get no tenant condition.
    assert st.TENANT_PARAM not in st.get(schema.locations, None, "L").params


def test_same_shape_same_construct_and_values_stay_parameters() -> None:
    one = st.list_page(schema.contacts, "A", ContactQuery(search="o'brien%", limit=10))
    two = st.list_page(schema.contacts, "B", ContactQuery(search="x", limit=20))
    assert one.key == two.key
    assert one.clause is two.clause
    sql = st.compile_sqlite(one.clause).sql
    assert "brien" not in sql
    assert one.params["f_search"] == "%o'brien\\%%"


def test_qmark_compilation_runs_on_a_plain_driver() -> None:
    """What D1 does: compile with qmark placeholders, send SQL text and a list of values."""
    conn = sqlite3.connect(":memory:")
    for table in (schema.locations, schema.contacts):
        conn.execute(str(CreateTable(table).compile(dialect=sqlite_dialect.dialect())))
    conn.execute("INSERT INTO locations VALUES ('A', 'a', 'A', 'UTC', NULL, 1, '{}', 0)")
    contacts = [
        Contact(
            id=f"c{i}",
            tenant_id="A",
            first_name=f"Zoë {i}",
            email=f"z{i}@example.com",
            tags=["vip"] if i % 2 else [],
            created_at=NOW,
            updated_at=NOW,
        )
        for i in range(5)
    ]
    for contact in contacts:
        insert = st.insert(schema.contacts, to_row(contact))
        compiled = st.compile_sqlite(insert.clause, paramstyle="qmark")
        conn.execute(compiled.sql, compiled.positional_params(insert.params))
    query = ContactQuery(tag="vip", limit=1, cursor=encode_cursor("c4"))
    page = st.list_page(schema.contacts, "A", query)
    compiled = st.compile_sqlite(page.clause, paramstyle="qmark")
    cursor = conn.execute(compiled.sql, compiled.positional_params(page.params))
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    assert [r["id"] for r in rows] == ["c3", "c1"]  # limit + 1 rows: a next page exists
    assert from_row(Contact, rows[0]) == contacts[3]
    assert from_row_validated(Contact, rows[0]) == contacts[3]


def test_rows_keep_the_instant_and_microseconds() -> None:
    contact = Contact(
        id="c1",
        tenant_id="A",
        first_name="Ann",
        phone="+61412345678",
        created_at=NOW,
        updated_at=NOW,
    )
    row = to_row(contact)
    assert row["created_at"] == 1772357415123456
    assert from_row(Contact, row).created_at == NOW


@pytest.mark.anyio
async def test_search_is_case_insensitive_beyond_ascii(any_gateway: SqlGateway) -> None:
    async with any_gateway.unit_of_work() as uow:
        await uow.locations.add(
            Location(id="A", code="a", name="A", timezone="UTC", created_at=NOW)
        )
        await uow.commit()
    async with any_gateway.unit_of_work("A") as uow:
        await uow.contacts.add(
            Contact(
                id="c1",
                tenant_id="A",
                first_name="Zoë",
                last_name="Ödegaard",
                email="zoe@example.com",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        await uow.commit()
    async with any_gateway.unit_of_work("A") as uow:
        assert await uow.contacts.count(ContactQuery(search="ZOË")) == 1
        assert await uow.contacts.count(ContactQuery(search="ödeg")) == 1
        assert await uow.contacts.count(ContactQuery(search="50%")) == 0
