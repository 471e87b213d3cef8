"""Verifying a chain whose rows were edited in the database to undecodable values.

The rows are edited past the append-only triggers (dropped on SQLite; switched
off by a superuser on PostgreSQL), as someone with database access could.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from crm_domain.audit_chain import UndecodableEntry, verify_stored_chain
from crm_domain.entities import AuditEntry
from crm_domain.queries import AuditQuery

from crm_gateway_sql.audit import verify
from crm_gateway_sql.gateway import SqlGateway, create_gateway

from .conftest import PostgresDatabases, asyncpg_dsn, postgres_url

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Store:
    """A migrated gateway plus raw superuser access to its audit table."""

    def __init__(self, gateway: SqlGateway, engine: str, target: str) -> None:
        self.gateway = gateway
        self.engine = engine
        self.target = target

    async def sql(self, statement: str) -> None:
        """Run one statement on the audit log, past its append-only guards."""
        if self.engine == "sqlite":
            with sqlite3.connect(self.target) as db:
                for (name,) in db.execute(
                    "SELECT name FROM sqlite_master "
                    "WHERE type = 'trigger' AND tbl_name = 'hipaa_audit_log'"
                ).fetchall():
                    db.execute(f'DROP TRIGGER "{name}"')
                db.execute(statement)
            return
        conn = await asyncpg.connect(self.target, timeout=10)
        try:
            await conn.execute("SET session_replication_role = replica")
            await conn.execute(statement)
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Six entries on the system chain, ids e1…e6, on each engine in turn."""
    if request.param == "sqlite":
        path = tmp_path / "crm.db"
        gateway = create_gateway(f"sqlite+aiosqlite:///{path}")
        await gateway.migrate()
        target, drop = str(path), None
    else:
        databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
        name = await databases.create()
        gateway = create_gateway(postgres_url(name), pool_size=2)
        target, drop = asyncpg_dsn(name), name
    try:
        async with gateway.unit_of_work(None) as uow:
            for i in range(1, 7):
                await uow.audit.append(
                    AuditEntry(
                        id=f"e{i}",
                        action="READ",
                        resource_type="contact",
                        occurred_at=NOW + timedelta(seconds=i),
                    )
                )
            await uow.commit()
        yield Store(gateway, request.param, target)
    finally:
        await gateway.close()
        if drop is not None:
            await databases.drop(drop)


async def test_an_undecodable_entry_is_the_break(store: Store) -> None:
    await store.sql("UPDATE hipaa_audit_log SET outcome = 'failure' WHERE id = 'e4'")
    async with store.gateway.unit_of_work(None) as uow:
        with pytest.raises(UndecodableEntry) as raised:
            await uow.audit.chain()
        assert (raised.value.sequence, raised.value.entry_id, raised.value.field) == (
            4,
            "e4",
            "outcome",
        )
        for batch in (1000, 3, 2, 1):  # the bad row first, in the middle or at a page's end
            checked, broken = await verify_stored_chain(uow.audit, None, batch=batch)
            assert broken is not None
            assert (checked, broken.sequence, broken.entry_id) == (3, 4, "e4")
            assert "cannot be decoded (outcome: 'failure'" in broken.reason
    assert (await verify(store.gateway, None, batch=4)) == broken


async def test_an_earlier_edit_is_reported_before_a_later_undecodable_entry(
    store: Store,
) -> None:
    await store.sql("UPDATE hipaa_audit_log SET detail = 'edited' WHERE id = 'e2'")
    await store.sql("UPDATE hipaa_audit_log SET outcome = 'failure' WHERE id = 'e5'")
    broken = await verify(store.gateway, None)
    assert broken is not None
    assert (broken.sequence, broken.entry_id) == (2, "e2")
    assert "edited" in broken.reason


async def test_a_gap_before_an_undecodable_entry_is_reported_first(store: Store) -> None:
    await store.sql("DELETE FROM hipaa_audit_log WHERE id = 'e2'")
    await store.sql("UPDATE hipaa_audit_log SET occurred_at = -99999999999999999 WHERE id = 'e5'")
    for batch in (1000, 4):
        broken = await verify(store.gateway, None, batch=batch)
        assert broken is not None
        assert (broken.sequence, broken.entry_id) == (2, "e3")
        assert "deleted or reordered" in broken.reason
    await store.sql("UPDATE hipaa_audit_log SET outcome = 'x' WHERE id = 'e3'")
    broken = await verify(store.gateway, None)
    assert broken is not None
    assert (broken.sequence, broken.entry_id) == (3, "e3")


async def test_reading_or_extending_past_an_undecodable_entry_names_it(store: Store) -> None:
    await store.sql("UPDATE hipaa_audit_log SET outcome = 'failure' WHERE id = 'e3'")
    async with store.gateway.unit_of_work(None) as uow:
        with pytest.raises(UndecodableEntry) as listed:
            await uow.audit.list(AuditQuery(limit=10))
        assert (listed.value.entry_id, listed.value.field) == ("e3", "outcome")
        with pytest.raises(UndecodableEntry):
            await uow.audit.get("e3")
    # The head edited: the chain cannot be extended, and the append is not half-done.
    await store.sql("UPDATE hipaa_audit_log SET outcome = 'failure' WHERE id = 'e6'")
    entry = AuditEntry(id="e7", action="READ", resource_type="contact", occurred_at=NOW)
    async with store.gateway.unit_of_work(None) as uow:
        with pytest.raises(UndecodableEntry) as appended:
            await uow.audit.append(entry)
    assert appended.value.entry_id == "e6"
    async with store.gateway.unit_of_work(None) as uow:
        assert await uow.audit.count(AuditQuery()) == 6
