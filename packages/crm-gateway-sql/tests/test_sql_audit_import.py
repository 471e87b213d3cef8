"""Audit tampering is detected; bulk import is fast-pathed, atomic and reports bad rows."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import asyncpg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from crm_domain.clock import FixedClock, UlidFactory
from crm_domain.entities import AuditEntry, Contact, Location
from crm_domain.errors import Conflict
from crm_domain.queries import ContactQuery

from crm_gateway_sql import schema
from crm_gateway_sql.audit import verify, verify_all
from crm_gateway_sql.gateway import SqlGateway, create_gateway
from crm_gateway_sql.importing import import_contacts, validate_rows

from .conftest import asyncpg_dsn

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def _location(gateway: SqlGateway, tenant: str = "A") -> None:
    async with gateway.unit_of_work() as uow:
        await uow.locations.add(
            Location(id=tenant, code=tenant.lower(), name=tenant, timezone="UTC", created_at=NOW)
        )
        await uow.commit()


async def _audit(gateway: SqlGateway, tenant: str | None, count: int) -> None:
    async with gateway.unit_of_work(tenant) as uow:
        for i in range(count):
            await uow.audit.append(
                AuditEntry(
                    id=f"{tenant or 'sys'}-{i}",
                    tenant_id=tenant,
                    user_id="u1",
                    action="READ",
                    resource_type="contact",
                    resource_id=f"c{i}",
                    occurred_at=NOW + timedelta(seconds=i),
                )
            )
        await uow.commit()


def _contact(i: int, tenant: str = "A", **fields: Any) -> Contact:
    values: dict[str, Any] = {
        "id": f"C{i:07d}",
        "tenant_id": tenant,
        "first_name": f"Pat{i}",
        "email": f"pat{i}@example.com",
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(fields)
    return Contact(**values)


async def test_sqlite_tampering_with_a_row_is_reported(
    sqlite_gateway: SqlGateway,
) -> None:
    await _location(sqlite_gateway)
    await _audit(sqlite_gateway, "A", 5)
    await _audit(sqlite_gateway, None, 2)
    assert await verify_all(sqlite_gateway) is None
    db = sqlite_gateway.sqlite_database
    assert db is not None
    raw = sqlite3.connect(db.path)
    try:
        # The triggers refuse edits and deletes...
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE hipaa_audit_log SET resource_id = 'x' WHERE id = 'A-2'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM hipaa_audit_log WHERE id = 'A-2'")
        # ... so a tamperer with file access drops them first.
        raw.execute("DROP TRIGGER hipaa_audit_log_no_update")
        raw.execute("UPDATE hipaa_audit_log SET resource_id = 'someone-else' WHERE id = 'A-2'")
        raw.commit()
    finally:
        raw.close()
    broken = await verify(sqlite_gateway, "A")
    assert broken is not None
    assert (broken.entry_id, broken.sequence) == ("A-2", 3)
    assert "edited" in broken.reason
    # Read two entries at a time, the break is found across batch boundaries too.
    assert await verify(sqlite_gateway, "A", batch=2) == broken
    assert await verify(sqlite_gateway, None) is None
    assert await verify_all(sqlite_gateway) == broken


@pytest.mark.postgres
async def test_postgres_tampering_as_superuser_is_reported(
    pg_gateway: SqlGateway, postgres_database: str
) -> None:
    await _location(pg_gateway)
    await _audit(pg_gateway, "A", 5)
    assert await verify(pg_gateway, "A") is None
    conn = await asyncpg.connect(asyncpg_dsn(postgres_database))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM hipaa_audit_log WHERE id = 'A-1'")
        # A superuser can switch triggers off for the session and delete an entry.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("DELETE FROM hipaa_audit_log WHERE id = 'A-1'")
    finally:
        await conn.close()
    broken = await verify(pg_gateway, "A")
    assert broken is not None
    assert broken.entry_id == "A-2"
    assert broken.sequence == 2
    assert "deleted or reordered" in broken.reason


async def test_add_many_is_all_or_nothing_and_keeps_the_unit_of_work(
    any_gateway: SqlGateway,
) -> None:
    await _location(any_gateway)
    async with any_gateway.unit_of_work("A") as uow:
        await uow.contacts.add(_contact(5))
        batch = [_contact(i, tags=["vip"]) for i in range(10)]  # C0000005 is a duplicate
        with pytest.raises(Conflict):
            await uow.contacts.add_many(batch)
        assert await uow.contacts.count(ContactQuery()) == 1
        await uow.contacts.add_many([_contact(i) for i in range(100, 1100)])
        await uow.commit()
    async with any_gateway.unit_of_work("A") as uow:
        assert await uow.contacts.count(ContactQuery()) == 1001
        stored = await uow.contacts.get("C0000777")
    assert stored == _contact(777)


async def test_import_reports_bad_rows_and_stores_the_rest(any_gateway: SqlGateway) -> None:
    await _location(any_gateway)
    rows = [
        {"first_name": "Ann", "email": "Ann@Example.com", "tags": "vip; mri", "warmness": "70"},
        {"first_name": "Bob", "email": "not-an-email"},
        {"first_name": "Cat", "phone": "0412 345 678", "sms_opt_in": "yes"},
        {"first_name": "", "email": "dan@example.com"},
        {"first_name": "Eve", "phone": "+61412345679", "warmness": "150"},
        {"first_name": "Fay", "email": "fay@example.com", "favourite_colour": "blue"},
    ]
    clock = FixedClock(NOW)
    contacts, errors = validate_rows(rows, tenant_id="A", ids=UlidFactory(), now=NOW)
    assert [c.first_name for c in contacts] == ["Ann", "Cat"]
    assert [(e.row, e.field) for e in errors] == [
        (1, "email"),
        (3, "first_name"),
        (4, "warmness"),
        (5, "favourite_colour"),
    ]
    report = await import_contacts(any_gateway, "A", rows, ids=UlidFactory(), clock=clock)
    assert report.imported == 2
    assert len(report.errors) == 4
    async with any_gateway.unit_of_work("A") as uow:
        page = await uow.contacts.list(ContactQuery())
        vip = await uow.contacts.count(ContactQuery(tag="mri"))
    assert sorted((c.email or "", c.phone or "") for c in page.items) == [
        ("", "+61412345678"),
        ("ann@example.com", ""),
    ]
    assert vip == 1


async def test_migrations_match_the_metadata_and_are_idempotent(any_gateway: SqlGateway) -> None:
    await any_gateway.migrate()  # a second run is a no-op
    if any_gateway.sqlite_database is not None:
        engine = sa.create_engine(f"sqlite:///{any_gateway.sqlite_database.path}")
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
            head = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        engine.dispose()
    else:
        dsn = any_gateway.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        conn_pg = await asyncpg.connect(dsn)
        try:
            head = await conn_pg.fetchval("SELECT version_num FROM alembic_version")
            rls = await conn_pg.fetch(
                "SELECT relname FROM pg_class WHERE relrowsecurity AND relforcerowsecurity"
            )
        finally:
            await conn_pg.close()
        diff = []
        assert {r["relname"] for r in rls} == {t.name for t in schema.TENANT_TABLES} | {
            "outbox",
            "hipaa_audit_log",
        }
    assert diff == []
    assert head == "0004_suppressions"


async def test_in_memory_url_uses_a_private_file_removed_on_close() -> None:
    gateway = create_gateway("sqlite+aiosqlite://")
    await gateway.migrate()
    db = gateway.sqlite_database
    assert db is not None
    path = db.path
    await _location(gateway)
    async with gateway.unit_of_work("A") as uow:
        await uow.contacts.add(_contact(1))
        await uow.commit()
    await gateway.close()
    assert not await anyio.Path(path).exists()
