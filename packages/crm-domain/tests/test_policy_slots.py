"""Free-slot suggestions: never outside opening hours, never against another booking (+buffer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_domain.entities.location import OpeningHours
from crm_domain.policies.slots import free_slots

ZONES = ("Australia/Sydney", "Europe/London", "America/New_York")
#: Days around each zone's 2026 daylight-saving changes (and one ordinary week).
ANCHORS = (
    datetime(2026, 4, 3, tzinfo=UTC),
    datetime(2026, 10, 2, tzinfo=UTC),
    datetime(2026, 3, 27, tzinfo=UTC),
    datetime(2026, 10, 23, tzinfo=UTC),
    datetime(2026, 3, 6, tzinfo=UTC),
    datetime(2026, 10, 30, tzinfo=UTC),
    datetime(2026, 6, 15, tzinfo=UTC),
)


@st.composite
def hours(draw: st.DrawFn) -> tuple[OpeningHours, ...]:
    days = draw(st.sets(st.integers(0, 6), min_size=1, max_size=7))
    out = []
    for day in sorted(days):
        opens = draw(st.integers(0, 22 * 4)) * 15
        closes = draw(st.integers(opens // 15 + 1, 24 * 4 - 1)) * 15
        out.append(
            OpeningHours(
                weekday=day,
                opens=f"{opens // 60:02d}:{opens % 60:02d}",
                closes=f"{closes // 60:02d}:{closes % 60:02d}",
            )
        )
    return tuple(out)


@st.composite
def busy(draw: st.DrawFn, anchor: datetime) -> list[tuple[datetime, datetime]]:
    items = []
    for _ in range(draw(st.integers(0, 8))):
        start = anchor + timedelta(minutes=draw(st.integers(0, 4 * 24 * 60)))
        items.append((start, start + timedelta(minutes=draw(st.integers(5, 180)))))
    return items


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_no_slot_is_outside_hours_or_against_a_booking(data: st.DataObject) -> None:
    zone_name = data.draw(st.sampled_from(ZONES))
    anchor = data.draw(st.sampled_from(ANCHORS))
    opening = data.draw(hours())
    duration = timedelta(minutes=data.draw(st.integers(15, 120)))
    buffer = timedelta(minutes=data.draw(st.integers(0, 30)))
    taken = data.draw(busy(anchor))
    end = anchor + timedelta(days=4)
    slots = free_slots(
        start=anchor,
        end=end,
        hours=opening,
        timezone=zone_name,
        duration=duration,
        buffer=buffer,
        busy=taken,
    )
    zone = ZoneInfo(zone_name)
    for slot_start, slot_end in slots:
        assert slot_end - slot_start == duration
        assert anchor <= slot_start and slot_end <= end
        local_start, local_end = slot_start.astimezone(zone), slot_end.astimezone(zone)
        assert local_start.date() == local_end.date()
        assert any(
            h.weekday == local_start.weekday()
            and f"{local_start:%H:%M}" >= h.opens
            and f"{local_end:%H:%M}" <= h.closes
            for h in opening
        )
        for b_start, b_end in taken:
            assert slot_end + buffer <= b_start or b_end + buffer <= slot_start


def test_an_empty_day_is_offered_every_slot_and_a_booking_removes_its_neighbours() -> None:
    sydney = ZoneInfo("Australia/Sydney")
    day = datetime(2026, 3, 4, tzinfo=sydney)  # a Wednesday
    hours = (OpeningHours(weekday=2, opens="08:00", closes="12:00"),)
    common = {
        "start": day,
        "end": day + timedelta(days=1),
        "hours": hours,
        "timezone": "Australia/Sydney",
        "duration": timedelta(minutes=60),
        "buffer": timedelta(minutes=15),
        "step": timedelta(minutes=30),
    }
    free = free_slots(busy=[], **common)  # type: ignore[arg-type]
    assert [s.astimezone(sydney).strftime("%H:%M") for s, _ in free] == [
        "08:00", "08:30", "09:00", "09:30", "10:00", "10:30", "11:00",
    ]  # fmt: skip
    booked = (day.replace(hour=9, minute=30), day.replace(hour=10))
    left = free_slots(busy=[booked], **common)  # type: ignore[arg-type]
    # 08:00-09:00 ends 30 min before (≥ 15 buffer); 10:30 starts 30 min after.
    assert [s.astimezone(sydney).strftime("%H:%M") for s, _ in left] == ["08:00", "10:30", "11:00"]


def test_the_day_sydney_leaves_daylight_time_has_its_wall_clock_hours() -> None:
    sydney = ZoneInfo("Australia/Sydney")
    day = datetime(2026, 4, 5, tzinfo=sydney)  # a Sunday; 03:00 becomes 02:00
    hours = (OpeningHours(weekday=6, opens="01:00", closes="05:00"),)
    slots = free_slots(
        start=day,
        end=day + timedelta(days=1),
        hours=hours,
        timezone="Australia/Sydney",
        duration=timedelta(hours=1),
        buffer=timedelta(0),
        busy=[],
        step=timedelta(hours=1),
    )
    # Five elapsed hours between 01:00 and 05:00 local that day: five one-hour slots.
    assert len(slots) == 5
    assert slots[-1][1].astimezone(sydney).strftime("%H:%M") == "05:00"
