"""A database that is down, unreachable, locked or slow gives ``Unavailable``."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from crm_domain.entities import Location
from crm_domain.errors import Unavailable
from crm_domain.queries import ContactQuery, LocationQuery

from crm_gateway_sql.gateway import SqlGateway, create_gateway
from crm_gateway_sql.statements import Statement

from .conftest import asyncpg_dsn, postgres_url

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, tzinfo=UTC)


async def test_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    gateway = create_gateway(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'crm.db'}")
    with pytest.raises(Unavailable, match="unable to open"):
        async with gateway.unit_of_work() as uow:
            await uow.locations.list(LocationQuery())
    with pytest.raises(Unavailable):
        await gateway.migrate()
    await gateway.close()


async def test_sqlite_locked_past_the_busy_timeout(
    sqlite_gateway: SqlGateway, tmp_path: Path
) -> None:
    db = sqlite_gateway.sqlite_database
    assert db is not None
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        gateway = create_gateway(f"sqlite+aiosqlite:///{db.path}", busy_timeout=0.2)
        with pytest.raises(Unavailable, match="locked"):
            async with gateway.unit_of_work() as uow:
                await uow.locations.add(
                    Location(id="A", code="a", name="A", timezone="UTC", created_at=NOW)
                )
        await gateway.close()
    finally:
        other.execute("ROLLBACK")
        other.close()
    # Once the lock is gone, the same gateway works again.
    async with sqlite_gateway.unit_of_work() as uow:
        await uow.locations.add(
            Location(id="A", code="a", name="A", timezone="UTC", created_at=NOW)
        )
        await uow.commit()


async def test_postgres_on_a_closed_port() -> None:
    url = sa.make_url(postgres_url()).set(port=1).render_as_string(hide_password=False)
    gateway = create_gateway(url, connect_timeout=2)
    with pytest.raises(Unavailable):
        async with gateway.unit_of_work() as uow:
            await uow.locations.list(LocationQuery())
    with pytest.raises(Unavailable):
        await gateway.migrate()
    await gateway.close()


@pytest.mark.postgres
async def test_postgres_connection_terminated_mid_unit_of_work(
    pg_gateway: SqlGateway, postgres_database: str
) -> None:
    async with pg_gateway.unit_of_work() as uow:
        await uow.locations.add(
            Location(id="A", code="a", name="A", timezone="UTC", created_at=NOW)
        )
        await uow.commit()
    admin = await asyncpg.connect(asyncpg_dsn(postgres_database))
    try:
        async with pg_gateway.unit_of_work("A") as uow:
            await uow.contacts.count(ContactQuery())
            # The DBA (or a failover) kills every other session of this database.
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                postgres_database,
            )
            assert killed >= 1
            with pytest.raises(Unavailable):
                await uow.contacts.count(ContactQuery())
    finally:
        await admin.close()
    # The pool notices the dead connection; the next unit of work gets a new one.
    async with pg_gateway.unit_of_work("A") as uow:
        assert await uow.contacts.count(ContactQuery()) == 0


@pytest.mark.postgres
async def test_postgres_statement_timeout(postgres_database: str) -> None:
    gateway = create_gateway(postgres_url(postgres_database), command_timeout=0.3)
    try:
        with pytest.raises(Unavailable):
            async with gateway.unit_of_work() as uow:
                await uow.session.fetch(
                    Statement(("test-sleep",), sa.text("SELECT pg_sleep(2)"), {})
                )
    finally:
        await gateway.close()
