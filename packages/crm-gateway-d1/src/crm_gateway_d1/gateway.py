"""The Cloudflare D1 :class:`~crm_domain.ports.gateway.DatabaseGateway`.

``CRM_DATABASE_URL=d1://ACCOUNT_ID/DATABASE_ID`` selects it (entry point ``d1``
in the ``crm.gateways`` group).  It reads ``CRM_D1_API_TOKEN`` (an API token
with D1 edit permission) and ``CRM_D1_API_BASE`` (default
``https://api.cloudflare.com/client/v4``; point it at a local D1 for
development).  Units of work are described in :mod:`crm_gateway_d1.uow`.

Migrations are the SQL gateway's own Alembic revisions, recorded on a
scratch SQLite database and replayed on D1 in one atomic batch
(:mod:`crm_gateway_d1.migrations`); running them again sends nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crm_domain.errors import Unavailable, ValidationError

from crm_gateway_d1 import migrations
from crm_gateway_d1.client import D1Client
from crm_gateway_d1.uow import ChainLocks, D1UnitOfWork

if TYPE_CHECKING:
    from crm_domain.ports.gateway import DatabaseGateway, SupportsMigrations


class D1Gateway:
    """Storage on one D1 database over Cloudflare's REST API."""

    def __init__(self, client: D1Client) -> None:
        self.client = client
        self._closed = False
        self._chain_locks = ChainLocks()

    def unit_of_work(self, tenant_id: str | None = None) -> D1UnitOfWork:
        """Open a unit of work bound to ``tenant_id`` (or to no location)."""
        if self._closed:
            raise Unavailable("the D1 gateway is closed")
        return D1UnitOfWork(self.client, tenant_id, self._chain_locks)

    async def migrate(self) -> None:
        """Apply every pending schema migration in one atomic batch (``crm db upgrade``)."""
        if self._closed:
            raise Unavailable("the D1 gateway is closed")
        await migrations.upgrade(self.client)

    async def close(self) -> None:
        """Release the HTTP connection pool."""
        self._closed = True
        await self.client.close()


def parse_url(url: str) -> tuple[str, str]:
    """``d1://ACCOUNT_ID/DATABASE_ID`` → ``(account_id, database_id)``."""
    parts = urlsplit(url)
    database = parts.path.strip("/")
    if parts.scheme.lower() != "d1" or not parts.netloc or not database or "/" in database:
        raise ValidationError(
            "CRM_DATABASE_URL", f"expected d1://ACCOUNT_ID/DATABASE_ID, got {url!r}"
        )
    return parts.netloc, database


def create_gateway(url: str, **options: Any) -> D1Gateway:
    """Entry-point factory for ``d1://`` (group ``crm.gateways``, name ``d1``).

    Options: ``env`` (a mapping read instead of ``os.environ``), and the
    :class:`~crm_gateway_d1.client.D1Client` options ``api_token``,
    ``api_base``, ``timeout``, ``max_attempts``, ``backoff``, ``max_backoff``.
    """
    account, database = parse_url(url)
    env: Mapping[str, str] = options.pop("env", None) or os.environ
    known = {"api_token", "api_base", "timeout", "max_attempts", "backoff", "max_backoff"}
    unknown = set(options) - known
    if unknown:
        raise ValidationError("options", f"unknown options {sorted(unknown)}")
    token = options.pop("api_token", None) or env.get("CRM_D1_API_TOKEN", "")
    base = options.pop("api_base", None) or env.get("CRM_D1_API_BASE", "")
    client = D1Client.from_env(
        account,
        database,
        {"CRM_D1_API_TOKEN": token, "CRM_D1_API_BASE": base},
        **options,
    )
    return D1Gateway(client)


__all__ = ["D1Gateway", "create_gateway", "parse_url"]


if TYPE_CHECKING:  # mypy proves the class satisfies the ports structurally

    def _is_gateway(gateway: D1Gateway) -> DatabaseGateway:
        return gateway

    def _migrates(gateway: D1Gateway) -> SupportsMigrations:
        return gateway
