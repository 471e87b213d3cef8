"""The domain's gateway conformance kit, unchanged, on SQLite (file and memory) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from crm_domain.testing import GatewayConformance

from crm_gateway_sql.gateway import SqlGateway, create_gateway


class TestSqliteFileGateway(GatewayConformance):
    """Every conformance test on a fresh SQLite file (WAL, reader + writer connections)."""

    @pytest.fixture
    async def gateway(self, tmp_path: Path) -> AsyncIterator[SqlGateway]:
        gateway = create_gateway(f"sqlite+aiosqlite:///{tmp_path / 'kit.db'}")
        await gateway.migrate()
        yield gateway
        await gateway.close()


class TestSqliteMemoryGateway(GatewayConformance):
    """Every conformance test on an in-memory SQLite database (one connection)."""

    @pytest.fixture
    async def gateway(self) -> AsyncIterator[SqlGateway]:
        gateway = create_gateway("sqlite+aiosqlite://")
        await gateway.migrate()
        yield gateway
        await gateway.close()


@pytest.mark.postgres
class TestPostgresGateway(GatewayConformance):
    """Every conformance test on a fresh PostgreSQL database, acting as the RLS-bound role."""

    @pytest.fixture
    def gateway(self, pg_gateway: SqlGateway) -> SqlGateway:
        return pg_gateway
