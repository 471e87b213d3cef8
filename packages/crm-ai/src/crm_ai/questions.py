"""Report questions in plain English with the structure each must be read as.

``data/report_questions.jsonl`` holds them (written before the reader was
changed to meet them); each line is ``{"question", "expected"}`` where
``expected`` is either a report query — ``metric``, ``dimensions`` (in order),
``start``/``end`` (a local date in :data:`QUESTIONS_TIMEZONE`, ``now`` or
``now-<N>d``), ``locations``, ``service_types``, ``sources`` — or
``{"unanswerable": part}``: the reader must say it did not understand that part.
Questions are read at :data:`QUESTIONS_NOW`.  ``python -m crm_ai.evaluation``
prints the hit rate.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import attrs
from crm_domain.ports.ai import AIProvider, ReportRequest

#: When the questions are asked: Wednesday 20 May 2026, 10:00 in Sydney.
QUESTIONS_NOW = datetime(2026, 5, 20, 0, 0, tzinfo=UTC)
QUESTIONS_TIMEZONE = "Australia/Sydney"


@attrs.frozen(slots=True)
class QuestionScore:
    """How many questions were read as expected, and what went wrong with the others."""

    hits: int
    total: int
    misses: tuple[tuple[str, str], ...]

    @property
    def rate(self) -> float:
        """The share read as expected."""
        return self.hits / self.total if self.total else 0.0


def load_questions() -> list[dict[str, Any]]:
    """The labelled questions."""
    text = resources.files("crm_ai.data").joinpath("report_questions.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _instant(text: str) -> datetime:
    if text == "now":
        return QUESTIONS_NOW
    if text.startswith("now-") and text.endswith("d"):
        return QUESTIONS_NOW - timedelta(days=int(text[4:-1]))
    day = date.fromisoformat(text)
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(QUESTIONS_TIMEZONE))


def mismatch(request: ReportRequest, expected: dict[str, Any]) -> str | None:
    """Why ``request`` is not what ``expected`` says (``None`` when it is)."""
    if "unanswerable" in expected:
        part = expected["unanswerable"]
        said = " ".join(request.not_understood)
        if part in said:
            return None
        return f"should not be understood ({part}); read as {request.understood_as!r}"
    if request.not_understood:
        return f"not understood: {request.not_understood}"
    if not request.queries:
        return "no query"
    query = request.queries[0]
    problems = []
    got: dict[str, Any] = {
        "metric": query.metric.value,
        "dimensions": [d.value for d in query.dimensions],
        "service_types": sorted(query.service_types),
        "sources": sorted(query.sources),
        "locations": sorted(request.locations),
        "start": query.start,
        "end": query.end,
    }
    want: dict[str, Any] = {
        "metric": expected["metric"],
        "dimensions": expected.get("dimensions", []),
        "service_types": sorted(expected.get("service_types", [])),
        "sources": sorted(expected.get("sources", [])),
        "locations": sorted(expected.get("locations", [])),
        "start": _instant(expected["start"]),
        "end": _instant(expected["end"]),
    }
    for key, value in want.items():
        if got[key] != value:
            problems.append(f"{key}: got {got[key]}, expected {value}")
    return "; ".join(problems) or None


async def score_questions(provider: AIProvider) -> QuestionScore:
    """Read every labelled question with ``provider`` and compare."""
    misses = []
    questions = load_questions()
    for item in questions:
        request = await provider.parse_report_query(
            item["question"], QUESTIONS_NOW, QUESTIONS_TIMEZONE
        )
        problem = mismatch(request, item["expected"])
        if problem is not None:
            misses.append((item["question"], problem))
    return QuestionScore(
        hits=len(questions) - len(misses), total=len(questions), misses=tuple(misses)
    )


__all__ = [
    "QUESTIONS_NOW",
    "QUESTIONS_TIMEZONE",
    "QuestionScore",
    "load_questions",
    "mismatch",
    "score_questions",
]
