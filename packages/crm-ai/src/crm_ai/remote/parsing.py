"""Turning a model's answer into validated attrs results.

A model's answer is untrusted input.  It is (1) pulled out of any surrounding
prose or code fence, (2) structured by a strict cattrs converter into small
"wire" classes (wrong types are errors, not coerced: ``"0.9"`` is not a float),
and (3) checked against the domain (enum values, ranges, allowed metrics,
lengths) while being converted into the port's result types.  Any failure is an
:class:`OutputError`, which the provider answers with a repair retry and then a
fallback to the heuristics.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn
from crm_domain.entities import SmsIntent, TaskPriority
from crm_domain.errors import ValidationError
from crm_domain.ports.analytics import Dimension, Metric, MetricQuery
from crm_domain.values import warmness_band

T = TypeVar("T")

MAX_TEXT = 2000
MAX_HTML = 50_000
MAX_ITEMS = 10


class OutputError(Exception):
    """The model's answer is not usable; the message says why (fed back for repair)."""


# --- wire classes: what the model is asked to return ------------------------------


@attrs.frozen(slots=True, kw_only=True)
class IntentOut:
    """Model answer for SMS intent."""

    intent: str
    confidence: float
    proposed_time: str | None = None


@attrs.frozen(slots=True, kw_only=True)
class WarmnessOut:
    """Model answer for warmness."""

    score: int
    reasons: list[str]
    next_best_action: str


@attrs.frozen(slots=True, kw_only=True)
class CampaignOut:
    """Model answer for a campaign draft."""

    subject: str
    html: str
    text: str


@attrs.frozen(slots=True, kw_only=True)
class InsightsOut:
    """Model answer for insights."""

    summary: str
    findings: list[str]
    recommendations: list[str]


@attrs.frozen(slots=True, kw_only=True)
class QueryOut:
    """One metric query in a model answer (dates are ISO 8601 strings)."""

    metric: str
    start: str
    end: str
    dimensions: list[str] = attrs.Factory(list)
    service_types: list[str] = attrs.Factory(list)
    sources: list[str] = attrs.Factory(list)


@attrs.frozen(slots=True, kw_only=True)
class ReportOut:
    """Model answer for a report question."""

    queries: list[QueryOut]
    understood_as: str
    locations: list[str] = attrs.Factory(list)


@attrs.frozen(slots=True, kw_only=True)
class TaskOut:
    """Model answer for task priority."""

    priority: str
    reason: str


# --- the converter -----------------------------------------------------------------


def _strict_str(value: Any, _t: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: Any, _t: type) -> int:
    # bool is an int in Python but never a score; a float like 72.0 is fine.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise TypeError(f"expected an integer, got {value!r}")
    return int(value)


def _strict_float(value: Any, _t: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise TypeError("expected a finite number")
    return float(value)


def make_converter() -> cattrs.Converter:
    """A strict converter of its own (the global one is shared and lenient)."""
    converter = cattrs.Converter(forbid_extra_keys=False)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)

    def _list_hook(value: Any, type_: Any) -> list[Any]:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        (item,) = getattr(type_, "__args__", (Any,))
        return [converter.structure(v, item) for v in value]

    converter.register_structure_hook_func(
        lambda t: getattr(t, "__origin__", None) is list, _list_hook
    )
    for cls in (IntentOut, WarmnessOut, CampaignOut, InsightsOut, QueryOut, ReportOut, TaskOut):
        converter.register_structure_hook(cls, make_dict_structure_fn(cls, converter))
    return converter


_CONVERTER = make_converter()


# --- JSON extraction ---------------------------------------------------------------

