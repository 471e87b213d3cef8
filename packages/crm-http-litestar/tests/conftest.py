"""Fixtures for the HTTP adapter's tests: a seeded store and the app in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from crm_domain.clock import FixedClock

from crm_http_litestar import Settings
from crm_http_litestar.testing import REDIS_URL, SECRET, World, fresh_redis_namespace, open_world


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


@pytest.fixture
async def redis_namespace() -> AsyncIterator[str]:
    """This test's own Redis namespace (see :func:`fresh_redis_namespace`)."""
    async with fresh_redis_namespace() as namespace:
        yield namespace


@pytest.fixture
def redis_settings(settings: Settings, redis_namespace: str) -> Settings:
    """``settings`` with the shared state in Redis, under this test's own namespace."""
    return settings.replace(redis_url=REDIS_URL, redis_namespace=redis_namespace)
