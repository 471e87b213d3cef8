"""Task priority from the title's words and the lead's warmness."""

from __future__ import annotations

import re
from datetime import datetime

from crm_domain.entities import TaskPriority
from crm_domain.ports.ai import LeadProfile, WarmnessBand

from crm_ai.heuristic.warmness import score_lead

_URGENT = re.compile(
    r"\b(urgent|asap|emergency|immediately|complain\w*|incident|adverse|reaction|"
    r"critical|result\w*\s+abnormal|abnormal|safety|privacy|breach)\b"
)
_HIGH = re.compile(
    r"\b(today|call\s*back|callback|no[\s-]?show|missed|reschedul\w*|cancel\w*|"
    r"opt[\s-]?out|stop|refund|referral|results?)\b"
)
_LOW = re.compile(r"\b(newsletter|someday|when\s+possible|low\s+priority|tidy|clean\s*up|fyi)\b")


def prioritise(title: str, profile: LeadProfile | None, now: datetime) -> tuple[TaskPriority, str]:
    """A priority and the reason, from keywords first and warmness second."""
    low = title.lower()
    if m := _URGENT.search(low):
        return TaskPriority.URGENT, f"title mentions '{m.group(0)}'"
    band: WarmnessBand | None = None
    if profile is not None:
        band = score_lead(profile, now).band
    if m := _HIGH.search(low):
        return TaskPriority.HIGH, f"title mentions '{m.group(0)}'"
    if band is WarmnessBand.HOT:
        return TaskPriority.HIGH, "the lead is hot"
    if _LOW.search(low):
        return TaskPriority.LOW, "title marks it as not time-sensitive"
    if band is WarmnessBand.COLD:
        return TaskPriority.LOW, "the lead is cold"
    if band is WarmnessBand.WARM:
        return TaskPriority.NORMAL, "the lead is warm"
    return TaskPriority.NORMAL, "no urgency signals"


__all__ = ["prioritise"]
