"""Fixtures: a real local D1 (Miniflare's workerd) behind the project's REST shim.

The D1 tests need Node.js and ``npm ci --prefix packages/crm-gateway-d1/d1-local``.
When either is missing they FAIL with a message saying so — never skip — so CI
cannot pass without having run them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from crm_gateway_d1.client import D1Client
from crm_gateway_d1.local import LocalD1, LocalD1NotInstalled


def start_local_d1(d1: LocalD1) -> None:
    """Start it, turning a missing Node.js/Miniflare into a test failure."""
    try:
        d1.start()
    except LocalD1NotInstalled as exc:
        pytest.fail(str(exc))


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
