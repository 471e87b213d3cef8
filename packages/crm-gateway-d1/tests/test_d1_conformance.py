"""The gateway conformance kit, unchanged, against a real local D1 through the REST shim."""

from __future__ import annotations

import pytest
from crm_domain.testing import GatewayConformance

from crm_gateway_d1.gateway import D1Gateway

pytestmark = [pytest.mark.d1]


class TestD1Gateway(GatewayConformance):
    """Every conformance test; D1 is emptied (one batch) before each one."""

    @pytest.fixture
    async def gateway(self, d1_gateway: D1Gateway) -> D1Gateway:
        return d1_gateway
