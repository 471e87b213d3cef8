"""Real and fixed clocks, and the ULID id factory (stdlib only)."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class SystemClock:
    """The machine's clock, in UTC."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told to (tests, examples, replays)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        """Return the set time."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        self._now += delta

    def set(self, when: datetime) -> None:
        """Jump to ``when``."""
        self._now = when


class UlidFactory:
    """Monotonic ULIDs: 26 Crockford base32 characters, sortable by creation time.

    Within one millisecond the random part is incremented, so ids from one
    factory strictly increase (keyset pagination and outbox order rely on it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new_id(self) -> str:
        """Return a new ULID."""
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                ms = self._last_ms
                self._last_rand += 1
                if self._last_rand >= 1 << 80:  # overflow within a millisecond: borrow the next
                    ms += 1
                    self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1
            else:
                self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1
            self._last_ms = ms
            value = (ms << 80) | self._last_rand
        return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


__all__ = ["FixedClock", "SystemClock", "UlidFactory"]