_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_json(raw: object) -> dict[str, Any]:
    """The first JSON object in a model answer: the object itself, a fenced block,
    or the first decodable ``{...}`` in prose.  Raises ``OutputError``."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise OutputError(f"expected a JSON object, got {type(raw).__name__}")
    text = raw.strip()
    if not text:
        raise OutputError("the answer was empty")
    candidates = [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        start = candidate.find("{")
        tries = 0
        while start != -1 and tries < 50:
            tries += 1
            try:
                value, _end = decoder.raw_decode(candidate, start)
            except (json.JSONDecodeError, RecursionError):
                start = candidate.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    raise OutputError("no JSON object found in the answer")


def structure(data: dict[str, Any], cls: type[T]) -> T:
    """Structure ``data`` into a wire class; any failure becomes ``OutputError``."""
    try:
        return _CONVERTER.structure(data, cls)
    except Exception as exc:  # cattrs raises several types (and exception groups)
        details = "; ".join(_messages(exc))
        raise OutputError(f"the JSON does not match the schema: {details}") from None


def _messages(exc: BaseException) -> list[str]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[str] = []
        for inner in exc.exceptions:
            out.extend(_messages(inner))
        return out[:5]
    return [f"{type(exc).__name__}: {exc}"[:200]]


# --- domain validation --------------------------------------------------------------


def clean_text(value: str, field: str, limit: int = MAX_TEXT, *, required: bool = True) -> str:
    """Stripped text within ``limit`` characters (control characters removed)."""
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", value).strip()
    if required and not text:
        raise OutputError(f"{field} is empty")
    if len(text) > limit:
        raise OutputError(f"{field} is longer than {limit} characters")
    return text


def clean_list(values: list[str], field: str, limit: int = 500) -> tuple[str, ...]:
    """Non-empty, de-duplicated strings, at most ``MAX_ITEMS``."""
    out = [clean_text(v, field, limit, required=False) for v in values[: MAX_ITEMS * 2]]
    return tuple(dict.fromkeys(v for v in out if v))[:MAX_ITEMS]


def intent_fields(
    out: IntentOut, received_at: datetime
) -> tuple[SmsIntent, float, datetime | None]:
    """Validated intent, confidence and proposed time (ignored unless reschedule)."""
    try:
        intent = SmsIntent(out.intent.strip().lower())
    except ValueError:
        raise OutputError(f"intent must be one of {[i.value for i in SmsIntent]}") from None
    if not 0.0 <= out.confidence <= 1.0:
        raise OutputError("confidence must be from 0 to 1")
    when: datetime | None = None
    if intent is SmsIntent.RESCHEDULE and out.proposed_time:
        when = parse_instant(out.proposed_time, "proposed_time")
        # A time in the past or absurdly far ahead is a hallucination, not a request.
        if when <= received_at or when > received_at + timedelta(days=366):
            when = None
    return intent, out.confidence, when


def parse_instant(value: str, field: str) -> datetime:
    """An ISO 8601 instant with an offset."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise OutputError(f"{field} is not an ISO 8601 date-time") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise OutputError(f"{field} must include a UTC offset")
    return when


def warmness_fields(out: WarmnessOut) -> tuple[int, str, tuple[str, ...], str]:
    """Score (0–100), the band derived from it, reasons and next action."""
    if not 0 <= out.score <= 100:
        raise OutputError("score must be from 0 to 100")
    reasons = clean_list(out.reasons, "reasons", 300)
    if not reasons:
        raise OutputError("reasons must not be empty")
    action = clean_text(out.next_best_action, "next_best_action", 300)
    # The band is derived, never taken from the model, so it always agrees with the score.
    return out.score, warmness_band(out.score), reasons, action


def priority_fields(out: TaskOut) -> tuple[TaskPriority, str]:
    """Validated priority and reason."""
    try:
        priority = TaskPriority(out.priority.strip().lower())
    except ValueError:
        raise OutputError(f"priority must be one of {[p.value for p in TaskPriority]}") from None
    return priority, clean_text(out.reason, "reason", 300)


def report_fields(
    out: ReportOut, timezone: str, now: datetime
) -> tuple[tuple[MetricQuery, ...], tuple[str, ...], str]:
    """Validated metric queries (allowed metrics and dimensions only), locations, text."""
    if not out.queries:
        raise OutputError("queries must not be empty")
    if len(out.queries) > 5:
        raise OutputError("at most 5 queries")
    queries = []
    for i, q in enumerate(out.queries):
        if q.metric not in {m.value for m in Metric}:
            raise OutputError(f"queries[{i}].metric must be one of {[m.value for m in Metric]}")
        bad = [d for d in q.dimensions if d not in {x.value for x in Dimension}]
        if bad:
            raise OutputError(f"queries[{i}].dimensions has unknown values {bad}")
        start = parse_instant(q.start, f"queries[{i}].start")
        end = parse_instant(q.end, f"queries[{i}].end")
        if end - start > timedelta(days=3660) or start > now + timedelta(days=1):
            raise OutputError(f"queries[{i}] has an implausible date range")
        try:
            queries.append(
                MetricQuery(
                    metric=q.metric,
                    start=start,
                    end=end,
                    dimensions=tuple(q.dimensions),
                    timezone=timezone,
                    service_types=tuple(q.service_types),
                    sources=tuple(q.sources),
                )
            )
        except ValidationError as exc:
            raise OutputError(f"queries[{i}]: {exc.detail}") from None
    locations = []
    for code in out.locations[:MAX_ITEMS]:
        if not isinstance(code, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", code):
            raise OutputError("locations must be short location codes")
        locations.append(code)
    return tuple(queries), tuple(locations), clean_text(out.understood_as, "understood_as", 500)


__all__ = [
    "CampaignOut",
    "InsightsOut",
    "IntentOut",
    "OutputError",
    "QueryOut",
    "ReportOut",
    "TaskOut",
    "WarmnessOut",
    "clean_list",
    "clean_text",
    "extract_json",
    "intent_fields",
    "make_converter",
    "parse_instant",
    "priority_fields",
    "report_fields",
    "structure",
    "warmness_fields",
]
