"""Evaluate an AI provider on the labelled sets: ``python -m crm_ai.evaluation``.

Prints, for each split (held-out first: that is the figure to report), the SMS
intent accuracy, per-class precision/recall and confusion matrix, and the
warmness band accuracy (exact and within one band), then the share of the
labelled plain-English report questions read as labelled
(:mod:`crm_ai.questions`).  Exits non-zero when the
held-out split misses a target, so CI can run it.

Options: ``--provider NAME`` (an entry point in ``crm.ai``, default
``heuristic``; settings come from ``CRM_AI_*`` environment variables) and
``--split dev|heldout|blind|all``.  ``blind`` holds SMS replies written after
the rules were frozen and never tuned on: its figures are reported, not gated.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import anyio
import attrs
from crm_domain.entities import SmsIntent
from crm_domain.plugins import load_ai
from crm_domain.ports.ai import AIProvider, WarmnessBand

from crm_ai.datasets import EVAL_NOW, SPLITS, Split, lead_examples, sms_examples
from crm_ai.questions import score_questions

#: Targets on the held-out split.
TARGETS = {
    "intent_accuracy": 0.92,
    "opt_out_recall": 1.0,
    "band_exact": 0.8,
    "band_within_one": 0.95,
}
_BANDS = (WarmnessBand.COLD, WarmnessBand.WARM, WarmnessBand.HOT)


@attrs.frozen(slots=True)
class ClassScore:
    """Precision and recall of one label."""

    label: str
    precision: float
    recall: float
    support: int


@attrs.frozen(slots=True)
class Report:
    """Figures for one split."""

    split: str
    intent_accuracy: float
    opt_out_recall: float
    intent_classes: tuple[ClassScore, ...]
    intent_confusion: tuple[tuple[int, ...], ...]
    intent_errors: tuple[tuple[str, str, str], ...]
    band_exact: float
    band_within_one: float
    band_classes: tuple[ClassScore, ...]
    band_confusion: tuple[tuple[int, ...], ...]
    sms_count: int
    lead_count: int


def _scores(
    labels: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> tuple[tuple[ClassScore, ...], tuple[tuple[int, ...], ...]]:
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for truth, guess in pairs:
        matrix[index[truth]][index[guess]] += 1
    classes = []
    for i, label in enumerate(labels):
        predicted = sum(row[i] for row in matrix)
        actual = sum(matrix[i])
        hit = matrix[i][i]
        classes.append(
            ClassScore(
                label=label,
                precision=hit / predicted if predicted else 1.0,
                recall=hit / actual if actual else 1.0,
                support=actual,
            )
        )
    return tuple(classes), tuple(tuple(row) for row in matrix)


async def evaluate(provider: AIProvider, split: Split) -> Report:
    """Run the provider over one split and score it."""
    intent_pairs: list[tuple[str, str]] = []
    errors: list[tuple[str, str, str]] = []
    for example in sms_examples(split):
        result = await provider.detect_sms_intent(example.text, example.context)
        intent_pairs.append((example.intent.value, result.intent.value))
        if result.intent is not example.intent:
            errors.append((example.text, example.intent.value, result.intent.value))
    intent_labels = [i.value for i in SmsIntent]
    intent_classes, intent_matrix = _scores(intent_labels, intent_pairs)
    correct = sum(t == g for t, g in intent_pairs)
    opt = next(c for c in intent_classes if c.label == SmsIntent.OPT_OUT.value)

    band_pairs: list[tuple[str, str]] = []
    near = 0
    for lead in lead_examples(split):
        assessment = await provider.analyze_warmness(lead.profile, EVAL_NOW)
        band_pairs.append((lead.band.value, assessment.band.value))
        near += abs(_BANDS.index(lead.band) - _BANDS.index(assessment.band)) <= 1
    band_classes, band_matrix = _scores([b.value for b in _BANDS], band_pairs)
    exact = sum(t == g for t, g in band_pairs)
    return Report(
        split=split,
        intent_accuracy=correct / len(intent_pairs),
        opt_out_recall=opt.recall,
        intent_classes=intent_classes,
        intent_confusion=intent_matrix,
        intent_errors=tuple(errors),
        band_exact=exact / len(band_pairs) if band_pairs else 1.0,
        band_within_one=near / len(band_pairs) if band_pairs else 1.0,
        band_classes=band_classes,
        band_confusion=band_matrix,
        sms_count=len(intent_pairs),
        lead_count=len(band_pairs),
    )


def _matrix(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> list[str]:
    width = max(len(label) for label in labels) + 2
    head = " " * width + "".join(f"{label[:9]:>10}" for label in labels)
    lines = ["  truth \\ predicted", head]
    for label, row in zip(labels, matrix, strict=True):
        lines.append(f"{label:<{width}}" + "".join(f"{n:>10}" for n in row))
    return lines


def render(report: Report, *, show_errors: bool = False) -> str:
    """The report as plain text."""
    lines = [
        f"== {report.split} split ==",
        f"SMS intent: {report.sms_count} replies, accuracy {report.intent_accuracy:.3f}, "
        f"opt-out recall {report.opt_out_recall:.3f}",
        f"  {'class':<12}{'precision':>10}{'recall':>10}{'support':>10}",
    ]
    lines += [
        f"  {c.label:<12}{c.precision:>10.3f}{c.recall:>10.3f}{c.support:>10}"
        for c in report.intent_classes
    ]
    lines += _matrix([c.label for c in report.intent_classes], report.intent_confusion)
    if show_errors and report.intent_errors:
        lines.append("  misclassified:")
        lines += [f"    {t!r}: {truth} -> {guess}" for t, truth, guess in report.intent_errors]
    if not report.lead_count:
        return "\n".join(lines)
    lines += [
        f"Warmness: {report.lead_count} leads, band exact {report.band_exact:.3f}, "
        f"within one band {report.band_within_one:.3f}",
        f"  {'band':<12}{'precision':>10}{'recall':>10}{'support':>10}",
    ]
    lines += [
        f"  {c.label:<12}{c.precision:>10.3f}{c.recall:>10.3f}{c.support:>10}"
        for c in report.band_classes
    ]
    lines += _matrix([c.label for c in report.band_classes], report.band_confusion)
    return "\n".join(lines)


def misses(report: Report) -> list[str]:
    """The targets this report falls short of."""
    return [
        f"{name} {getattr(report, name):.3f} < {target}"
        for name, target in TARGETS.items()
        if getattr(report, name) < target
    ]


async def _main(provider_name: str, splits: Sequence[Split], show_errors: bool) -> int:
    settings = {k: v for k, v in os.environ.items() if k.startswith("CRM_AI_")}
    provider = load_ai(provider_name, settings)
    status = 0
    for split in splits:
        report = await evaluate(provider, split)
        print(render(report, show_errors=show_errors))
        print()
        if split == "heldout":
            failed = misses(report)
            if failed:
                print("HELD-OUT TARGETS MISSED: " + "; ".join(failed))
                status = 1
            else:
                print(
                    "Held-out targets met: " + ", ".join(f"{k} >= {v}" for k, v in TARGETS.items())
                )
            print()
    questions = await score_questions(provider)
    print(
        f"Report questions read as labelled: {questions.hits}/{questions.total}"
        f" = {questions.rate:.3f}"
    )
    if show_errors:
        for question, why in questions.misses:
            print(f"  {question!r}: {why}")
    print()
    aclose = getattr(provider, "aclose", None)
    if aclose is not None:
        await aclose()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m crm_ai.evaluation", description=__doc__)
    parser.add_argument("--provider", default=os.environ.get("CRM_AI_PROVIDER", "heuristic"))
    parser.add_argument("--split", choices=[*SPLITS, "all"], default="all")
    parser.add_argument("--errors", action="store_true", help="list misclassified replies")
    args = parser.parse_args(argv)
    splits: list[Split] = ["heldout", "blind", "dev"] if args.split == "all" else [args.split]
    return anyio.run(_main, args.provider, splits, args.errors)


if __name__ == "__main__":
    sys.exit(main())
