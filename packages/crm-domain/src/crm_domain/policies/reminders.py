"""When a booking's SMS reminders go out, and when a no-show is followed up.

* **Two reminders.** One the day before at the same local time (``T-24 h`` on
  the location's wall clock, so a DST change in between does not shift it by
  an hour) and one two hours before (``T-2 h``, elapsed time).
* **Quiet hours.** Reminders are transactional, which the messaging policy
  lets out at any hour — but nobody wants a reminder at 03:00.  A reminder
  due from 21:00 to 08:00 local time is moved *earlier*, to 20:00 local on the
  evening before: moving it later could push it past the scan itself.
* **Nothing in the past.** A reminder whose (moved) time has already come
  when the booking is made or moved is not scheduled: the patient has just
  been in touch, and a late reminder sent at once could land in quiet hours.
* **No-show follow-up.** A task for reception due at 09:00 local time on the
  morning after the missed scan.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from crm_domain.policies.messaging import MARKETING_WINDOW_END, MARKETING_WINDOW_START

#: A reminder falling in quiet hours is moved to this local time on the evening before.
QUIET_HOURS_FALLBACK = time(20, 0)
#: No-show follow-up tasks are due at this local time the next morning.
FOLLOW_UP_TIME = time(9, 0)
#: Reminder names (in each reminder event's payload) → how long before the start.
REMINDER_OFFSETS = ("24h", "2h")


def _in_quiet_hours(local: datetime) -> bool:
    moment = local.time()
    return not (MARKETING_WINDOW_START <= moment < MARKETING_WINDOW_END)


def _local_at(day: datetime, at: time, zone: ZoneInfo) -> datetime:
    # A wall-clock time that does not exist (DST gap) resolves by fold=0, i.e. forward.
    return datetime.combine(day.date(), at, tzinfo=zone)


def move_out_of_quiet_hours(due: datetime, timezone: str) -> datetime:
    """``due`` itself, or 20:00 local on the evening before when it falls in 21:00–08:00."""
    zone = ZoneInfo(timezone)
    local = due.astimezone(zone)
    if not _in_quiet_hours(local):
        return due
    # After 21:00 the evening before is the same date; before 08:00 it is the previous date.
    evening = local if local.time() >= MARKETING_WINDOW_END else local - timedelta(days=1)
    return _local_at(evening, QUIET_HOURS_FALLBACK, zone).astimezone(due.tzinfo)


def reminder_times(starts_at: datetime, timezone: str) -> dict[str, datetime]:
    """When each reminder of a booking starting at ``starts_at`` is due (UTC-aware)."""
    zone = ZoneInfo(timezone)
    # Elapsed-time arithmetic in UTC (on a zoned datetime Python adds wall-clock time).
    starts_at = starts_at.astimezone(UTC)
    local_start = starts_at.astimezone(zone)
    day_before = datetime.combine(
        local_start.date() - timedelta(days=1), local_start.time(), tzinfo=zone
    )
    raw = {"24h": day_before.astimezone(starts_at.tzinfo), "2h": starts_at - timedelta(hours=2)}
    return {name: move_out_of_quiet_hours(due, timezone) for name, due in raw.items()}


def due_reminders(starts_at: datetime, timezone: str, now: datetime) -> dict[str, datetime]:
    """The reminders still to come at ``now`` (see the module docstring)."""
    return {name: due for name, due in reminder_times(starts_at, timezone).items() if due > now}


def follow_up_due(missed_start: datetime, timezone: str) -> datetime:
    """09:00 local on the day after the missed scan's local date."""
    zone = ZoneInfo(timezone)
    local = missed_start.astimezone(zone)
    return _local_at(local + timedelta(days=1), FOLLOW_UP_TIME, zone).astimezone(
        missed_start.tzinfo
    )


__all__ = [
    "FOLLOW_UP_TIME",
    "QUIET_HOURS_FALLBACK",
    "REMINDER_OFFSETS",
    "due_reminders",
    "follow_up_due",
    "move_out_of_quiet_hours",
    "reminder_times",
]
