"""State that several server processes share, in the Redis of ``CRM_REDIS_URL``.

One server process keeps its rate-limit budgets, its session records and its
access cache in memory, which is right for one machine and one process.  With
several processes behind one address (``crm serve --workers N``, or N machines
behind a reverse proxy) each would count its own budgets, a logout would reach
the others only when their session record expires (≤ 5 s), and a revoked
membership only when their access cache does (≤ ``CRM_ACCESS_CACHE_TTL``).
With ``CRM_REDIS_URL`` set they share, through Litestar's
:class:`~litestar.stores.redis.RedisStore` (every key under one namespace,
``CRM_REDIS_NAMESPACE``, so several deployments or test runs can share a Redis):

- **rate-limit budgets** (:class:`SharedBudget`): the same GCRA as the
  in-process :class:`~crm_http_litestar.rate_limit.Budget`, one key per user or
  address, updated atomically by a server-side script (the store has no atomic
  read-modify-write; the script runs on the store's own client);
- **session revocation** (:class:`SharedRevocations`): a logout writes the
  session id with the session's remaining lifetime as expiry, and every
  request checks it — effective in every process at once;
- **the access cache** (:class:`SharedAccessEpoch`): every change of roles,
  memberships, locations or IP rules writes a new epoch; each process looks at
  it at most every ``interval`` (1 s) and drops its access and grant caches
  when it moved — a change reaches every process within about a second
  instead of the cache's lifetime.

Redis being down is a backend being down: requests that need it answer 503
(:class:`~crm_domain.errors.Unavailable`), never 500, and nothing is let
through unchecked.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

from crm_domain.errors import Unavailable, ValidationError
from crm_domain.ports.clock import Clock
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis
from redis.exceptions import RedisError

#: Seconds a Redis command may take before the request answers 503.
SOCKET_TIMEOUT = 2.0

# GCRA on the server: one key holds the theoretical arrival time (TAT) of the
# next request, exactly as rate_limit.Budget keeps it in a dict.  ``now`` is
# the app's clock (so tests move time), passed in; the key expires once its
# budget is full again (the same as no key).  Numbers cross as strings: Redis
# truncates a Lua number it returns to an integer.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local period = tonumber(ARGV[4])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then tat = tonumber(stored) end
if tat - now > period then tat = now end
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return string.format('%.6f', wait) end
if ARGV[5] == '1' then
  local next_tat = tat + interval
  redis.call('SET', KEYS[1], string.format('%.6f', next_tat),
             'PX', math.ceil((next_tat - now) * 1000) + 1000)
end
return '0'
"""


@contextlib.contextmanager
def _redis_errors(what: str) -> Iterator[None]:
    """Redis failures as the domain's ``Unavailable`` (503), naming what was being done."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise Unavailable(f"shared state (Redis) unavailable while {what}: {exc}") from exc


class SharedState:
    """The Redis of one deployment: a :class:`RedisStore` under one namespace."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        if not namespace or any(c in namespace for c in "*?[]: "):
            raise ValidationError(
                "CRM_REDIS_NAMESPACE", f"must be a plain non-empty name, got {namespace!r}"
            )
        self.redis = redis
        self.store = RedisStore(redis, namespace=namespace)
        self._gcra = redis.register_script(_GCRA)

    @classmethod
    def from_url(cls, url: str, namespace: str) -> SharedState:
        """Connect lazily to ``redis://`` / ``rediss://`` / ``unix://`` ``url``."""
        if not url.lower().startswith(("redis://", "rediss://", "unix://")):
            raise ValidationError("CRM_REDIS_URL", f"not a Redis URL: {url!r}")
        redis = Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
        )
        return cls(redis, namespace)

    def key(self, name: str) -> str:
        """The Redis key of the store's entry ``name`` (what the store itself would use)."""
        return f"{self.store.namespace}:{name}"

    async def ping(self) -> None:
        """Fail with ``Unavailable`` now, rather than on the first request, if Redis is down."""
        with _redis_errors("connecting"):
            # Through the store (one round trip, like PING; the client's own ping
            # is typed for the sync and async clients at once).
            await self.store.exists(SharedAccessEpoch.KEY)

    async def gcra(
        self, key: str, now: float, *, interval: float, tolerance: float, period: float, spend: bool
    ) -> float:
        """Run the GCRA on ``key``: seconds to wait (0 when the request fits, and then spent)."""
        with _redis_errors("checking a rate limit"):
            wait = await self._gcra(
                keys=[self.key(key)],
                args=[f"{now:.6f}", interval, tolerance, period, "1" if spend else "0"],
            )
        return float(wait)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()


