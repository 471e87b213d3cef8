"""Plain-English report questions read by the heuristic provider (the labelled set).

The questions and their expected structure are ``crm_ai/data/report_questions.jsonl``
(46 of them, written before the reader was changed); ``nox -s ai-eval`` prints
the same hit rate.
"""

from __future__ import annotations

import pytest
from crm_domain.clock import FixedClock

from crm_ai.heuristic import HeuristicProvider
from crm_ai.questions import QUESTIONS_NOW, load_questions, mismatch, score_questions

pytestmark = pytest.mark.anyio

#: The share of questions that must be read exactly as labelled.
TARGET_HIT_RATE = 0.9


def test_the_set_has_at_least_forty_questions_some_unanswerable() -> None:
    questions = load_questions()
    assert len(questions) >= 40
    assert sum("unanswerable" in q["expected"] for q in questions) >= 3


async def test_the_heuristic_reads_the_questions_as_labelled() -> None:
    score = await score_questions(HeuristicProvider(clock=FixedClock(QUESTIONS_NOW)))
    report = "\n".join(f"{q!r}: {why}" for q, why in score.misses)
    assert score.rate >= TARGET_HIT_RATE, f"{score.hits}/{score.total}\n{report}"


async def test_every_unanswerable_question_names_the_part_not_understood() -> None:
    provider = HeuristicProvider(clock=FixedClock(QUESTIONS_NOW))
    for item in load_questions():
        if "unanswerable" not in item["expected"]:
            continue
        request = await provider.parse_report_query(
            item["question"], QUESTIONS_NOW, "Australia/Sydney"
        )
        assert mismatch(request, item["expected"]) is None, item["question"]


async def test_the_issue_example_is_read_exactly() -> None:
    provider = HeuristicProvider(clock=FixedClock(QUESTIONS_NOW))
    [item] = [q for q in load_questions() if q["question"].startswith("no-shows by week for MRI")]
    request = await provider.parse_report_query(item["question"], QUESTIONS_NOW, "Australia/Sydney")
    assert mismatch(request, item["expected"]) is None
