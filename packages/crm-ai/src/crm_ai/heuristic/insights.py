"""Plain-language findings from metric rows: trends, outliers, leaders and laggards."""

from __future__ import annotations

import itertools
import math
import statistics

from crm_domain.ports.analytics import Dimension, MetricRow

_TIME_DIMS = (Dimension.DAY.value, Dimension.WEEK.value, Dimension.MONTH.value)

_NAMES = {
    "new_contacts": "new contacts",
    "avg_warmness": "average warmness",
    "bookings": "bookings",
    "completed": "completed appointments",
    "no_shows": "no-shows",
    "cancellations": "cancellations",
    "sms_inbound": "SMS replies received",
    "sms_outbound": "SMS sent",
    "tasks_open": "open tasks",
    "no_show_rate": "no-show rate",
    "funnel": "funnel",
    "first_response_minutes": "median first response (minutes)",
}
#: Metrics whose value is a rate or a median: never summed.
_NOT_SUMMED = frozenset({"no_show_rate", "first_response_minutes", "funnel"})
#: A group needs this many records before it can be the "worst" or "best".
MIN_RECORDS = 5
#: Metrics where "up" is bad news.
_LOWER_IS_BETTER = frozenset(
    {"no_shows", "cancellations", "tasks_open", "no_show_rate", "first_response_minutes"}
)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _label(row: MetricRow, skip: str | None = None) -> str:
    parts = [str(v) for k, v in sorted(row.keys.items()) if k != skip]
    return ", ".join(parts) or "all"


def _series(rows: tuple[MetricRow, ...]) -> tuple[str, list[tuple[str, float]]] | None:
    """The time dimension and (bucket, total) pairs in order, when rows have one."""
    for dim in _TIME_DIMS:
        if rows and all(dim in r.keys for r in rows):
            totals: dict[str, float] = {}
            for r in rows:
                bucket = str(r.keys[dim])
                totals[bucket] = totals.get(bucket, 0.0) + float(r.value)
            return dim, sorted(totals.items())
    return None


def _slope(values: list[float]) -> float:
    n = len(values)
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den if den else 0.0


