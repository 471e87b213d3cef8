"""Revision 0002: idempotency answers stored before it stay answers, on both engines."""

from __future__ import annotations

import secrets
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from crm_domain.entities import IdempotencyRecord, IdempotencyState, Location
from crm_domain.errors import Conflict

from crm_gateway_sql.gateway import create_gateway
from crm_gateway_sql.migrate import upgrade

from .conftest import asyncpg_dsn, postgres_url

pytestmark = pytest.mark.anyio

CREATED = datetime(2026, 11, 1, 9, 30, 15, 123456, tzinfo=UTC)
CREATED_MICROS = int((CREATED - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
OLD_ROW = (
    "INSERT INTO idempotency_keys (tenant_id, user_id, key, request_fingerprint, status_code,"
    " response_body, created_at) VALUES ('loc-1', 'user-1', 'old-key', '{fp}', 201,"
    ' \'{{"id": "c-1"}}\', {created})'
).format(fp="a" * 64, created=CREATED_MICROS)


@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_0002_keeps_stored_answers_and_allows_reservations(
    engine: str, tmp_path: Path
) -> None:
    name = f"crm_test_mig_{secrets.token_hex(4)}"
    if engine == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    else:
        admin = await asyncpg.connect(asyncpg_dsn(), timeout=10)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = postgres_url(name)
    gateway = create_gateway(url)
    try:
        await upgrade(gateway, "0001_baseline")
        location = Location(
            id="loc-1",
            name="Sydney",
            code="sydney",
            timezone="Australia/Sydney",
            created_at=CREATED,
        )
        async with gateway.unit_of_work() as uow:
            await uow.locations.add(location)
            await uow.commit()
        # An answer stored by the code before 0002 (no state, no completed_at).
        if engine == "sqlite":
            with sqlite3.connect(tmp_path / "crm.db") as conn:
                conn.execute(OLD_ROW)
        else:
            conn_pg = await asyncpg.connect(asyncpg_dsn(name))
            try:
                await conn_pg.execute(OLD_ROW)
            finally:
                await conn_pg.close()
        await gateway.migrate()
        async with gateway.unit_of_work("loc-1") as uow:
            old = await uow.idempotency.get("old-key", "user-1")
            assert old == IdempotencyRecord(
                tenant_id="loc-1",
                key="old-key",
                user_id="user-1",
                request_fingerprint="a" * 64,
                state=IdempotencyState.COMPLETED,
                status_code=201,
                response_body='{"id": "c-1"}',
                created_at=CREATED,
                completed_at=CREATED,
            )
            with pytest.raises(Conflict):
                await uow.idempotency.reserve(
                    IdempotencyRecord(
                        tenant_id="loc-1",
                        key="old-key",
                        user_id="user-1",
                        request_fingerprint="a" * 64,
                        state=IdempotencyState.PENDING,
                        created_at=CREATED + timedelta(days=30),
                    ),
                    stale_before=CREATED + timedelta(days=29),
                )
        pending = IdempotencyRecord(
            tenant_id="loc-1",
            key="new-key",
            user_id="user-1",
            request_fingerprint="b" * 64,
            state=IdempotencyState.PENDING,
            created_at=CREATED,
        )
        async with gateway.unit_of_work("loc-1") as uow:
            await uow.idempotency.reserve(pending)
            await uow.commit()
        async with gateway.unit_of_work("loc-1") as uow:
            assert await uow.idempotency.get("new-key", "user-1") == pending
    finally:
        await gateway.close()
        if engine == "postgresql":
            admin = await asyncpg.connect(asyncpg_dsn(), timeout=10)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
