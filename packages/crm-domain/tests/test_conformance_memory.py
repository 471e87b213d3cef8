"""The conformance kit against the in-memory gateway, used as an adapter author would."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from crm_domain.memory import InMemoryGateway
from crm_domain.testing import GatewayConformance


class TestInMemoryGateway(GatewayConformance):
    """Runs every conformance test on a fresh :class:`InMemoryGateway`."""

    @pytest.fixture
    async def gateway(self) -> AsyncIterator[InMemoryGateway]:
        gateway = InMemoryGateway(chain_lock_timeout=5.0)
        await gateway.migrate()
        yield gateway
        await gateway.close()
