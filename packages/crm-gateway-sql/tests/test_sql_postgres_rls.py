"""PostgreSQL row-level security: a query that forgets the tenant filter sees one location."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
import sqlalchemy as sa
from crm_domain.entities import AuditEntry, Contact, DomainEvent, Location
from crm_domain.errors import PermissionDenied

from crm_gateway_sql import schema
from crm_gateway_sql.gateway import SqlGateway
from crm_gateway_sql.statements import Statement

from .conftest import asyncpg_dsn

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def _seed(gateway: SqlGateway) -> None:
    async with gateway.unit_of_work() as uow:
        for code in ("a", "b"):
            await uow.locations.add(
                Location(id=code.upper(), code=code, name=code, timezone="UTC", created_at=NOW)
            )
        await uow.commit()
    for tenant in ("A", "B"):
        async with gateway.unit_of_work(tenant) as uow:
            for i in range(3):
                await uow.contacts.add(
                    Contact(
                        id=f"{tenant}{i}",
                        tenant_id=tenant,
                        first_name="Pat",
                        email=f"{tenant.lower()}{i}@example.com",
                        created_at=NOW,
                        updated_at=NOW,
                    )
                )
            await uow.audit.append(
                AuditEntry(
                    id=f"audit-{tenant}",
                    tenant_id=tenant,
                    action="READ",
                    resource_type="contact",
                    occurred_at=NOW,
                )
            )
            await uow.outbox.add(
                DomainEvent(
                    id=f"ev-{tenant}",
                    tenant_id=tenant,
                    name="ContactCreated",
                    aggregate_type="contact",
                    aggregate_id=f"{tenant}0",
                    occurred_at=NOW,
                )
            )
            await uow.commit()


def _unfiltered(table: sa.Table) -> Statement:
    """A statement that forgets the tenant filter, as a buggy repository would."""
    return Statement(("test-unfiltered", table.name), sa.select(table), {})


async def test_a_query_without_tenant_filter_sees_only_the_bound_location(
    pg_gateway: SqlGateway,
) -> None:
    await _seed(pg_gateway)
    async with pg_gateway.unit_of_work("A") as uow:
        rows = await uow.session.fetch(_unfiltered(schema.contacts))
        audit = await uow.session.fetch(_unfiltered(schema.hipaa_audit_log))
        events = await uow.session.fetch(_unfiltered(schema.outbox))
    assert sorted(r["id"] for r in rows) == ["A0", "A1", "A2"]
    assert [r["id"] for r in audit] == ["audit-A"]
    assert [r["event_id"] for r in events] == ["ev-A"]


async def test_a_unit_of_work_without_location_sees_no_tenant_rows(pg_gateway: SqlGateway) -> None:
    await _seed(pg_gateway)
    async with pg_gateway.unit_of_work() as uow:
        contacts = await uow.session.fetch(_unfiltered(schema.contacts))
        audit = await uow.session.fetch(_unfiltered(schema.hipaa_audit_log))
        # ... but the outbox consumer (system scope) reaches every location's events.
        events = await uow.session.fetch(_unfiltered(schema.outbox))
    assert contacts == []
    assert audit == []
    assert sorted(r["event_id"] for r in events) == ["ev-A", "ev-B"]


async def test_the_app_role_with_no_tenant_set_fails_closed(
    pg_gateway: SqlGateway, postgres_database: str
) -> None:
    await _seed(pg_gateway)
    conn = await asyncpg.connect(asyncpg_dsn(postgres_database))
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE crm_app")
            assert await conn.fetchval("SELECT count(*) FROM contacts") == 0
            assert await conn.fetchval("SELECT count(*) FROM hipaa_audit_log") == 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    "INSERT INTO contacts (id, tenant_id, first_name, last_name, source, status,"
                    " warmness, warmness_reasons, tags, email_opt_in, sms_opt_in, created_at,"
                    " updated_at) VALUES ('X', 'A', 'x', '', 'other', 'new', 0, '[]', '[]',"
                    " false, false, 0, 0)"
                )
        # The app role may not rewrite history even with the tenant set.
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE crm_app")
            await conn.execute("SELECT set_config('crm.tenant_id', 'A', true)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("UPDATE hipaa_audit_log SET detail = 'x'")
        # The superuser is stopped by the append-only trigger.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM hipaa_audit_log")
        # Seen as the superuser (no RLS), both locations' rows are there.
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 6
    finally:
        await conn.close()


async def test_writing_another_locations_row_is_refused_by_the_policy(
    pg_gateway: SqlGateway,
) -> None:
    await _seed(pg_gateway)
    row = {
        "id": "B9",
        "tenant_id": "B",
        "first_name": "Eve",
        "last_name": "",
        "source": "other",
        "status": "new",
        "warmness": 0,
        "warmness_reasons": "[]",
        "tags": "[]",
        "email_opt_in": False,
        "sms_opt_in": False,
        "created_at": 0,
        "updated_at": 0,
    }
    statement = Statement(("test-insert",), schema.contacts.insert(), row, write=True)
    async with pg_gateway.unit_of_work("A") as uow:
        # An insert that bypasses the repository's owner check is still refused.
        with pytest.raises(PermissionDenied, match="row-level security"):
            await uow.session.execute(statement)
