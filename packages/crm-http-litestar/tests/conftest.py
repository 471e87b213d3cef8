"""Fixtures for the HTTP adapter's tests: a seeded store and the app in process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import jwt
import pytest
from crm_domain.clock import FixedClock
from crm_messaging.testing import ProviderServer, running_provider_server
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crm_http_litestar import Settings
from crm_http_litestar.testing import REDIS_URL, SECRET, World, fresh_redis_namespace, open_world
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
#: Sydney's ManyChat shared secret in :func:`sms_world`.
MANYCHAT_KEY = "sydney-manychat-key-0123456789"
#: The Wix site (app instance id) mapped to sydney in :func:`sms_world`.
WIX_SITE = "5a1c2d3e-wix-site-sydney"


@pytest.fixture
def clicksend() -> Iterator[ProviderServer]:
    """A loopback server speaking ClickSend's REST API (scripted per test)."""
    with running_provider_server() as server:
        yield server


@pytest.fixture(scope="session")
def wix_key() -> WixKey:
    """An RSA key pair standing in for a Wix app's (generated here, never downloaded)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return WixKey(
        private_pem=private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        public_pem=private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )


@attrs.frozen
class WixKey:
    """PEM texts of a test Wix app key."""

    private_pem: str
    public_pem: str


def wix_booking(
    booking_id: str = "wix-b-1",
    *,
    starts: datetime,
    minutes: int = 45,
    status: str = "CREATED",
    email: str | None = "zoe.wix@example.com",
    phone: str | None = "+61412000222",
) -> dict[str, Any]:
    """A Wix Bookings V2 booking object (the fields the CRM reads, and some it ignores)."""
    ends = starts + timedelta(minutes=minutes)
    return {
        "id": booking_id,
        "status": status,
        "paymentStatus": "NOT_PAID",
        "startDate": starts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "endDate": ends.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "bookedEntity": {
            "title": "MRI knee",
            "slot": {"serviceId": "svc-1", "timezone": "Australia/Sydney"},
        },
        "contactDetails": {
            "contactId": "wix-contact-1",
            "firstName": "Zoe",
            "lastName": "Wix",
            "email": email,
            "phone": phone,
        },
        "revision": "1",
    }


def wix_body(
    key: WixKey,
    kind: str,
    booking: dict[str, Any],
    *,
    event_id: str,
    event_time: datetime,
    instance_id: str = WIX_SITE,
    as_strings: bool = True,
    issued: datetime | None = None,
) -> bytes:
    """A Wix webhook body: the JWT Wix would sign, with ``data`` as JSON strings or objects."""
    wrapper: dict[str, Any]
    if kind == "created":
        wrapper = {"createdEvent": {"entity": booking}}
    elif kind == "updated":
        wrapper = {"updatedEvent": {"currentEntity": booking}}
    else:
        wrapper = {"actionEvent": {"body": {"booking": booking}}}
    inner = {
        "id": event_id,
        "entityFqdn": "wix.bookings.v2.booking",
        "slug": kind,
        "entityId": booking["id"],
        "eventTime": event_time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        **wrapper,
    }
    envelope = {
        "eventType": f"wix.bookings.v2.booking_{kind}",
        "instanceId": instance_id,
        "data": json.dumps(inner) if as_strings else inner,
        "identity": json.dumps({"identityType": "ANONYMOUS_VISITOR"}),
    }
    now = issued or datetime.now(UTC)
    claims = {
        "data": json.dumps(envelope) if as_strings else envelope,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
    }
    return jwt.encode(claims, key.private_pem, algorithm="RS256").encode()


@pytest.fixture
async def sms_world(
    settings: Settings, clock: FixedClock, clicksend: ProviderServer, wix_key: WixKey
) -> AsyncIterator[World]:
    """The demo world sending SMS through ClickSend at :func:`clicksend`, with the webhooks."""
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
            "CRM_WIX_PUBLIC_KEY": wix_key.public_pem,
            "CRM_WIX_SITES": f"{WIX_SITE}=sydney",
            "CRM_MANYCHAT_KEYS": f"sydney={MANYCHAT_KEY}",
        },
    )
    async for world in open_world(configured, clock):
        yield world


async def drain_outbox(world: World) -> None:
    """Run the worker's relay (with the domain's handlers) until nothing is due."""
    relay = make_relay(world.runtime, handlers=domain_handlers(world.runtime))
    while await relay.run_once():
        pass


@pytest.fixture
async def redis_namespace() -> AsyncIterator[str]:
    """This test's own Redis namespace (see :func:`fresh_redis_namespace`)."""
    async with fresh_redis_namespace() as namespace:
        yield namespace


@pytest.fixture
def redis_settings(settings: Settings, redis_namespace: str) -> Settings:
    """``settings`` with the shared state in Redis, under this test's own namespace."""
    return settings.replace(redis_url=REDIS_URL, redis_namespace=redis_namespace)
