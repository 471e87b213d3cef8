"""``GET /health``: no authentication, no data."""

from __future__ import annotations

import msgspec
from litestar import get

from crm_http_litestar.routes._docs import PublicOperation


class Health(msgspec.Struct):
    """Liveness of the server."""

    status: str


@get(
    "/health",
    opt={"public": True, "no_rate_limit": True},
    tags=["health"],
    summary="Liveness check (no authentication)",
    security=[],
    operation_class=PublicOperation,
)
async def health() -> Health:
    """Answer ``ok`` while the server runs."""
    return Health(status="ok")
