"""A natural-language report question → validated MetricQuery objects (never SQL).

Covers the usual phrasing of a practice manager: a metric ("no-shows",
"bookings", "average warmness"), a grouping ("by location", "per week",
"weekly"), and a period ("last month", "this quarter", "in the last 30 days",
"since 1 March", "in March").  Periods are calendar periods in the clinic's
timezone, half-open ``[start, end)``; "last N days" ends now.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from crm_domain.ports.analytics import Dimension, Metric, MetricQuery

#: A booking noun that may follow a status word ("completed scans", "no-show bookings").
_BOOKING_NOUN = r"(?:\s+(?:scans?|appointments?|appts?|bookings?|exams?|visits?))?"

_METRICS: tuple[tuple[str, Metric], ...] = (
    (
        r"(?:no[\s-]?shows?|did\s*n[o']t\s+(?:show|turn\s+up|attend)|missed)" + _BOOKING_NOUN,
        Metric.NO_SHOWS,
    ),
    (r"(?:cancell?ations?|cancell?ed)" + _BOOKING_NOUN, Metric.CANCELLATIONS),
    (r"(?:average|avg|mean)\s+(?:lead\s+)?warmness|warmness|lead\s+scores?", Metric.AVG_WARMNESS),
    (
        r"(?:completed|attended|finished)" + _BOOKING_NOUN + r"|(?:scans?|appointments?)\s+"
        r"(?:done|completed)",
        Metric.COMPLETED,
    ),
    (
        r"(?:new\s+)?(?:leads?|contacts?|enquir(?:y|ies)|sign[\s-]?ups?)|new\s+patients?",
        Metric.NEW_CONTACTS,
    ),
    (
        r"(?:inbound|incoming|received)\s+(?:sms|texts?|messages?)|(?:sms|text)\s+replies|replies|"
        r"(?:vs\.?|versus|and)\s+received",
        Metric.SMS_INBOUND,
    ),
    (
        r"(?:outbound|outgoing|sent)\s+(?:sms|texts?|messages?)|(?:sms|texts?|messages?)\s+sent",
        Metric.SMS_OUTBOUND,
    ),
    (r"open\s+tasks?|tasks?", Metric.TASKS_OPEN),
    (r"bookings?|appointments?|appts?|scans?|visits?", Metric.BOOKINGS),
)

#: "from Facebook" cannot filter (queries have no filters) but grouping by source
#: shows that source's row.
_SOURCE_NAMED_RE = re.compile(
    r"\b(?:from|via|through|by)\s+(?:facebook|instagram|meta|google|adwords|our\s+website|"
    r"the\s+website|website|wix|manychat|referrals?|walk[\s-]?ins?|phone\s+calls?)\b"
)

_GROUP_WORDS: tuple[tuple[str, Dimension], ...] = (
    (r"(?:clinic|location|site|branch)(?:es|s)?", Dimension.LOCATION),
    (r"(?:lead\s+)?(?:source|channel)s?", Dimension.SOURCE),
    (r"(?:service|modality|modalities|scan\s+type|type|exam)s?", Dimension.SERVICE_TYPE),
    (r"day", Dimension.DAY),
    (r"week", Dimension.WEEK),
    (r"month", Dimension.MONTH),
)
_GROUP_PREFIX = r"(?:by|per|each|every|for\s+each|across)\s+"
_DIMENSIONS: tuple[tuple[str, Dimension], ...] = (
    *(
        # "by location", and the second of "by service and location"
        (
            _GROUP_PREFIX
            + words
            + r"|"
            + _GROUP_PREFIX
            + r"\w+(?:\s+\w+)?\s*(?:,|and|&)\s*"
            + words,
            dim,
        )
        for words, dim in _GROUP_WORDS
    ),
    (
        r"(?:location|clinic|site)[\s-]?by[\s-]?(?:location|clinic|site)|where\s+.*came\s+from",
        Dimension.LOCATION,
    ),
    (r"daily|day[\s-]by[\s-]day", Dimension.DAY),
    (r"weekly|week[\s-](?:by|on)[\s-]week", Dimension.WEEK),
    (r"monthly|month[\s-](?:by|on)[\s-]month", Dimension.MONTH),
)

#: Which dimensions each metric supports (``service_type`` is booking metrics only).
_BOOKING_METRICS = frozenset(
    {Metric.BOOKINGS, Metric.COMPLETED, Metric.NO_SHOWS, Metric.CANCELLATIONS}
)
_SOURCE_METRICS = frozenset({Metric.NEW_CONTACTS, Metric.AVG_WARMNESS}) | _BOOKING_METRICS

_MONTHS = {
    name: i
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_LOCATION_RE = re.compile(r"\b([A-Z]{2,5}\d?)\b")
#: Upper-case words that are not location codes.
_NOT_LOCATIONS = frozenset(
    {
        "SMS",
        "MRI",
        "CT",
        "PET",
        "AM",
        "PM",
        "UTC",
        "ID",
        "GP",
        "OK",
        "Q1",
        "Q2",
        "Q3",
        "Q4",
        "YTD",
        "MTD",
        "QTD",
        "AI",
        "CRM",
        "XRAY",
        "DEXA",
        "US",
        "USA",
        "UK",
        "AU",
        "VS",
        "I",
        "A",
    }
)
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "twelve": 12,
    "thirty": 30,
    "ninety": 90,
}


def _start_of_day(d: date, zone: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=zone)


def _month_start(year: int, month: int) -> date:
    while month < 1:
        month += 12
        year -= 1
    while month > 12:
        month -= 12
        year += 1
    return date(year, month, 1)


def parse_period(text: str, now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime, str]:
    """The ``[start, end)`` a question names, and how it was read."""
    local = now.astimezone(zone)
    today = local.date()
    low = text.lower()

    def days(d: date) -> datetime:
        return _start_of_day(d, zone)

    match = re.search(
        r"\b(?:in\s+the\s+|over\s+the\s+|for\s+the\s+)?(?:last|past|previous)\s+"
        r"(\d+|" + "|".join(_NUMBER_WORDS) + r")\s+(day|week|month|year)s?\b",
        low,
    )
    if match:
        count = int(match[1]) if match[1].isdigit() else _NUMBER_WORDS[match[1]]
        count = max(1, min(count, 3660))
        unit = match[2]
        if unit == "day":
            start = local - timedelta(days=count)
        elif unit == "week":
            start = local - timedelta(weeks=count)
        elif unit == "month":
            first = _month_start(today.year, today.month - count)
            start = days(first.replace(day=min(today.day, 28)))
        else:
            start = days(date(today.year - count, today.month, min(today.day, 28)))
        return start, local, f"the last {count} {unit}{'s' if count != 1 else ''}"
    if re.search(r"\btoday\b", low):
        return days(today), days(today + timedelta(days=1)), "today"
    if re.search(r"\byesterday\b", low):
        return days(today - timedelta(days=1)), days(today), "yesterday"
    monday = today - timedelta(days=today.weekday())
    if re.search(r"\b(?:last|previous|past)\s+week\b", low):
        return days(monday - timedelta(days=7)), days(monday), "last week"
    if re.search(r"\bthis\s+week\b", low):
        return days(monday), days(monday + timedelta(days=7)), "this week"
    month_start = today.replace(day=1)
    if re.search(r"\b(?:last|previous|past)\s+month\b", low):
        prev = _month_start(today.year, today.month - 1)
        return days(prev), days(month_start), "last month"
    if re.search(r"\bthis\s+month\b|\bmonth\s+to\s+date\b|\bmtd\b", low):
        return days(month_start), days(_month_start(today.year, today.month + 1)), "this month"
    quarter_first = _month_start(today.year, 3 * ((today.month - 1) // 3) + 1)
    if re.search(r"\b(?:last|previous|past)\s+quarter\b", low):
        prev = _month_start(quarter_first.year, quarter_first.month - 3)
        return days(prev), days(quarter_first), "last quarter"
    if re.search(r"\bthis\s+quarter\b|\bquarter\s+to\s+date\b|\bqtd\b", low):
        nxt = _month_start(quarter_first.year, quarter_first.month + 3)
        return days(quarter_first), days(nxt), "this quarter"
    if re.search(r"\b(?:last|previous|past)\s+year\b", low):
        return days(date(today.year - 1, 1, 1)), days(date(today.year, 1, 1)), "last year"
    if re.search(r"\bthis\s+year\b|\byear\s+to\s+date\b|\bytd\b", low):
        return days(date(today.year, 1, 1)), days(date(today.year + 1, 1, 1)), "this year"
    since = re.search(
        r"\bsince\s+(\d{1,2})\s+("
        + _MONTH_RE
        + r")\b|\bsince\s+("
        + _MONTH_RE
        + r")\s+(\d{1,2})\b",
        low,
    )
    if since:
        day_s, month_s = (since[1], since[2]) if since[1] else (since[4], since[3])
        month = _MONTHS[month_s]
        year = today.year if (month, int(day_s)) <= (today.month, today.day) else today.year - 1
        try:
            start_day = date(year, month, int(day_s))
        except ValueError:
            start_day = date(year, month, 1)
        return days(start_day), local, f"since {start_day.isoformat()}"
    quarter = re.search(r"\bq([1-4])(?:\s+(20\d\d))?\b", low)
    if quarter:
        first_month = 3 * (int(quarter[1]) - 1) + 1
        year = int(quarter[2]) if quarter[2] else today.year
        if not quarter[2] and date(year, first_month, 1) > today:
            year -= 1  # "Q4" in March means the last one
        first = date(year, first_month, 1)
        return days(first), days(_month_start(year, first_month + 3)), f"Q{quarter[1]} {year}"
    named = re.search(r"\b(?:in|for|during)\s+(" + _MONTH_RE + r")(?:\s+(\d{4}))?\b", low)
    if named:
        month = _MONTHS[named[1]]
        year = today.year if month <= today.month else today.year - 1
        if named[2]:
            year = int(named[2])
        first = date(year, month, 1)
        return days(first), days(_month_start(year, month + 1)), first.strftime("%B %Y")
    year_named = re.search(r"\b(?:in|for|during|of)\s+(20\d\d)\b", low)
    if year_named:
        year = int(year_named[1])
        return days(date(year, 1, 1)), days(date(year + 1, 1, 1)), str(year)
    return local - timedelta(days=30), local, "the last 30 days (no period named)"


def parse(
    question: str, now: datetime, timezone: str
) -> tuple[tuple[MetricQuery, ...], tuple[str, ...], str]:
    """Queries, location codes and a plain description.  Never raises on odd text."""
    try:
        zone = ZoneInfo(timezone)
    except (KeyError, ValueError):
        zone, timezone = ZoneInfo("UTC"), "UTC"
    low = " " + re.sub(r"\s+", " ", question.lower()) + " "
    metrics: list[Metric] = []
    remaining = low
    for pattern, metric in _METRICS:
        if re.search(r"\b(?:" + pattern + r")\b", remaining):
            if metric not in metrics:
                metrics.append(metric)
            # Consume the words so "no-show bookings" is not also "bookings".
            remaining = re.sub(r"\b(?:" + pattern + r")\b", " ", remaining)
    if not metrics:
        metrics = [Metric.BOOKINGS]
    dims_found: list[tuple[int, Dimension]] = []
    for pattern, dim in _DIMENSIONS:
        m = re.search(r"\b(?:" + pattern + r")\b", low)
        if m:
            # By end position: "by service and location" ends after "by service".
            dims_found.append((m.end(), dim))
    source_named = _SOURCE_NAMED_RE.search(low)
    if source_named:
        dims_found.append((source_named.end(), Dimension.SOURCE))
    dims = list(dict.fromkeys(d for _pos, d in sorted(dims_found)))
    start, end, period = parse_period(question, now, zone)
    letters = [c for c in question if c.isalpha()]
    shouting = bool(letters) and sum(c.isupper() for c in letters) > 0.6 * len(letters)
    codes = [] if shouting else _LOCATION_RE.findall(question)  # capitals everywhere: no codes
    locations = tuple(dict.fromkeys(code for code in codes if code not in _NOT_LOCATIONS))
    queries: list[MetricQuery] = []
    dropped: list[str] = []
    for metric in metrics:
        usable = []
        for dim in dims:
            if (dim is Dimension.SERVICE_TYPE and metric not in _BOOKING_METRICS) or (
                dim is Dimension.SOURCE and metric not in _SOURCE_METRICS
            ):
                dropped.append(f"{dim.value} for {metric.value}")
            else:
                usable.append(dim)
        queries.append(
            MetricQuery(
                metric=metric, start=start, end=end, dimensions=tuple(usable[:2]), timezone=timezone
            )
        )
    grouped = f" by {' and '.join(d.value for d in dims[:2])}" if dims else ""
    where = f" at {', '.join(locations)}" if locations else ""
    text = f"{' and '.join(m.value for m in metrics)}{grouped}{where} for {period}"
    if dropped:
        text += f" (cannot group {', '.join(dropped)})"
    return tuple(queries), locations, text


__all__ = ["parse", "parse_period"]