class SharedBudget:
    """A rate-limit budget (``limit`` per ``period`` seconds per key) kept in Redis.

    The same contract as :class:`crm_http_litestar.rate_limit.Budget`, shared by
    every process that uses the same Redis and namespace.
    """

    def __init__(
        self,
        shared: SharedState,
        kind: str,
        limit: int,
        now: Callable[[], float],
        *,
        period: float,
    ) -> None:
        self.limit = limit
        self._shared = shared
        self._kind = kind
        self._now = now
        self._period = period
        self._interval = period / limit if limit > 0 else 0.0
        self._tolerance = period - self._interval

    async def _gcra(self, key: str, *, spend: bool) -> float:
        if self.limit <= 0:
            return 0.0
        return await self._shared.gcra(
            f"rate:{self._kind}:{key}",
            self._now(),
            interval=self._interval,
            tolerance=self._tolerance,
            period=self._period,
            spend=spend,
        )

    async def wait(self, key: str) -> float:
        """Seconds until ``key`` may make a request; 0 when it may now (spends nothing)."""
        return await self._gcra(key, spend=False)

    async def spend(self, key: str) -> float:
        """Count one request of ``key``; 0 if it fits, else the seconds to wait (not counted)."""
        return await self._gcra(key, spend=True)


class SharedRevocations:
    """Ended sessions, known to every process at once."""

    def __init__(self, shared: SharedState, clock: Clock) -> None:
        self._store = shared.store
        self._clock = clock

    async def revoke(self, session_id: str, expires_at: datetime) -> None:
        """Note ``session_id`` as ended until its token could not be used anyway."""
        remaining = math.ceil((expires_at - self._clock.now()).total_seconds())
        with _redis_errors("ending a session"):
            # An already expired session still gets a short entry: the tokens'
            # own expiry check allows for no clock skew, this costs nothing.
            await self._store.set(f"revoked:{session_id}", b"1", expires_in=max(60, remaining))

    async def is_revoked(self, session_id: str) -> bool:
        """Whether any process ended ``session_id``."""
        with _redis_errors("checking a session"):
            return await self._store.exists(f"revoked:{session_id}")


class SharedAccessEpoch:
    """A version of everyone's access, moved by every change of roles, members or IP rules."""

    KEY = "access-epoch"

    def __init__(
        self,
        shared: SharedState,
        clock: Clock,
        on_change: Callable[[], None],
        *,
        interval: float = 1.0,
    ) -> None:
        self._store = shared.store
        self._clock = clock
        self._on_change = on_change
        self._interval = interval
        self._seen: bytes | None = None
        self._checked_at: float | None = None

    async def publish(self) -> None:
        """Tell every process (this one included) that access changed."""
        epoch = uuid.uuid4().hex.encode()
        with _redis_errors("publishing an access change"):
            await self._store.set(self.KEY, epoch)
        self._seen = epoch

    async def refresh(self) -> None:
        """Drop this process's access caches if another process changed access (≤ 1/interval)."""
        now = self._clock.now().timestamp()
        if self._checked_at is not None and 0 <= now - self._checked_at < self._interval:
            return
        with _redis_errors("checking for access changes"):
            epoch = await self._store.get(self.KEY)
        self._checked_at = now
        if epoch != self._seen:
            self._seen = epoch
            self._on_change()


__all__ = [
    "SharedAccessEpoch",
    "SharedBudget",
    "SharedRevocations",
    "SharedState",
]
