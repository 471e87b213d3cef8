"""Rate limits of the pipeline: a budget per signed-in user, and one per client address.

Staff of a clinic share one public address behind NAT, so a per-address budget
for everyone would be one budget for the whole clinic.  Signed-in requests are
therefore counted per **user**; only requests that prove no identity — public
routes, no token, a token or session that is not valid — are counted per
**address** (an IPv6 client by its /64, which one host usually holds whole).

The address budget is checked *before* a token is looked at: once an address has
spent it on failures, every request from it is answered 429 until the budget
refills, valid token or not — otherwise guessing tokens would only be labelled,
not slowed.

Each budget is a GCRA ("generic cell rate algorithm"): ``limit`` requests per
``period``, at most ``limit`` of them at once, refilling one every
``period / limit`` seconds; one number per key, and an exact ``Retry-After``.
Budgets live in the process, unless ``CRM_REDIS_URL`` is set: then every
process of the deployment spends the same budgets, kept in Redis
(:class:`~crm_http_litestar.shared_state.SharedBudget`, the same GCRA).
Time comes from the app's :class:`~crm_domain.ports.clock.Clock`, so tests
move it instead of sleeping.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from litestar.exceptions import TooManyRequestsException

from crm_http_litestar.client_ip import parse_ip

if TYPE_CHECKING:
    from crm_http_litestar.shared_state import SharedState

#: Seconds one budget spans (the settings are "per minute").
PERIOD_SECONDS = 60.0
#: Forget spent-out keys once this many are held (amortised; keeps an attack bounded).
_PRUNE_AT = 10_000


class RateLimited(TooManyRequestsException):
    """Over a budget: answered 429 with ``Retry-After`` (whole seconds) as problem details."""

    def __init__(self, detail: str, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(detail=detail, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class Budget:
    """``limit`` requests per ``period`` seconds for each key (GCRA); ``limit=0`` is no limit."""

    def __init__(
        self, limit: int, now: Callable[[], float], *, period: float = PERIOD_SECONDS
    ) -> None:
        self.limit = limit
        self._now = now
        self._period = period
        self._interval = period / limit if limit > 0 else 0.0
        # A burst of exactly `limit` requests fits: the last one arrives at tolerance.
        self._tolerance = period - self._interval
        #: Theoretical arrival time of each key's next request (the GCRA's one number).
        self._tat: dict[str, float] = {}
        self._prune_at = _PRUNE_AT

    def _arrival(self, key: str, now: float) -> float:
        tat = self._tat.get(key, now)
        if tat - now > self._period:
            # Only a clock set back can put a key this far ahead: start it afresh
            # rather than lock it out for as long as the clock jumped.
            tat = now
        return max(tat, now)

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may make a request; 0 when it may now (spends nothing)."""
        if self.limit <= 0:
            return 0.0
        now = self._now()
        return max(0.0, self._arrival(key, now) - self._tolerance - now)

    def spend(self, key: str) -> float:
        """Count one request of ``key``; 0 if it fits, else the seconds to wait (not counted)."""
        if self.limit <= 0:
            return 0.0
        now = self._now()
        tat = self._arrival(key, now)
        if tat - now > self._tolerance:
            return tat - self._tolerance - now
        self._tat[key] = tat + self._interval
        if len(self._tat) > self._prune_at:
            self._prune(now)
        return 0.0

    def _prune(self, now: float) -> None:
        # A key whose arrival time has passed holds a full budget: the same as no entry.
        self._tat = {key: tat for key, tat in self._tat.items() if tat > now}
        self._prune_at = max(_PRUNE_AT, 2 * len(self._tat))


def address_key(client_ip: str | None) -> str:
    """The budget key of an address: the address, or its /64 for IPv6."""
    address = parse_ip(client_ip)
    if address is None:
        return "unknown"
    if address.version == 6:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class SharedBudgetLike(Protocol):
    """A budget whose counts live outside the process (awaited)."""

    limit: int

    async def wait(self, key: str) -> float:
        """Seconds until ``key`` may make a request; 0 when it may now (spends nothing)."""
        ...

    async def spend(self, key: str) -> float:
        """Count one request of ``key``; 0 if it fits, else the seconds to wait."""
        ...


class _InProcess:
    """A :class:`Budget` behind the awaited interface of a shared one."""

    def __init__(self, budget: Budget) -> None:
        self.limit = budget.limit
        self._budget = budget

    async def wait(self, key: str) -> float:
        return self._budget.wait(key)

    async def spend(self, key: str) -> float:
        return self._budget.spend(key)


class RateLimits:
    """The two budgets of the pipeline, in this process or (``shared``) in Redis."""

    def __init__(
        self,
        *,
        per_user: int,
        per_address: int,
        now: Callable[[], float],
        shared: SharedState | None = None,
    ) -> None:
        self.users: SharedBudgetLike
        self.addresses: SharedBudgetLike
        if shared is None:
            self.users = _InProcess(Budget(per_user, now))
            self.addresses = _InProcess(Budget(per_address, now))
        else:
            from crm_http_litestar.shared_state import SharedBudget

            self.users = SharedBudget(shared, "user", per_user, now, period=PERIOD_SECONDS)
            self.addresses = SharedBudget(
                shared, "address", per_address, now, period=PERIOD_SECONDS
            )

    async def check_address(self, client_ip: str | None) -> None:
        """Refuse at once when the address has spent its budget (before any token is read)."""
        if self.addresses.limit <= 0:
            return
        wait = await self.addresses.wait(address_key(client_ip))
        if wait > 0:
            raise RateLimited(
                "too many unauthenticated or failed requests from your address; retry later",
                wait,
            )

    async def spend_address(self, client_ip: str | None) -> None:
        """Count a public, unauthenticated or failed request against its address."""
        if self.addresses.limit <= 0:
            return
        wait = await self.addresses.spend(address_key(client_ip))
        if wait > 0:
            raise RateLimited(
                "too many unauthenticated or failed requests from your address; retry later",
                wait,
            )

    async def spend_user(self, user_id: str) -> None:
        """Count a signed-in request against its user (every session of the user shares it)."""
        if self.users.limit <= 0:
            return
        wait = await self.users.spend(user_id)
        if wait > 0:
            raise RateLimited("too many requests for your user; retry later", wait)


__all__ = ["PERIOD_SECONDS", "Budget", "RateLimited", "RateLimits", "address_key"]
