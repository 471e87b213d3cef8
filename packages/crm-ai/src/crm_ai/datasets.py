"""Loaders for the labelled evaluation sets shipped in ``crm_ai/data``.

See ``crm_ai/data/README.md`` for the labelling rules.  Every example is turned
into the port's own input types, so the evaluation exercises the same code path
as the services.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Literal

import attrs
from crm_domain.entities import BookingStatus, SmsIntent, TouchpointKind
from crm_domain.ports.ai import LeadProfile, SmsContext, TouchpointFact, WarmnessBand

Split = Literal["dev", "heldout", "blind"]
#: ``blind`` holds replies and profiles written after the rules were frozen (never tuned on).
SPLITS: tuple[Split, ...] = ("dev", "heldout", "blind")

#: The fixed "now" of the evaluation: a Tuesday morning in Sydney.
EVAL_NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
EVAL_TIMEZONE = "Australia/Sydney"


@attrs.frozen(slots=True)
class SmsExample:
    """A labelled SMS reply."""

    text: str
    intent: SmsIntent
    context: SmsContext


@attrs.frozen(slots=True)
class LeadExample:
    """A labelled lead profile."""

    profile: LeadProfile
    band: WarmnessBand


def _read(name: str) -> str:
    return resources.files("crm_ai.data").joinpath(name).read_text(encoding="utf-8")


def sms_examples(split: Split) -> tuple[SmsExample, ...]:
    """The SMS replies of one split."""
    reader = csv.DictReader(io.StringIO(_read(f"sms_{split}.csv")))
    out: list[SmsExample] = []
    for row in reader:
        booked = row["context"] == "r"
        context = SmsContext(
            received_at=EVAL_NOW,
            timezone=EVAL_TIMEZONE,
            has_upcoming_booking=booked,
            booking_starts_at=EVAL_NOW + timedelta(days=1) if booked else None,
            last_outbound_kind="reminder" if booked else None,
        )
        text = row["text"].replace("\\n", "\n")
        out.append(SmsExample(text=text, intent=SmsIntent(row["intent"]), context=context))
    return tuple(out)


def lead_examples(split: Split) -> tuple[LeadExample, ...]:
    """The lead profiles of one split, with ``created_at``/touchpoints relative to EVAL_NOW."""
    out: list[LeadExample] = []
    name = f"leads_{split}.jsonl"
    if not resources.files("crm_ai.data").joinpath(name).is_file():
        return ()
    for line in _read(name).splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        facts = []
        for item in row["tp"]:
            kind, _, days = item.partition("@")
            facts.append(
                TouchpointFact(
                    kind=TouchpointKind(kind), occurred_at=EVAL_NOW - timedelta(days=float(days))
                )
            )
        profile = LeadProfile(
            source=row["source"],
            status=row["status"],
            service_interest=row["interest"],
            has_email=row["email"],
            has_phone=row["phone"],
            email_opt_in=row["email_opt_in"],
            sms_opt_in=row["sms_opt_in"],
            created_at=EVAL_NOW - timedelta(days=float(row["age_days"])),
            touchpoints=tuple(facts),
            booking_statuses=tuple(BookingStatus(b) for b in row["bookings"]),
        )
        out.append(LeadExample(profile=profile, band=WarmnessBand(row["band"])))
    return tuple(out)


__all__ = [
    "EVAL_NOW",
    "EVAL_TIMEZONE",
    "SPLITS",
    "LeadExample",
    "SmsExample",
    "Split",
    "lead_examples",
    "sms_examples",
]
