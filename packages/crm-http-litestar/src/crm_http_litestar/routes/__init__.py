"""HTTP routes of the CRM, grouped by resource."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from crm_http_litestar.routes.admin import admin_router
from crm_http_litestar.routes.auth import auth_router
from crm_http_litestar.routes.automations import automations_router
from crm_http_litestar.routes.bookings import bookings_router
from crm_http_litestar.routes.campaign_links import campaign_links_router
from crm_http_litestar.routes.campaigns import campaigns_router
from crm_http_litestar.routes.contacts import contacts_router
from crm_http_litestar.routes.duplicates import duplicates_router
from crm_http_litestar.routes.erasure import erasure_router
from crm_http_litestar.routes.exports import exports_router
from crm_http_litestar.routes.health import health
from crm_http_litestar.routes.reports import reports_router
from crm_http_litestar.routes.sms import sms_router
from crm_http_litestar.routes.suppressions import suppressions_router
from crm_http_litestar.routes.tasks import tasks_router
from crm_http_litestar.routes.webhooks import webhooks_router


def all_routes() -> list[ControllerRouterHandler]:
    """Every route handler the app serves."""
    return [
        health,
        auth_router(),
        contacts_router(),
        bookings_router(),
        tasks_router(),
        admin_router(),
        reports_router(),
        sms_router(),
        webhooks_router(),
        exports_router(),
        duplicates_router(),
        erasure_router(),
        campaigns_router(),
        campaign_links_router(),
        automations_router(),
        suppressions_router(),
    ]


__all__ = ["all_routes"]
