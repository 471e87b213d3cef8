"""Fixtures for the HTTP adapter's tests: a seeded store and the app in process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest
from crm_domain.clock import FixedClock
from crm_messaging.testing import ProviderServer, running_provider_server

from crm_http_litestar import Settings
from crm_http_litestar.testing import SECRET, World, open_world
from crm_http_litestar.worker import domain_handlers, make_relay


def store_url(tmp_path: Path) -> str:
    """A fresh SQLite file, through the SQL gateway (the embedded default store)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for an in-process app: SQLite in a temp dir, no worker, generous limits."""
    return Settings(
        database_url=store_url(tmp_path),
        secret_key=SECRET,
        run_worker=False,
        rate_limit_per_user=0,
        rate_limit_per_address=0,
        access_cache_ttl=30,
    )


@pytest.fixture
def clock() -> FixedClock:
    """A clock at the real time (PyJWT checks ``exp`` against the real clock)."""
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def world(settings: Settings, clock: FixedClock) -> AsyncIterator[World]:
    """The demo world served in process."""
    async for value in open_world(settings, clock):
        yield value


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only (the server's loop)."""
    return "asyncio"


#: Sydney's clinic number and a patient's, as the SMS tests configure and use them.
CLINIC = "+61291500000"
PATIENT = "+61412000111"
#: Sydney's inbound-SMS webhook key in :func:`sms_world`.
SMS_KEY = "sydney-sms-webhook-key-0123456789"


@pytest.fixture
def clicksend() -> Iterator[ProviderServer]:
    """A loopback server speaking ClickSend's REST API (scripted per test)."""
    with running_provider_server() as server:
        yield server


@pytest.fixture
async def sms_world(
    settings: Settings, clock: FixedClock, clicksend: ProviderServer
) -> AsyncIterator[World]:
    """The demo world sending SMS through ClickSend at :func:`clicksend`, with SMS webhooks."""
    configured = attrs.evolve(
        settings,
        adapter_settings={
            "CRM_SMS_PROVIDER": "clicksend",
            "CRM_CLICKSEND_USERNAME": "clinic-user",
            "CRM_CLICKSEND_API_KEY": "cs-key-0123456789",
            "CRM_CLICKSEND_BASE_URL": f"{clicksend.url}/v3",
            "CRM_SMS_MAX_RETRIES": "0",
            "CRM_SMS_NUMBERS": f"sydney={CLINIC}",
            "CRM_SMS_WEBHOOK_KEYS": f"sydney={SMS_KEY}",
        },
    )
    async for world in open_world(configured, clock):
        yield world


async def drain_outbox(world: World) -> None:
    """Run the worker's relay (with the domain's handlers) until nothing is due."""
    relay = make_relay(world.runtime, handlers=domain_handlers(world.runtime))
    while await relay.run_once():
        pass
