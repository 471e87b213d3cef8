"""Litestar HTTP server, security pipeline and the crm CLI for the Avatar Imaging CRM.

``create_app(settings)`` is the composition root: it returns a Litestar app whose
:class:`CrmPlugin` wires the gateway (by ``CRM_DATABASE_URL``), the domain's
services, the security pipeline and the routes.  Webhooks (Wix, ManyChat,
ClickSend), SMS, campaigns, reports and automations are not served yet (the
README's "What works today" lists what is).
"""

from crm_http_litestar.app import create_app
from crm_http_litestar.audit import GroupCommitAuditRecorder
from crm_http_litestar.plugin import CrmConfig, CrmPlugin
from crm_http_litestar.settings import Settings

__all__ = ["CrmConfig", "CrmPlugin", "GroupCommitAuditRecorder", "Settings", "create_app"]
