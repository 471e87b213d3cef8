"""Fixtures for the SQL gateway's tests: SQLite files and a private PostgreSQL database.

PostgreSQL: ``CRM_TEST_POSTGRES_URL`` (default
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``) names a server and a
user allowed to create databases and roles.  The session creates
``crm_test_<random>_tpl``, migrates it once, and every test that wants a fresh
database gets a copy (``CREATE DATABASE … TEMPLATE``), dropped afterwards; the
template is dropped at the end of the session.  An unreachable server FAILS
the PostgreSQL tests — never skips them — so CI cannot pass without them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from crm_domain.entities import AuditEntry, Contact, DomainEvent, Location

from crm_gateway_sql.gateway import SqlGateway, create_gateway

SEED_TIME = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def postgres_url(database: str | None = None) -> str:
    """The test server's URL, optionally for another database."""
    url = sa.make_url(os.environ.get("CRM_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def asyncpg_dsn(database: str | None = None) -> str:
    """The same server as a plain ``postgresql://`` DSN for asyncpg."""
    return postgres_url(database).replace("postgresql+asyncpg://", "postgresql://", 1)


async def _admin(sql: str) -> None:
    try:
        conn = await asyncpg.connect(asyncpg_dsn(), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {postgres_url()} is unreachable ({exc}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
            "or set CRM_TEST_POSTGRES_URL"
        )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class PostgresDatabases:
    """Creates databases from the session's migrated template."""

    def __init__(self, template: str) -> None:
        self.template = template
        self._names = itertools.count(1)

    async def create(self) -> str:
        """A new migrated database's name."""
        name = f"{self.template.removesuffix('_tpl')}_{next(self._names)}"
        await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    async def drop(self, name: str) -> None:
        """Drop a database made by :meth:`create`."""
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` on a fresh event loop in a thread (a test's loop may be running)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work()).result()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """The session's template database (created and migrated once, dropped at the end)."""
    template = f"crm_test_{secrets.token_hex(4)}_tpl"

    async def setup() -> None:
        await _admin(f'CREATE DATABASE "{template}"')
        gateway = create_gateway(postgres_url(template))
        try:
            await gateway.migrate()
        finally:
            await gateway.close()

    _run(setup)
    try:
        yield PostgresDatabases(template)
    finally:
        _run(lambda: _admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))


@pytest.fixture
async def postgres_database(postgres_databases: PostgresDatabases) -> AsyncIterator[str]:
    """A fresh migrated database for one test; its name."""
    name = await postgres_databases.create()
    try:
        yield name
    finally:
        await postgres_databases.drop(name)


@pytest.fixture
async def pg_gateway(postgres_database: str) -> AsyncIterator[SqlGateway]:
    """A gateway on a fresh migrated PostgreSQL database (acting as ``crm_app``)."""
    gateway = create_gateway(postgres_url(postgres_database), pool_size=5)
    yield gateway
    await gateway.close()


@pytest.fixture
async def sqlite_gateway(tmp_path: Path) -> AsyncIterator[SqlGateway]:
    """A gateway on a fresh migrated SQLite file."""
    gateway = create_gateway(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    await gateway.migrate()
    yield gateway
    await gateway.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def any_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlGateway]:
    """The gateway on each engine in turn."""
    if request.param == "sqlite":
        gateway = create_gateway(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
        await gateway.migrate()
        yield gateway
        await gateway.close()
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    name = await databases.create()
    gateway = create_gateway(postgres_url(name), pool_size=5)
    try:
        yield gateway
    finally:
        await gateway.close()
        await databases.drop(name)


async def seed_two_locations(gateway: SqlGateway) -> None:
    """Locations ``A``, ``B``: contacts ``A0``–``A2`` / ``B0``–``B2``, an audit entry, an event."""
    async with gateway.unit_of_work() as uow:
        for code in ("a", "b"):
            await uow.locations.add(
                Location(
                    id=code.upper(), code=code, name=code, timezone="UTC", created_at=SEED_TIME
                )
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
                        created_at=SEED_TIME,
                        updated_at=SEED_TIME,
                    )
                )
            await uow.audit.append(
                AuditEntry(
                    id=f"audit-{tenant}",
                    tenant_id=tenant,
                    action="READ",
                    resource_type="contact",
                    occurred_at=SEED_TIME,
                )
            )
            await uow.outbox.add(
                DomainEvent(
                    id=f"ev-{tenant}",
                    tenant_id=tenant,
                    name="ContactCreated",
                    aggregate_type="contact",
                    aggregate_id=f"{tenant}0",
                    occurred_at=SEED_TIME,
                )
            )
            await uow.commit()
