"""Time and identity ports."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """The current time, always timezone-aware (UTC)."""

    def now(self) -> datetime:
        """Return the current instant."""
        ...


@runtime_checkable
class IdFactory(Protocol):
    """New ids: opaque strings that sort by creation time."""

    def new_id(self) -> str:
        """Return a fresh id, greater than every id this factory returned before."""
        ...
