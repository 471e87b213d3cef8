"""Rate limits: a budget per signed-in user, one per address for requests that prove no identity.

Time is the app's clock (a ``FixedClock`` here): the tests move it, they never sleep.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from crm_domain.clock import FixedClock
from crm_domain.errors import ValidationError

from crm_http_litestar import Settings
from crm_http_litestar.rate_limit import Budget, address_key
from crm_http_litestar.testing import REDIS_URL, World, fresh_redis_namespace, open_world

pytestmark = pytest.mark.anyio

CONTACTS = "/api/contacts?limit=1"


@pytest.fixture(params=["in-process", "redis"])
async def limited(
    request: pytest.FixtureRequest, settings: Settings, clock: FixedClock
) -> AsyncIterator[World]:
    """The demo world with tiny budgets: 3 requests a minute per user and per address.

    Once with the budgets in the process, once in Redis (``CRM_REDIS_URL``).
    """
    tight = settings.replace(rate_limit_per_user=3, rate_limit_per_address=3)
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "redis":
            namespace = await stack.enter_async_context(fresh_redis_namespace())
            tight = tight.replace(redis_url=REDIS_URL, redis_namespace=namespace)
        async for world in open_world(tight, clock):
            yield world


def _assert_429(response: httpx.Response) -> int:
    """A 429 in the API's problem-details shape; returns its ``Retry-After`` seconds."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 429
    assert problem["title"] == "Too Many Requests"
    assert problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    return retry_after


async def test_two_users_behind_one_address_do_not_share_a_budget(limited: World) -> None:
    world = limited
    owner = await world.headers("owner")
    reception = await world.headers("reception")
    # The same NAT address for both (the test peer is 127.0.0.1 throughout).
    for _ in range(3):
        assert (await world.client.get(CONTACTS, headers=owner)).status_code == 200
    _assert_429(await world.client.get(CONTACTS, headers=owner))
    for _ in range(3):
        assert (await world.client.get(CONTACTS, headers=reception)).status_code == 200
    _assert_429(await world.client.get(CONTACTS, headers=reception))


async def test_a_user_over_its_budget_gets_429_and_retry_after(limited: World) -> None:
    world = limited
    owner = await world.headers("owner")
    for _ in range(3):
        assert (await world.client.get(CONTACTS, headers=owner)).status_code == 200
    refused = await world.client.get(CONTACTS, headers=owner)
    retry_after = _assert_429(refused)
    # 3 a minute refill one every 20 s.
    assert retry_after == 20
    # Another session of the same user shares the user's budget.
    second_session = await world.headers("owner")
    _assert_429(await world.client.get(CONTACTS, headers=second_session))
    # The refusal is audited with the user, like any other refusal.
    # Refused before the location is resolved: the entry is on the system chain.
    system = await world.audit(None)
    entry = next(e for e in reversed(system) if e.request_id == refused.headers["x-request-id"])
    assert (entry.status_code, entry.user_id) == (429, world.users["owner"])
    assert entry.detail == "rate limited: user"

    world.clock.advance(timedelta(seconds=retry_after - 1))
    _assert_429(await world.client.get(CONTACTS, headers=owner))
    world.clock.advance(timedelta(seconds=1))
    assert (await world.client.get(CONTACTS, headers=owner)).status_code == 200
    _assert_429(await world.client.get(CONTACTS, headers=owner))


async def test_bad_tokens_from_one_address_get_429_whatever_the_token(limited: World) -> None:
    world = limited
    bogus = [f"Bearer not-a-token-{n}" for n in range(6)]
    statuses = []
    for header in bogus[:3]:
        response = await world.client.get(CONTACTS, headers={"Authorization": header})
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401]
    # Each new guess is a different token, and still refused before it is looked at.
    for header in bogus[3:]:
        _assert_429(await world.client.get(CONTACTS, headers={"Authorization": header}))
    _assert_429(await world.client.get(CONTACTS))  # no token at all: the same budget
    # While the address is spent, even a valid token from it is refused: otherwise a
    # guess that happened to be right would still be answered.
    owner = await world.headers("owner")
    _assert_429(await world.client.get(CONTACTS, headers=owner))
    # Another address is not affected, and the failures cost the owner's budget nothing.
    world.peer.address = "127.0.0.2"
    for _ in range(3):
        assert (await world.client.get(CONTACTS, headers=owner)).status_code == 200
    world.peer.address = "127.0.0.1"
    world.clock.advance(timedelta(seconds=60))
    assert (await world.client.get(CONTACTS, headers=owner)).status_code == 200
    assert (
        await world.client.get(CONTACTS, headers={"Authorization": bogus[0]})
    ).status_code == 401


