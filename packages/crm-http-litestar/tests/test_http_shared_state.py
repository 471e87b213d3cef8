"""Shared state in Redis (``CRM_REDIS_URL``): what one server process does, every other sees.

Each test serves the app twice over one SQLite file — two runtimes with their own
caches and their own Redis connections, as two ``crm serve`` processes have — and
points both at the real Redis on 127.0.0.1:6379, under a namespace of the test's own.
The same scenarios without Redis show the single-process default the feature changes.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from crm_domain.clock import FixedClock
from crm_domain.errors import Unavailable, ValidationError

from crm_http_litestar import Settings
from crm_http_litestar.runtime import open_runtime
from crm_http_litestar.shared_state import SharedState
from crm_http_litestar.testing import (
    REDIS_URL,
    SECRET,
    World,
    fresh_redis_namespace,
    one_line_error,
    open_world,
    run_crm,
)

pytestmark = pytest.mark.anyio

CONTACTS = "/api/contacts?limit=1"


@contextlib.asynccontextmanager
async def two_processes(
    settings: Settings, clock: FixedClock
) -> AsyncIterator[tuple[World, World]]:
    """The app served twice over one store: two runtimes, as two server processes."""
    async with contextlib.AsyncExitStack() as stack:
        worlds = []
        for _ in range(2):
            generator = open_world(settings, clock)
            worlds.append(await generator.__anext__())
            stack.push_async_callback(generator.aclose)
        yield worlds[0], worlds[1]


async def test_logout_in_one_process_ends_the_session_in_every_process_at_once(
    redis_settings: Settings, clock: FixedClock
) -> None:
    async with two_processes(redis_settings, clock) as (a, b):
        headers = await a.headers("owner")
        # Both processes have read (and cached) the session.
        assert (await a.client.get(CONTACTS, headers=headers)).status_code == 200
        assert (await b.client.get(CONTACTS, headers=headers)).status_code == 200
        assert (await a.client.post("/auth/logout", headers=headers)).status_code == 204
        # No time passes: the other process refuses the token on its next request.
        refused = await b.client.get(CONTACTS, headers=headers)
        assert refused.status_code == 401, refused.text
        assert (await a.client.get(CONTACTS, headers=headers)).status_code == 401


async def test_without_redis_a_logout_reaches_other_processes_only_later(
    settings: Settings, clock: FixedClock
) -> None:
    async with two_processes(settings, clock) as (a, b):
        headers = await a.headers("owner")
        assert (await b.client.get(CONTACTS, headers=headers)).status_code == 200
        assert (await a.client.post("/auth/logout", headers=headers)).status_code == 204
        # The other process still trusts its cached session record (≤ 5 s) …
        assert (await b.client.get(CONTACTS, headers=headers)).status_code == 200
        clock.advance(timedelta(seconds=5))
        # … and re-reads it after that.
        assert (await b.client.get(CONTACTS, headers=headers)).status_code == 401


async def test_a_user_budget_is_spent_across_processes(
    redis_settings: Settings, clock: FixedClock
) -> None:
    limited = redis_settings.replace(rate_limit_per_user=3)
    async with two_processes(limited, clock) as (a, b):
        headers = await a.headers("owner")
        assert (await a.client.get(CONTACTS, headers=headers)).status_code == 200
        assert (await b.client.get(CONTACTS, headers=headers)).status_code == 200
        assert (await a.client.get(CONTACTS, headers=headers)).status_code == 200
        # Three spent between the two: the fourth is refused wherever it lands.
        for world in (b, a):
            refused = await world.client.get(CONTACTS, headers=headers)
            assert refused.status_code == 429, refused.text
            assert refused.headers["retry-after"] == "20"
        clock.advance(timedelta(seconds=20))
        assert (await b.client.get(CONTACTS, headers=headers)).status_code == 200


async def test_an_address_budget_is_spent_across_processes(
    redis_settings: Settings, clock: FixedClock
) -> None:
    limited = redis_settings.replace(rate_limit_per_address=2)
    async with two_processes(limited, clock) as (a, b):
        bad = {"Authorization": "Bearer not-a-token"}
        assert (await a.client.get(CONTACTS, headers=bad)).status_code == 401
        assert (await b.client.get(CONTACTS, headers=bad)).status_code == 401
        assert (await a.client.get(CONTACTS, headers=bad)).status_code == 429
        # A valid token from the spent address is refused in the other process too.
        owner = await b.headers("owner")
        assert (await b.client.get(CONTACTS, headers=owner)).status_code == 429


async def _deactivate_reception(admin: World) -> None:
    owner = await admin.headers("owner")
    members = await admin.client.get("/api/admin/users?limit=50", headers=owner)
    assert members.status_code == 200, members.text
    membership = next(
        m["membership_id"]
        for m in members.json()["items"]
        if m["email"] == "reception.sydney@avatar-imaging.example"
    )
    changed = await admin.client.patch(
        f"/api/admin/users/{membership}", headers=owner, json={"is_active": False}
    )
    assert changed.status_code == 200, changed.text


async def _reception_a_second_after_revocation(
    a: World, b: World, clock: FixedClock
) -> tuple[dict[str, str], int]:
    """Reception's headers, and what process ``b`` answers them 1 s after ``a`` revoked them."""
    reception = await b.headers("reception")
    assert (await b.client.get(CONTACTS, headers=reception)).status_code == 200  # now cached
    await _deactivate_reception(a)
    clock.advance(timedelta(seconds=1))
    return reception, (await b.client.get(CONTACTS, headers=reception)).status_code


