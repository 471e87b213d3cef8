"""Free booking slots: inside opening hours, clear of other bookings and their buffer.

Times are worked out on the location's wall clock (opening hours are local),
then every candidate is checked again in local time, so a daylight-saving
change inside a day can shorten or lengthen it but never puts a slot outside
the hours.  Candidates start on a ``step`` grid from each day's opening.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from crm_domain.entities.location import OpeningHours

#: The finest grid slots start on.
DEFAULT_STEP = timedelta(minutes=15)
#: At most this many slots are suggested per call.
MAX_SLOTS = 200


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _within_hours(
    start: datetime, end: datetime, day: date, hours: OpeningHours, zone: ZoneInfo
) -> bool:
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    return (
        local_start.date() == day
        and local_end.date() == day
        and local_start.time() >= _hhmm(hours.opens)
        and local_end.time() <= _hhmm(hours.closes)
    )


def free_slots(
    *,
    start: datetime,
    end: datetime,
    hours: Sequence[OpeningHours],
    timezone: str,
    duration: timedelta,
    buffer: timedelta,
    busy: Sequence[tuple[datetime, datetime]],
    step: timedelta = DEFAULT_STEP,
    limit: int = MAX_SLOTS,
) -> list[tuple[datetime, datetime]]:
    """Slots of ``duration`` between ``start`` and ``end``, earliest first.

    A slot lies inside one day's opening hours (local time) and keeps
    ``buffer`` from every ``busy`` interval on both sides.
    """
    zone = ZoneInfo(timezone)
    # Arithmetic in UTC: on a zoned datetime Python adds wall-clock time, which is
    # wrong across a DST change.
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    busy = [(b_start.astimezone(UTC), b_end.astimezone(UTC)) for b_start, b_end in busy]
    slots: list[tuple[datetime, datetime]] = []
    day = start.astimezone(zone).date()
    last = end.astimezone(zone).date()
    while day <= last and len(slots) < limit:
        for opening in (h for h in hours if h.weekday == day.weekday()):
            opens = datetime.combine(day, _hhmm(opening.opens), tzinfo=zone).astimezone(UTC)
            closes = datetime.combine(day, _hhmm(opening.closes), tzinfo=zone).astimezone(UTC)
            candidate = opens
            while candidate + duration <= closes and len(slots) < limit:
                finish = candidate + duration
                clear = all(
                    not (b_start < finish + buffer and candidate < b_end + buffer)
                    for b_start, b_end in busy
                )
                if (
                    clear
                    and candidate >= start
                    and finish <= end
                    and _within_hours(candidate, finish, day, opening, zone)
                ):
                    slots.append((candidate, finish))
                candidate += step
        day += timedelta(days=1)
    return sorted(slots)


__all__ = ["DEFAULT_STEP", "MAX_SLOTS", "free_slots"]
