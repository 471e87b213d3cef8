"""Free-slot search: opening hours in the clinic's timezone, buffers, existing bookings.

Opening hours are wall-clock times in the location's timezone, so a slot is built
on the local calendar and only then converted; across a DST change the day simply
has one hour more or less, and a wall time that does not exist is skipped.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from crm_domain.errors import ValidationError
from crm_domain.ports.ai import ScheduleRequest, Slot

STEP = timedelta(minutes=15)
_UTC = ZoneInfo("UTC")


def _hhmm(value: str) -> time:
    try:
        hours, minutes = value.split(":")
        if hours == "24" and minutes == "00":
            return time(23, 59, 59)
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValidationError("opening_hours", f"not a HH:MM time: {value!r}") from None


def _exists(local: datetime, zone: ZoneInfo) -> bool:
    """False for a wall time inside a spring-forward gap."""
    round_trip = local.astimezone(_UTC).astimezone(zone)
    return round_trip.replace(tzinfo=None) == local.replace(tzinfo=None)


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def free_slots(request: ScheduleRequest) -> tuple[Slot, ...]:
    """Ranked free slots; the best ``max_results`` first (then by start time)."""
    if request.duration_minutes <= 0:
        raise ValidationError("duration_minutes", "must be positive")
    if request.buffer_minutes < 0:
        raise ValidationError("buffer_minutes", "must not be negative")
    try:
        zone = ZoneInfo(request.timezone)
    except (KeyError, ValueError):
        raise ValidationError("timezone", f"unknown timezone {request.timezone!r}") from None
    duration = timedelta(minutes=request.duration_minutes)
    buffer = timedelta(minutes=request.buffer_minutes)
    busy = sorted(
        (s.astimezone(_UTC) - buffer, e.astimezone(_UTC) + buffer) for s, e in request.busy
    )
    window_start = request.window_start.astimezone(_UTC)
    window_end = request.window_end.astimezone(_UTC)
    hours: dict[int, list[tuple[time, time]]] = {}
    for weekday, open_text, close_text in request.opening_hours:
        hours.setdefault(weekday, []).append((_hhmm(open_text), _hhmm(close_text)))

    candidates: list[tuple[datetime, datetime]] = []
    first = window_start.astimezone(zone).date()
    last = window_end.astimezone(zone).date()
    for day in _days(first, last):
        for opens, closes in hours.get(day.weekday(), []):
            local = datetime.combine(day, opens, tzinfo=zone)
            closing = datetime.combine(day, closes, tzinfo=zone)
            while True:
                if not _exists(local, zone):
                    local = (local.replace(tzinfo=None) + STEP).replace(tzinfo=zone)
                    continue
                start = local.astimezone(_UTC)
                end = start + duration
                if end > closing.astimezone(_UTC):
                    break
                if start >= window_start and end <= window_end and not _clashes(start, end, busy):
                    candidates.append((start, end))
                # Step on the wall clock so slots stay on :00/:15/:30/:45 across DST.
                local = (local.replace(tzinfo=None) + STEP).replace(tzinfo=zone)
    return _rank(candidates, request, busy, zone)


def _clashes(start: datetime, end: datetime, busy: list[tuple[datetime, datetime]]) -> bool:
    return any(s < end and start < e for s, e in busy)


def _rank(
    candidates: list[tuple[datetime, datetime]],
    request: ScheduleRequest,
    busy: list[tuple[datetime, datetime]],
    zone: ZoneInfo,
) -> tuple[Slot, ...]:
    if not candidates:
        return ()
    window_hours = max((request.window_end - request.window_start).total_seconds() / 3600, 1.0)
    scored: list[Slot] = []
    for start, end in candidates:
        if request.preferred_time is not None:
            gap = abs((start - request.preferred_time).total_seconds()) / 3600
            score = 1.0 / (1.0 + gap)
            reason = "closest to the requested time" if gap < 0.01 else f"{gap:.1f} h from request"
        else:
            # Sooner is better; a slot right next to a booking keeps the day compact.
            wait = (start - request.window_start).total_seconds() / 3600
            score = 1.0 - 0.5 * min(wait / window_hours, 1.0)
            reason = "earliest available"
            if any(
                abs((start - e).total_seconds()) < 60 or abs((s - end).total_seconds()) < 60
                for s, e in busy
            ):
                score += 0.1
                reason = "next to an existing booking (no idle gap)"
        scored.append(
            Slot(
                start=start.astimezone(zone),
                end=end.astimezone(zone),
                score=round(min(score, 1.0), 4),
                reason=reason,
            )
        )
    scored.sort(key=lambda s: (-s.score, s.start))
    return tuple(scored[: max(request.max_results, 0)])


__all__ = ["free_slots"]
