"""The labelled sets and the evaluation script."""

from __future__ import annotations

import pytest
from crm_domain.entities import SmsIntent

from crm_ai.datasets import SmsExample, Split, lead_examples, sms_examples
from crm_ai.evaluation import TARGETS, evaluate, main, misses, render
from crm_ai.heuristic import HeuristicProvider

pytestmark = pytest.mark.anyio


def test_the_sets_are_big_enough_and_disjoint() -> None:
    dev, held, blind = sms_examples("dev"), sms_examples("heldout"), sms_examples("blind")
    assert len(dev) + len(held) >= 300
    assert len(lead_examples("dev")) + len(lead_examples("heldout")) >= 100
    assert len(held) >= 100
    assert len(lead_examples("blind")) >= 30

    def keys(split: tuple[SmsExample, ...]) -> set[tuple[str, bool]]:
        return {(e.text, e.context.has_upcoming_booking) for e in split}

    # The same text may appear in two splits only with a different context.
    assert not keys(dev) & keys(held)
    assert not keys(dev) & keys(blind)
    assert not keys(held) & keys(blind)
    for split in (dev, held, blind):
        assert {e.intent for e in split} == set(SmsIntent)


@pytest.mark.parametrize("split", ["dev", "heldout", "blind"])
async def test_opt_out_recall_is_one_on_every_split(split: Split) -> None:
    # A correctness rule, not a tuning target: every opt-out must be honoured.
    ai = HeuristicProvider()
    missed = [
        e.text
        for e in sms_examples(split)
        if e.intent is SmsIntent.OPT_OUT
        and (await ai.detect_sms_intent(e.text, e.context)).intent is not SmsIntent.OPT_OUT
    ]
    assert missed == []


async def test_heldout_figures_meet_the_targets() -> None:
    report = await evaluate(HeuristicProvider(), "heldout")
    assert misses(report) == [], render(report, show_errors=True)
    assert report.opt_out_recall == TARGETS["opt_out_recall"]
    assert sum(map(sum, report.intent_confusion)) == report.sms_count


def test_command_line_prints_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--split", "heldout"]) == 0
    out = capsys.readouterr().out
    assert "== heldout split ==" in out
    assert "precision" in out and "truth \\ predicted" in out
    assert "Held-out targets met" in out
