"""The full stack of ``crm serve`` with the read audit short-circuited — a benchmark's control.

Everything else is the real server (settings from the environment, token,
session, tenant, IP allowlist, RBAC, service, gateway); only the recorder that
makes read-audit entries durable returns at once without writing.  The server
itself has no way to turn the audit off: this module exists so that
``scale_bench.py`` can state what the durable read audit costs.
"""

from __future__ import annotations

from crm_domain.entities import AuditEntry
from crm_http_litestar.app import create_app
from crm_http_litestar.settings import Settings
from litestar.types import Receive, Scope, Send

_crm = create_app(Settings.from_env())
_patched: list[bool] = []


async def _discard(entry: AuditEntry) -> None:
    """Accept an entry and write nothing (the measured difference)."""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The CRM app; once its runtime is up, its audit recorder discards entries."""
    if not _patched and scope["type"] == "http":
        runtime = _crm.state.get("crm")
        if runtime is not None:
            # One recorder object serves the services and the pipeline alike.
            runtime.recorder.record = _discard
            _patched.append(True)
    await _crm(scope, receive, send)