async def test_signed_in_requests_do_not_spend_the_address_budget(limited: World) -> None:
    world = limited
    for who in ("owner", "reception", "auditor"):
        headers = await world.headers(who)
        for _ in range(3):
            assert (await world.client.get(CONTACTS, headers=headers)).status_code == 200
    # Nine signed-in requests from the address, yet its budget for failures is whole.
    for _ in range(3):
        assert (await world.client.get(CONTACTS)).status_code == 401
    _assert_429(await world.client.get(CONTACTS))


async def test_public_routes_spend_the_address_budget_and_health_is_free(limited: World) -> None:
    world = limited
    for _ in range(3):
        assert (await world.client.get("/schema/openapi.json")).status_code == 200
    _assert_429(await world.client.get("/schema/openapi.json"))
    _assert_429(await world.client.post("/auth/google", json={"id_token": "x"}))
    for _ in range(5):
        assert (await world.client.get("/health")).status_code == 200


async def test_ipv6_clients_share_their_64(limited: World) -> None:
    world = limited
    world.peer.address = "2001:db8:1:2::10"
    for _ in range(3):
        assert (await world.client.get(CONTACTS)).status_code == 401
    world.peer.address = "2001:db8:1:2::99"  # same /64: the same budget
    _assert_429(await world.client.get(CONTACTS))
    world.peer.address = "2001:db8:1:3::10"  # another /64
    assert (await world.client.get(CONTACTS)).status_code == 401


async def test_zero_turns_a_limit_off(settings: Settings, clock: FixedClock) -> None:
    async for world in open_world(settings, clock):  # the fixture's settings: both 0
        owner = await world.headers("owner")
        for _ in range(20):
            assert (await world.client.get(CONTACTS, headers=owner)).status_code == 200
            assert (await world.client.get(CONTACTS)).status_code == 401


def test_address_key() -> None:
    assert address_key("203.0.113.9") == "203.0.113.9"
    assert address_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_key(None) == address_key("garbage") == "unknown"


def test_budget_bursts_refills_and_survives_a_clock_set_back() -> None:
    now = [1_000.0]
    budget = Budget(6, lambda: now[0])  # one every 10 s, six at once
    assert [budget.spend("k") for _ in range(6)] == [0.0] * 6
    assert budget.spend("k") == pytest.approx(10.0)
    assert budget.wait("k") == pytest.approx(10.0)
    now[0] += 4
    assert budget.spend("k") == pytest.approx(6.0)  # a refused request costs nothing
    now[0] += 6
    assert budget.spend("k") == 0.0
    assert budget.spend("other") == 0.0
    # The wall clock set back an hour: the key starts afresh, it is not locked out for an hour.
    now[0] -= 3_600
    assert budget.spend("k") == 0.0


def test_budget_forgets_refilled_keys() -> None:
    now = [0.0]
    budget = Budget(1, lambda: now[0])
    for n in range(10_000):
        budget.spend(f"addr-{n}")
    assert len(budget._tat) == 10_000
    now[0] += 61
    budget.spend("late")  # past the threshold, once they refilled: the others are dropped
    assert list(budget._tat) == ["late"]


def test_settings_from_env() -> None:
    default = Settings.from_env({}, env_file=None)
    assert (default.rate_limit_per_user, default.rate_limit_per_address) == (600, 120)
    both = Settings.from_env(
        {"CRM_RATE_LIMIT_PER_USER": "50", "CRM_RATE_LIMIT_PER_ADDRESS": "0"}, env_file=None
    )
    assert (both.rate_limit_per_user, both.rate_limit_per_address) == (50, 0)
    # The former name still sets the (now per-user) limit.
    former = Settings.from_env({"CRM_RATE_LIMIT_PER_MINUTE": "0"}, env_file=None)
    assert former.rate_limit_per_user == 0
    newer = Settings.from_env(
        {"CRM_RATE_LIMIT_PER_MINUTE": "0", "CRM_RATE_LIMIT_PER_USER": "7"}, env_file=None
    )
    assert newer.rate_limit_per_user == 7
    for name in ("CRM_RATE_LIMIT_PER_USER", "CRM_RATE_LIMIT_PER_ADDRESS"):
        with pytest.raises(ValidationError, match=name):
            Settings.from_env({name: "-1"}, env_file=None)
        with pytest.raises(ValidationError, match=name):
            Settings.from_env({name: "many"}, env_file=None)
