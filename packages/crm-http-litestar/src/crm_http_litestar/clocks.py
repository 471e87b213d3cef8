"""A clock a test or a demo can move from outside the process (``CRM_CLOCK_FILE``).

The served process and ``crm worker`` are separate processes, so a test that
wants a booking reminder due "tomorrow" cannot hand them a
:class:`~crm_domain.clock.FixedClock`.  With ``CRM_CLOCK_FILE`` set, the
process reads the current time from that file (one ISO 8601 timestamp with an
offset) at every ``now()``; while the file is missing or unreadable it is the
system clock.  Not for production: whoever can write the file sets the time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from crm_domain.clock import SystemClock
from crm_domain.ports.clock import Clock

#: The setting naming the file (read from ``Settings.adapter_settings``).
CLOCK_FILE_SETTING = "CRM_CLOCK_FILE"


class FileClock:
    """``now()`` from a file's ISO 8601 timestamp, else the system time."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        """The file's time (aware, UTC), or the system's when there is none."""
        try:
            when = datetime.fromisoformat(self.path.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return datetime.now(UTC)
        # A naive timestamp would be ambiguous: read as UTC rather than refused mid-run.
        return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).astimezone(UTC)


def configured_clock(adapter_settings: dict[str, str] | None) -> Clock:
    """A :class:`FileClock` when ``CRM_CLOCK_FILE`` is set, else the system clock."""
    path = (adapter_settings or {}).get(CLOCK_FILE_SETTING, "").strip()
    return FileClock(Path(path)) if path else SystemClock()


__all__ = ["CLOCK_FILE_SETTING", "FileClock", "configured_clock"]
