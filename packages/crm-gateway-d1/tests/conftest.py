"""Fixtures: a real local D1 (Miniflare's workerd) behind the project's REST shim.

The D1 tests need Node.js and ``npm ci --prefix packages/crm-gateway-d1/d1-local``.
When either is missing they FAIL with a message saying so — never skip — so CI
cannot pass without having run them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from crm_gateway_d1.client import D1Client, D1Statement
from crm_gateway_d1.gateway import D1Gateway
from crm_gateway_d1.local import LocalD1, LocalD1NotInstalled


def start_local_d1(d1: LocalD1) -> None:
    """Start it, turning a missing Node.js/Miniflare into a test failure."""
    try:
        d1.start()
    except LocalD1NotInstalled as exc:
        pytest.fail(str(exc))


@pytest.fixture
def start_local() -> Iterator[Callable[[LocalD1], None]]:
    """Start extra local D1s (failing the test if Miniflare is missing); stopped afterwards."""
    started: list[LocalD1] = []

    def start(d1: LocalD1) -> None:
        start_local_d1(d1)
        started.append(d1)

    yield start
    for d1 in started:
        d1.stop()


@pytest.fixture(scope="session")
def local_d1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalD1]:
    """A local D1 for the whole session (data under a temporary directory)."""
    d1 = LocalD1(tmp_path_factory.mktemp("d1-data"), test_hooks=True)
    start_local_d1(d1)
    try:
        yield d1
    finally:
        d1.stop()


@pytest.fixture
async def d1_client(local_d1: LocalD1) -> AsyncIterator[D1Client]:
    """A client on the session's local D1, with quick retries."""
    client = local_d1.client()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def d1_gateway(local_d1: LocalD1) -> AsyncIterator[D1Gateway]:
    """A D1 gateway on an empty, freshly migrated database."""
    gateway = D1Gateway(local_d1.client())
    await gateway.client.batch(drop_statements())
    await gateway.migrate()
    try:
        yield gateway
    finally:
        await gateway.close()


def drop_statements() -> list[D1Statement]:
    """Drop every table, children first (D1 enforces foreign keys; triggers go with them)."""
    from crm_gateway_sql.schema import metadata

    tables = [t.name for t in reversed(metadata.sorted_tables)] + ["alembic_version"]
    return [D1Statement(f"DROP TABLE IF EXISTS {name}") for name in tables]
