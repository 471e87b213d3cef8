"""A natural-language report question → validated MetricQuery objects (never SQL).

Covers the usual phrasing of a practice manager: a metric ("no-shows",
"no-show rate", "funnel", "first response time", "lead source mix"), a
grouping ("by location", "per week", "weekly", "by weekday and hour", "time
slots"), filters ("for MRI", "from Facebook"), locations ("in Sydney", "at
BNE", "across all clinics") and a period ("last month", "this quarter", "in the
last 30 days", "since 1 March", "since March", "in March").  Periods are
calendar periods in the clinic's timezone, half-open ``[start, end)``; "last N
days" ends now.

What it cannot read it says, in ``not_understood``: no metric at all, a
metric the CRM does not have (revenue: bookings carry no price), or a
grouping word it does not know ("by colour").  A service or source filter a
metric cannot take, or a grouping it cannot have, is dropped and said in the
description.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from crm_domain.metrics import BOOKING_STATUSES, allowed_dimensions
from crm_domain.ports.analytics import Dimension, Metric, MetricQuery

#: A booking noun that may follow a status word ("completed scans", "no-show bookings").
_BOOKING_NOUN = r"(?:\s+(?:scans?|appointments?|appts?|bookings?|exams?|visits?))?"
_LEAD_NOUN = r"(?:\s+to\s+(?:new\s+)?(?:leads?|enquir(?:y|ies)|contacts?|patients?))?"

#: Phrases that are a metric *and* a grouping ("lead source mix").
_METRIC_WITH_GROUPING: tuple[tuple[str, Metric, Dimension], ...] = (
    (
        r"warmness\s+distribution|distribution\s+of\s+warmness|"
        r"(?:hot|warm|cold)\s+(?:vs\.?|versus|and|or)\s+(?:hot|warm|cold)(?:\s+leads?)?",
        Metric.NEW_CONTACTS,
        Dimension.WARMNESS_BAND,
    ),
    (
        r"(?:lead\s+)?source\s+mix|mix\s+of\s+(?:lead\s+)?sources|"
        r"where\s+(?:do\s+)?(?:our\s+)?leads\s+come\s+from",
        Metric.NEW_CONTACTS,
        Dimension.SOURCE,
    ),
)

_METRICS: tuple[tuple[str, Metric], ...] = (
    (
        r"(?:median\s+|average\s+)?(?:first[\s-])?response\s+times?|speed\s+to\s+lead|"
        r"time\s+to\s+(?:first\s+)?(?:reply|respond|response)|"
        r"how\s+(?:fast|quickly|long)\s+(?:do|did|does|it\s+takes?)\s+(?:we\s+|us\s+)?"
        r"(?:to\s+)?(?:reply|respond|answer|get\s+back)" + _LEAD_NOUN,
        Metric.FIRST_RESPONSE_MINUTES,
    ),
    (r"(?:conversion\s+)?funnel|conversions?(?:\s+rates?)?", Metric.FUNNEL),
    (
        r"no[\s-]?show\s+(?:rate|ratio|percentage|%)|(?:rate|share|percentage)\s+of\s+no[\s-]?shows",
        Metric.NO_SHOW_RATE,
    ),
    (
        r"(?:no[\s-]?shows?|did\s*n[o']t\s+(?:show|turn\s+up|attend)|missed)" + _BOOKING_NOUN,
        Metric.NO_SHOWS,
    ),
    (r"(?:cancell?ations?|cancell?ed)" + _BOOKING_NOUN, Metric.CANCELLATIONS),
    (r"(?:average|avg|mean)\s+(?:lead\s+)?warmness|warmness|lead\s+scores?", Metric.AVG_WARMNESS),
    (
        r"(?:completed|attended|finished)" + _BOOKING_NOUN + r"|(?:scans?|appointments?)\s+"
        r"(?:done|completed)|attendances?",
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
#: Things people ask for that the CRM does not record.
_MISSING_METRICS = (
    (
        r"revenue|income|earnings|sales|takings|money|billing|price",
        "revenue: bookings carry no price",
    ),
    (r"profit|margin|costs?", "profit: the CRM records no costs"),
)

#: Source names → the contact source they filter on.
_SOURCES: tuple[tuple[str, str], ...] = (
    (r"facebook|instagram|meta(?:\s+ads?)?|fb|insta", "meta_ad"),
    (r"google(?:\s+ads?)?|adwords", "google_ad"),
    (r"(?:our\s+|the\s+)?website|web\s+forms?|online\s+forms?", "website"),
    (r"wix", "wix"),
    (r"manychat", "manychat"),
    (r"referrals?|referred|gp\s+referrals?", "referral"),
    (r"phone\s+calls?|phone[\s-]ins?|by\s+phone", "phone"),
    (r"walk[\s-]?ins?", "walk_in"),
)
#: Modalities → the service type they filter on (the clinic's own spelling).
_SERVICES: tuple[tuple[str, str], ...] = (
    (r"mri|magnetic\s+resonance", "MRI"),
    (r"ct|cat\s+scans?|computed\s+tomography", "CT"),
    (r"x[\s-]?rays?", "X-ray"),
    (r"ultrasounds?|sonography", "Ultrasound"),
    (r"mammograms?|mammography", "Mammogram"),
    (r"bone\s+density|dexa", "Bone density"),
    (r"pet(?:\s+scans?)?", "PET"),
)

_GROUP_WORDS: tuple[tuple[str, Dimension], ...] = (
    (r"(?:clinic|location|site|branch)(?:es|s)?", Dimension.LOCATION),
    (r"(?:lead\s+)?(?:source|channel)s?", Dimension.SOURCE),
    (r"(?:service|modality|modalities|scan\s+type|type|exam)s?", Dimension.SERVICE_TYPE),
    (r"(?:warmness|temperature)(?:\s+bands?)?|bands?", Dimension.WARMNESS_BAND),
    (r"weekdays?|day\s+of\s+(?:the\s+)?week", Dimension.WEEKDAY),
    (r"hours?(?:\s+of\s+(?:the\s+)?day)?|time\s+of\s+day", Dimension.HOUR),
    (r"day", Dimension.DAY),
    (r"week", Dimension.WEEK),
    (r"month", Dimension.MONTH),
)
_GROUP_PREFIX = r"(?:by|per|each|every|for\s+each|across|broken\s+down\s+by|split\s+by)\s+"
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
    (r"(?:location|clinic|site)[\s-]?by[\s-]?(?:location|clinic|site)", Dimension.LOCATION),
    (r"daily|day[\s-]by[\s-]day", Dimension.DAY),
    (r"weekly|week[\s-](?:by|on)[\s-]week", Dimension.WEEK),
    (r"monthly|month[\s-](?:by|on)[\s-]month", Dimension.MONTH),
    (r"hourly", Dimension.HOUR),
)
#: "time slots": when in the week and the day.
_SLOTS = r"(?:time\s+)?slots?|times?\s+of\s+(?:the\s+)?week"
#: Words that may follow "by"/"per" without being a grouping.
_NOT_GROUPINGS = re.compile(
    r"(?:the|a|an|far|now|then|phone|email|sms|text|(?:last|this|next|previous)\b.*|"
    r"clinics?|locations?|sites?|branch(?:es)?|sources?|channels?|lead|services?|modality|"
    r"modalities|scans?|types?|exams?|warmness|temperature|bands?|weekdays?|hours?|time|days?|"
    r"weeks?|months?|quarters?|years?|each|every|cent|person|patient)$"
)
_ALL_LOCATIONS = (
    r"(?:all|every|each)\s+(?:of\s+(?:our|the)\s+)?(?:locations?|clinics?|sites?|branch(?:es)?)|"
    r"everywhere|company[\s-]wide|network[\s-]wide"
)

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
        # Exact durations count in absolute time (a daylight-saving change in
        # between does not move the start by an hour).
        if unit == "day":
            start = (now - timedelta(days=count)).astimezone(zone)
        elif unit == "week":
            start = (now - timedelta(weeks=count)).astimezone(zone)
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
    since_month = re.search(
        r"\bsince\s+(?:the\s+(?:start|beginning)\s+of\s+)?(" + _MONTH_RE + r")\b", low
    )
    if since_month:
        month = _MONTHS[since_month[1]]
        year = today.year if month <= today.month else today.year - 1
        return days(date(year, month, 1)), local, f"since {date(year, month, 1).isoformat()}"
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
    return (now - timedelta(days=30)).astimezone(zone), local, "the last 30 days (no period named)"


def _find(patterns: tuple[tuple[str, str], ...], low: str) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(value for pattern, value in patterns if re.search(rf"\b(?:{pattern})\b", low))
    )


def _place_names(question: str) -> list[str]:
    """Capitalised words after "in"/"at"/"for" that are not months, weekdays or vocabulary."""
    names = []
    for match in re.finditer(
        r"\b(?:in|at|for)\s+([A-Z][a-z]+(?:\s*(?:,|and|&)\s*[A-Z][a-z]+)*)", question
    ):
        for word in re.split(r"\s*(?:,|and|&)\s*", match[1]):
            low = word.lower()
            if low in _MONTHS or low in _PLACE_STOPWORDS or _find(_SOURCES + _SERVICES, low):
                continue
            names.append(low)
    return names


_PLACE_STOPWORDS = frozenset(
    {
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "the",
        "our",
        "each",
        "every",
        "all",
        "total",
        "this",
        "last",
        "next",
    }
)


def parse(
    question: str, now: datetime, timezone: str
) -> tuple[tuple[MetricQuery, ...], tuple[str, ...], str, tuple[str, ...]]:
    """Queries, location codes, a plain description, and the parts not understood.

    Never raises on odd text: what it cannot read is in the fourth item.
    """
    try:
        zone = ZoneInfo(timezone)
    except (KeyError, ValueError):
        zone, timezone = ZoneInfo("UTC"), "UTC"
    low = " " + re.sub(r"\s+", " ", question.lower()) + " "
    not_understood: list[str] = []
    dims_found: list[tuple[int, Dimension]] = []
    spans: list[tuple[int, int]] = []
    for pattern, dim in _DIMENSIONS:
        for m in re.finditer(r"\b(?:" + pattern + r")\b", low):
            # By end position: "by service and location" ends after "by service".
            dims_found.append((m.end(), dim))
            spans.append(m.span())
    # Grouping words are not metrics ("funnel by warmness band" is not average warmness).
    remaining = "".join(" " if any(a <= i < b for a, b in spans) else c for i, c in enumerate(low))
    slots = re.search(r"\b(?:" + _SLOTS + r")\b", remaining)
    if slots:
        dims_found += [(slots.end(), Dimension.WEEKDAY), (slots.end() + 1, Dimension.HOUR)]
        remaining = remaining.replace(slots[0], " ", 1)
    metrics: list[Metric] = []
    for pattern, metric, dim in _METRIC_WITH_GROUPING:
        phrase = re.search(r"\b(?:" + pattern + r")\b", remaining)
        if phrase:
            metrics.append(metric)
            dims_found.append((phrase.end(), dim))
            remaining = remaining.replace(phrase[0], " ", 1)
    for pattern, reason in _MISSING_METRICS:
        if re.search(r"\b(?:" + pattern + r")\b", remaining):
            not_understood.append(reason)
    for pattern, metric in _METRICS:
        if re.search(r"\b(?:" + pattern + r")\b", remaining):
            if metric not in metrics:
                metrics.append(metric)
            # Consume the words so "no-show bookings" is not also "bookings".
            remaining = re.sub(r"\b(?:" + pattern + r")\b", " ", remaining)
    sources = _find(_SOURCES, low)
    services = _find(_SERVICES, low)
    if not metrics and sources and not not_understood:
        metrics = [Metric.NEW_CONTACTS]  # "how many referrals": leads from that source
    if not metrics and not not_understood:
        not_understood.append(
            "the metric: ask about bookings, attended, no-shows, no-show rate, cancellations,"
            " the funnel, new leads, warmness, first response time, SMS or open tasks"
        )
    for m in re.finditer(r"\b(?:by|per|broken down by|split by)\s+(\w+(?:\s+\w+)?)", low):
        first = m[1].split()[0]
        if not _NOT_GROUPINGS.match(first) and not _NOT_GROUPINGS.match(m[1]):
            not_understood.append(f"the grouping {m[0].strip()!r}")
    dims = list(dict.fromkeys(d for _pos, d in sorted(dims_found)))
    start, end, period = parse_period(question, now, zone)
    letters = [c for c in question if c.isalpha()]
    shouting = bool(letters) and sum(c.isupper() for c in letters) > 0.6 * len(letters)
    codes = [] if shouting else _LOCATION_RE.findall(question)  # capitals everywhere: no codes
    named = [c for c in codes if c not in _NOT_LOCATIONS] + (
        [] if shouting else _place_names(question)
    )
    if re.search(r"\b(?:" + _ALL_LOCATIONS + r")\b", low):
        named = ["*"]
    locations = tuple(dict.fromkeys(named))
    queries: list[MetricQuery] = []
    dropped: list[str] = []
    for metric in metrics:
        allowed = allowed_dimensions(metric)
        usable = []
        for dim in dims:
            if dim in allowed:
                usable.append(dim)
            else:
                dropped.append(f"group {metric.value} by {dim.value}")
        metric_services = services
        if services and not (metric in BOOKING_STATUSES or metric is Metric.FUNNEL):
            dropped.append(f"filter {metric.value} by service")
            metric_services = ()
        metric_sources = sources
        if sources and Dimension.SOURCE not in allowed:
            dropped.append(f"filter {metric.value} by source")
            metric_sources = ()
        queries.append(
            MetricQuery(
                metric=metric,
                start=start,
                end=end,
                dimensions=tuple(usable[:2]),
                timezone=timezone,
                service_types=metric_services,
                sources=metric_sources,
            )
        )
    grouped = f" by {' and '.join(d.value for d in dims[:2])}" if dims else ""
    filters = "".join(f" for {', '.join(values)}" for values in (services, sources) if values)
    where = (
        " at every location you can report on"
        if locations == ("*",)
        else f" at {', '.join(locations)}"
        if locations
        else ""
    )
    what = " and ".join(m.value for m in metrics) or "nothing"
    text = f"{what}{grouped}{filters}{where}, {period}"
    if dropped:
        text += f" (cannot {'; '.join(dict.fromkeys(dropped))})"
    return tuple(queries), locations, text, tuple(not_understood)


__all__ = ["parse", "parse_period"]
