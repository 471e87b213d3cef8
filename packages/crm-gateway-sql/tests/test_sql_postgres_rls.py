"""PostgreSQL row-level security: a query that forgets the tenant filter sees one location."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
import sqlalchemy as sa
from crm_domain.errors import PermissionDenied

from crm_gateway_sql import schema
from crm_gateway_sql.gateway import SqlGateway
from crm_gateway_sql.statements import Statement

from .conftest import asyncpg_dsn, seed_two_locations

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _unfiltered(table: sa.Table) -> Statement:
    """A statement that forgets the tenant filter, as a buggy repository would."""
    return Statement(("test-unfiltered", table.name), sa.select(table), {})


async def test_a_query_without_tenant_filter_sees_only_the_bound_location(
    pg_gateway: SqlGateway,
) -> None:
    await seed_two_locations(pg_gateway)
    async with pg_gateway.unit_of_work("A") as uow:
        rows = await uow.session.fetch(_unfiltered(schema.contacts))
        audit = await uow.session.fetch(_unfiltered(schema.hipaa_audit_log))
        events = await uow.session.fetch(_unfiltered(schema.outbox))
    assert sorted(r["id"] for r in rows) == ["A0", "A1", "A2"]
    assert [r["id"] for r in audit] == ["audit-A"]
    assert [r["event_id"] for r in events] == ["ev-A"]


async def test_a_unit_of_work_without_location_sees_no_tenant_rows(pg_gateway: SqlGateway) -> None:
    await seed_two_locations(pg_gateway)
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
    await seed_two_locations(pg_gateway)
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
    await seed_two_locations(pg_gateway)
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
