"""HTTP routes of the CRM, grouped by resource."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from crm_http_litestar.routes.auth import auth_router
from crm_http_litestar.routes.health import health


def all_routes() -> list[ControllerRouterHandler]:
    """Every route handler the app serves."""
    return [health, auth_router()]


__all__ = ["all_routes"]
