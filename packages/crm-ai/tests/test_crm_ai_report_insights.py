"""The heuristic's report insights: week-over-week change, worst no-show slot, best source."""

from __future__ import annotations

import pytest
from crm_domain.ports.analytics import MetricRow

from crm_ai.heuristic import HeuristicProvider

pytestmark = pytest.mark.anyio


def _row(value: float, records: int = 0, **keys: str) -> MetricRow:
    return MetricRow(keys=keys, value=value, records=records or int(value))


async def test_the_three_findings_are_computed_from_the_numbers() -> None:
    weekly = tuple(
        _row(v, week=w)
        for w, v in (("2026-03-02", 10), ("2026-03-09", 12), ("2026-03-16", 30), ("2026-03-23", 25))
    )
    slots = (
        _row(0.5, 4, weekday="1-Mon", hour="09"),  # worst rate, but too few bookings
        _row(0.4, 10, weekday="3-Wed", hour="15"),
        _row(0.1, 20, weekday="2-Tue", hour="10"),
    )
    funnel = tuple(
        _row(float(v), 10, source=source, stage=stage)
        for source, counts in (
            ("meta_ad", (10, 8, 4, 2)),
            ("referral", (5, 5, 4, 3)),
            ("wix", (4, 4, 4, 4)),
        )
        for stage, v in zip(("lead", "contacted", "booked", "attended"), counts, strict=True)
    )
    result = await HeuristicProvider().generate_insights(
        {
            "bookings by week": weekly,
            "no_show_rate by weekday, hour": slots,
            "funnel by source": funnel,
        },
        None,
    )
    text = "\n".join(result.findings)
    assert "week of 2026-03-16, 12 → 30 (+150%)" in text
    assert "Worst no-show slot: Wed 15:00 — 40% of 10" in text
    assert "Best source by conversion: referral — 3 of 5 leads attended (60%)" in text
    assert any("Wed 15:00" in r for r in result.recommendations)
    assert "no-show rate" in result.summary and "19 leads, 9 attended" in result.summary


async def test_no_finding_without_enough_records() -> None:
    result = await HeuristicProvider().generate_insights(
        {"no_show_rate": (_row(1.0, 1, weekday="1-Mon", hour="09"),)}, None
    )
    assert not any("Worst no-show slot" in f for f in result.findings)