async def test_a_revoked_membership_reaches_every_process_within_a_second(
    redis_settings: Settings, clock: FixedClock
) -> None:
    async with two_processes(redis_settings, clock) as (a, b):
        _, status = await _reception_a_second_after_revocation(a, b, clock)
        assert status == 403


async def test_without_redis_a_revoked_membership_waits_for_the_access_cache(
    settings: Settings, clock: FixedClock
) -> None:
    async with two_processes(settings, clock) as (a, b):
        reception, status = await _reception_a_second_after_revocation(a, b, clock)
        assert status == 200
        clock.advance(timedelta(seconds=settings.access_cache_ttl))
        assert (await b.client.get(CONTACTS, headers=reception)).status_code == 403


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def own_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test alone, on a free loopback port (to be stopped at will)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed (Debian: apt-get install redis-server)"
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        process.kill()
        process.wait()


async def test_redis_going_down_answers_503_and_lets_nothing_through(
    settings: Settings, clock: FixedClock
) -> None:
    with own_redis() as (url, redis_server):
        shared = settings.replace(redis_url=url, redis_namespace="crm-down-test")
        generator = open_world(shared, clock)
        world = await generator.__anext__()
        try:
            headers = await world.headers("owner")
            assert (await world.client.get(CONTACTS, headers=headers)).status_code == 200
            # Redis stops: nothing can tell whether another process ended the session.
            redis_server.kill()
            redis_server.wait()
            refused = await world.client.get(CONTACTS, headers=headers)
            assert refused.status_code == 503, refused.text
            assert "Redis" in refused.json()["detail"]
        finally:
            await generator.aclose()


async def test_a_server_does_not_start_without_its_redis(
    settings: Settings, clock: FixedClock
) -> None:
    port = _free_port()  # nothing listens there
    shared = settings.replace(redis_url=f"redis://127.0.0.1:{port}/0")
    with pytest.raises(Unavailable, match="Redis"):
        async with open_runtime(shared, clock=clock):
            pass


def test_crm_serve_says_in_one_line_that_its_redis_is_down(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    refused = run_crm(
        tmp_path,
        "serve",
        "--port",
        str(_free_port()),
        CRM_SECRET_KEY=SECRET,
        CRM_REDIS_URL=f"redis://127.0.0.1:{port}/0",
    )
    line = one_line_error(refused)
    assert "Redis" in line and str(port) in line


def test_a_redis_url_is_checked_and_named() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings.from_env({"CRM_REDIS_URL": "http://127.0.0.1:6379"}, env_file=None)
    assert refused.value.field == "CRM_REDIS_URL"
    with pytest.raises(ValidationError) as refused:
        SharedState.from_url("redis://127.0.0.1:6379", "a:b")
    assert refused.value.field == "CRM_REDIS_NAMESPACE"
    settings = Settings.from_env(
        {"CRM_REDIS_URL": "redis://127.0.0.1:6379/2", "CRM_REDIS_NAMESPACE": "clinic-a"},
        env_file=None,
    )
    assert (settings.redis_url, settings.redis_namespace) == (
        "redis://127.0.0.1:6379/2",
        "clinic-a",
    )


async def test_a_test_namespace_leaves_no_key_behind(clock: FixedClock) -> None:
    async with fresh_redis_namespace() as namespace:
        shared = SharedState.from_url(REDIS_URL, namespace)
        try:
            await shared.gcra("rate:user:u1", 0.0, interval=1, tolerance=1, period=60, spend=True)
            await shared.store.set("revoked:s1", b"1", expires_in=60)
            assert len([k async for k in shared.redis.scan_iter(f"{namespace}:*")]) == 2
        finally:
            await shared.aclose()
    probe = SharedState.from_url(REDIS_URL, namespace)
    try:
        assert [k async for k in probe.redis.scan_iter(f"{namespace}:*")] == []
    finally:
        await probe.aclose()