def analyse(
    rows: dict[str, tuple[MetricRow, ...]], focus: str | None
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Summary, findings and recommendations.  Deterministic, never raises on odd data."""
    findings: list[str] = []
    recommendations: list[str] = []
    headline: list[str] = []
    for key, metric_rows in rows.items():
        metric = key.split(" ", 1)[0]  # keys may be "bookings by week" (supporting figures)
        good = [
            r for r in metric_rows if isinstance(r.value, int | float) and math.isfinite(r.value)
        ]
        name = _NAMES.get(metric, metric.replace("_", " "))
        specific = _specific(metric, good, name)
        findings.extend(specific[0])
        recommendations.extend(specific[1])
        if key != metric and metric in rows:
            continue  # a supporting figure of a metric already reported: its findings only
        if metric in _NOT_SUMMED:
            if good and metric != "funnel":
                headline.append(f"{name} {_fmt_value(metric, _weighted(good))}")
            elif good:
                leads = sum(r.value for r in good if r.keys.get("stage") == "lead")
                attended = sum(r.value for r in good if r.keys.get("stage") == "attended")
                headline.append(f"{_fmt(leads)} leads, {_fmt(attended)} attended")
            elif key == metric:
                findings.append(f"No data for {name} in this period.")
            continue
        if not good:
            findings.append(f"No data for {name} in this period.")
            continue
        total = sum(float(r.value) for r in good)
        average_metric = metric.startswith("avg_")
        verb = "is" if average_metric else "are"
        series = _series(tuple(good))
        if series:
            dim, points = series
            values = [v for _b, v in points]
            if len(values) >= 2:
                first, last = values[0], values[-1]
                slope = _slope(values)
                mean = statistics.fmean(values)
                rel = slope / mean if mean else 0.0
                if abs(rel) >= 0.05:
                    direction = "rising" if slope > 0 else "falling"
                    findings.append(
                        f"{name.capitalize()} {verb} {direction} {dim} by {dim} "
                        f"(from {_fmt(first)} in {points[0][0]} "
                        f"to {_fmt(last)} in {points[-1][0]})."
                    )
                    bad = (slope > 0) == (metric in _LOWER_IS_BETTER)
                    if bad:
                        recommendations.append(_advice(metric, rising=slope > 0))
                else:
                    findings.append(
                        f"{name.capitalize()} {verb} steady {dim} by {dim} (about {_fmt(mean)})."
                    )
                findings.extend(_outliers(name, [(b, v) for b, v in points]))
        else:
            ranked = sorted(good, key=lambda r: -float(r.value))
            if len(ranked) >= 2:
                top, bottom = ranked[0], ranked[-1]
                findings.append(
                    f"Most {name}: {_label(top)} ({_fmt(top.value)}); "
                    f"fewest: {_label(bottom)} ({_fmt(bottom.value)})."
                )
                findings.extend(_outliers(name, [(_label(r), float(r.value)) for r in ranked]))
                if metric in _LOWER_IS_BETTER and top.value > 0:
                    recommendations.append(
                        f"Look at why {_label(top)} has the most {name}; "
                        + _advice(metric, rising=True).lower()
                    )
        if average_metric:
            headline.append(f"{name} {_fmt(statistics.fmean(float(r.value) for r in good))}")
        else:
            headline.append(f"{_fmt(total)} {name}")
    if not headline:
        summary = "There is no data to summarise for this period."
    else:
        summary = "In this period: " + "; ".join(headline) + "."
    if focus:
        key = focus.lower()
        focused = [f for f in findings if any(w in f.lower() for w in key.split())]
        findings = focused + [f for f in findings if f not in focused]
    if not recommendations and findings:
        recommendations.append("No action needed; keep monitoring these figures.")
    return summary, tuple(findings[:10]), tuple(dict.fromkeys(recommendations))[:5]


def _weighted(rows: list[MetricRow]) -> float:
    total = sum(r.records for r in rows)
    if not total:
        return statistics.fmean(r.value for r in rows)
    return sum(r.value * r.records for r in rows) / total


def _fmt_value(metric: str, value: float) -> str:
    return f"{value:.0%}" if metric == "no_show_rate" else _fmt(value)


def _slot(row: MetricRow) -> str:
    keys = row.keys
    parts = []
    if "weekday" in keys:
        parts.append(str(keys["weekday"]).split("-", 1)[-1])
    if "hour" in keys:
        parts.append(f"{keys['hour']}:00")
    parts += [str(v) for k, v in sorted(keys.items()) if k not in ("weekday", "hour", "stage")]
    return " ".join(parts) or "all"


def _specific(metric: str, rows: list[MetricRow], name: str) -> tuple[list[str], list[str]]:
    """The three findings a manager asks for first, when the rows allow them.

    * the largest week-over-week change of a weekly series;
    * the worst no-show slot (highest rate among groups of at least
      :data:`MIN_RECORDS` bookings);
    * the best lead source by conversion (attended / leads, at least
      :data:`MIN_RECORDS` leads).
    """
    findings: list[str] = []
    advice: list[str] = []
    if metric != "funnel" and rows and all("week" in r.keys for r in rows):
        weeks: dict[str, float] = {}
        for r in rows:
            weeks[str(r.keys["week"])] = weeks.get(str(r.keys["week"]), 0.0) + r.value
        ordered = sorted(weeks.items())
        changes = [(after[0], before[1], after[1]) for before, after in itertools.pairwise(ordered)]
        if changes and metric not in _NOT_SUMMED:
            week, old, new = max(changes, key=lambda c: (abs(c[2] - c[1]), c[0]))
            if new != old:
                pct = f" ({(new - old) / old:+.0%})" if old else ""
                findings.append(
                    f"Largest week-over-week change in {name}: week of {week}, "
                    f"{_fmt(old)} → {_fmt(new)}{pct}."
                )
    if metric == "no_show_rate":
        slots = [
            r
            for r in rows
            if ("weekday" in r.keys or "hour" in r.keys) and r.records >= MIN_RECORDS
        ]
        if slots:
            worst = max(slots, key=lambda r: (r.value, r.records))
            findings.append(
                f"Worst no-show slot: {_slot(worst)} — {worst.value:.0%} of "
                f"{worst.records} bookings with an outcome."
            )
            if worst.value > 0:
                advice.append(
                    f"Call or text patients booked for {_slot(worst)} the day before; "
                    "that slot loses the most appointments."
                )
    if metric == "funnel" and rows and all("source" in r.keys for r in rows):
        leads: dict[str, float] = {}
        attended: dict[str, float] = {}
        for r in rows:
            source = str(r.keys["source"])
            if r.keys.get("stage") == "lead":
                leads[source] = leads.get(source, 0.0) + r.value
            elif r.keys.get("stage") == "attended":
                attended[source] = attended.get(source, 0.0) + r.value
        rates = {s: attended.get(s, 0.0) / n for s, n in leads.items() if n >= MIN_RECORDS}
        if rates:
            best = max(rates, key=lambda s: (rates[s], leads[s]))
            findings.append(
                f"Best source by conversion: {best} — {_fmt(attended.get(best, 0.0))} of "
                f"{_fmt(leads[best])} leads attended ({rates[best]:.0%})."
            )
            advice.append(f"Put more of the marketing budget where {best} leads come from.")
    return findings, advice


def _outliers(name: str, points: list[tuple[str, float]]) -> list[str]:
    """Buckets more than 2.5 robust deviations from the median (MAD based)."""
    if len(points) < 5:
        return []
    values = [v for _l, v in points]
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    if mad == 0:
        return []
    out = []
    for label, value in points:
        z = 0.6745 * (value - median) / mad
        if abs(z) > 3.5:
            kind = "unusually high" if z > 0 else "unusually low"
            out.append(
                f"{name.capitalize()} were {kind} for {label} "
                f"({_fmt(value)} vs a typical {_fmt(median)})."
            )
    return out


def _advice(metric: str, *, rising: bool) -> str:
    advice = {
        "no_shows": "Send reminders 24 h and 2 h before appointments and follow up no-shows.",
        "cancellations": "Offer rescheduling in the reminder so cancellations become new times.",
        "tasks_open": "Review task assignments; open tasks are piling up.",
        "bookings": "Review lead follow-up speed; bookings are falling.",
        "new_contacts": "Check ad spend and forms; fewer new leads are arriving.",
        "completed": "Check why fewer appointments are completed.",
        "avg_warmness": "Follow up warm leads sooner; average warmness is falling.",
    }
    return advice.get(metric, f"Review {metric.replace('_', ' ')}.")


__all__ = ["analyse"]
