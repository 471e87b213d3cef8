"""A tiny deterministic :class:`~crm_domain.ports.ai.AIProvider` for tests and examples.

``RuleOfThumbAI`` is to ``crm-ai``'s ``HeuristicProvider`` what
:class:`~crm_domain.memory.InMemoryGateway` is to the SQL gateway: enough
behaviour for the services to be exercised end to end without importing an
adapter package.  It is not tuned and not evaluated; production uses
``crm-ai``.  Every answer is a pure function of its input (and ``now``).

:func:`~crm_domain.policies.consent.is_opt_out` recognises opt-outs.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from crm_domain.entities import BookingStatus, SmsIntent, TaskPriority, TouchpointKind
from crm_domain.errors import Unavailable
from crm_domain.policies.consent import is_opt_out
from crm_domain.ports.ai import (
    CampaignBrief,
    CampaignDraftResult,
    ContactDraft,
    Enrichment,
    Insights,
    LeadProfile,
    ReportRequest,
    ScheduleRequest,
    Slot,
    SmsContext,
    SmsIntentResult,
    TaskPriorityResult,
    WarmnessAssessment,
    WarmnessBand,
)
from crm_domain.ports.analytics import MetricRow

_CONFIRM = re.compile(r"^\s*(y|yes|yep|yeah|yup|ok|okay|confirm(ed)?|see you|sure)\b|\bconfirm")
_CANCEL = re.compile(r"\b(cancel|can'?t (make|come)|cannot (make|come)|won'?t be (able|coming))")
_RESCHEDULE = re.compile(
    r"\b(reschedule|move (it|my)|instead|another (day|time)|change (the|my) (time|day)"
    r"|different (day|time)|can we do|could we do|next week)\b"
)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm)\b")

#: Engagement points per touchpoint kind (before decay).
_TOUCH_POINTS = {
    TouchpointKind.FORM_SUBMIT: 15,
    TouchpointKind.CALL_INBOUND: 15,
    TouchpointKind.SMS_RECEIVED: 10,
    TouchpointKind.CHAT_MESSAGE: 10,
    TouchpointKind.EMAIL_CLICKED: 8,
    TouchpointKind.AD_CLICK: 6,
    TouchpointKind.EMAIL_OPENED: 4,
    TouchpointKind.PAGE_VIEW: 3,
    TouchpointKind.BOOKING_CREATED: 20,
    TouchpointKind.BOOKING_ATTENDED: 15,
    TouchpointKind.NO_SHOW: -15,
    TouchpointKind.BOOKING_CANCELLED: -10,
}
_BOOKING_POINTS = {
    BookingStatus.PENDING: 20,
    BookingStatus.CONFIRMED: 25,
    BookingStatus.COMPLETED: 15,
    BookingStatus.CANCELLED: -10,
    BookingStatus.NO_SHOW: -20,
}
_SOURCE_POINTS = {"referral": 15, "phone": 12, "walk_in": 12, "website": 8, "google_ad": 6}


def _normalised(text: str) -> str:
    return " ".join(text.lower().replace("’", "'").split())


def proposed_time(text: str, context: SmsContext) -> datetime | None:
    """The next "<weekday> <h[:mm]>am|pm" named in ``text``, in the location's timezone."""
    plain = _normalised(text)
    day = next((i for i, name in enumerate(_WEEKDAYS) if name in plain), None)
    match = _TIME.search(plain)
    if day is None or match is None:
        return None
    hour = int(match.group(1)) % 12 + (12 if match.group(3) == "pm" else 0)
    minute = int(match.group(2) or 0)
    if minute > 59:
        return None
    local = context.received_at.astimezone(ZoneInfo(context.timezone))
    ahead = (day - local.weekday()) % 7 or 7
    return (local + timedelta(days=ahead)).replace(
        hour=hour, minute=minute, second=0, microsecond=0
    )


class RuleOfThumbAI:
    """Deterministic keyword and point rules behind the :class:`AIProvider` port."""

    name = "rule-of-thumb"

    def __init__(self) -> None:
        #: Fail every call with ``Unavailable`` while set (exercises the fallbacks).
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Unavailable("rule-of-thumb AI is down (told to fail)")

    async def analyze_warmness(self, profile: LeadProfile, now: datetime) -> WarmnessAssessment:
        """Fit points (source, completeness) plus touchpoints halved every 30 days."""
        self._check()
        reasons: list[tuple[float, str]] = []
        score = 10.0
        source = _SOURCE_POINTS.get(profile.source, 0)
        if source:
            score += source
            reasons.append((source, f"source: {profile.source}"))
        if profile.service_interest:
            score += 8
            reasons.append((8, f"interested in {profile.service_interest}"))
        if profile.has_email and profile.has_phone:
            score += 5
            reasons.append((5, "reachable by email and phone"))
        engagement = 0.0
        for touch in profile.touchpoints:
            age_days = max((now - touch.occurred_at).total_seconds() / 86400, 0.0)
            engagement += _TOUCH_POINTS.get(touch.kind, 2) * 0.5 ** (age_days / 30)
        if profile.touchpoints:
            score += engagement
            reasons.append(
                (abs(engagement), f"{len(profile.touchpoints)} touchpoints ({engagement:+.0f})")
            )
        for status in profile.booking_statuses:
            points = _BOOKING_POINTS.get(status, 0)
            score += points
            reasons.append((abs(points), f"booking {status.value} ({points:+d})"))
        final = max(0, min(100, round(score)))
        band = (
            WarmnessBand.HOT
            if final >= 70
            else WarmnessBand.WARM
            if final >= 40
            else WarmnessBand.COLD
        )
        ranked = tuple(text for _, text in sorted(reasons, key=lambda r: -r[0])[:3])
        action = {
            WarmnessBand.HOT: "call today to book",
            WarmnessBand.WARM: "send a follow-up",
            WarmnessBand.COLD: "add to nurture emails",
        }[band]
        return WarmnessAssessment(
            score=final,
            band=band,
            reasons=ranked or ("no engagement yet",),
            next_best_action=action,
            provider=self.name,
        )

    async def detect_sms_intent(self, text: str, context: SmsContext) -> SmsIntentResult:
        """Keywords: opt-out first (never missed), then reschedule, cancel, confirm, question."""
        self._check()
        plain = _normalised(text)
        when = None
        if is_opt_out(text):
            intent, confidence = SmsIntent.OPT_OUT, 0.99
        elif _RESCHEDULE.search(plain):
            intent, confidence = SmsIntent.RESCHEDULE, 0.8
            when = proposed_time(text, context)
        elif _CANCEL.search(plain):
            intent, confidence = SmsIntent.CANCEL, 0.85
        elif _CONFIRM.search(plain):
            intent, confidence = SmsIntent.CONFIRM, 0.9
        elif "?" in plain:
            intent, confidence = SmsIntent.QUESTION, 0.7
        else:
            intent, confidence = SmsIntent.OTHER, 0.5
        return SmsIntentResult(
            intent=intent, confidence=confidence, proposed_time=when, provider=self.name
        )

    async def enrich_contact(self, draft: ContactDraft) -> Enrichment:
        """Names title-cased, everything else as given."""
        self._check()
        return Enrichment(
            first_name=None if draft.first_name is None else draft.first_name.strip().title(),
            last_name=None if draft.last_name is None else draft.last_name.strip().title(),
            email=draft.email,
            phone=draft.phone,
            source=draft.source or "other",
            service_interest=draft.service_interest,
        )

    async def optimize_schedule(self, request: ScheduleRequest) -> tuple[Slot, ...]:
        """Not modelled by the fake: no suggestions."""
        self._check()
        return ()

    async def generate_campaign(self, brief: CampaignBrief) -> CampaignDraftResult:
        """A fixed template around the goal."""
        self._check()
        text = f"{brief.goal}\n\n{brief.clinic_name}"
        return CampaignDraftResult(
            subject=brief.goal[:80],
            html=f"<p>{brief.goal}</p><p>{brief.clinic_name}</p>",
            text=text,
            provider=self.name,
        )

    async def generate_insights(
        self, rows: dict[str, tuple[MetricRow, ...]], focus: str | None
    ) -> Insights:
        """Counts of rows per metric."""
        self._check()
        findings = tuple(f"{name}: {len(values)} rows" for name, values in sorted(rows.items()))
        return Insights(
            summary=f"{len(rows)} metrics",
            findings=findings,
            recommendations=(),
            provider=self.name,
        )

    async def parse_report_query(
        self, question: str, now: datetime, timezone: str
    ) -> ReportRequest:
        """Not modelled by the fake (``Unavailable``, as the port allows)."""
        raise Unavailable("rule-of-thumb AI does not parse report questions")

    async def prioritize_task(self, title: str, profile: LeadProfile | None) -> TaskPriorityResult:
        """Urgent words → urgent; booking changes and hot leads → high; else normal."""
        self._check()
        plain = _normalised(title)
        if any(word in plain for word in ("urgent", "asap", "emergency")):
            priority, reason = TaskPriority.URGENT, "urgent wording"
        elif any(word in plain for word in ("reschedule", "cancel", "no-show", "no show")):
            priority, reason = TaskPriority.HIGH, "a booking is at stake"
        elif profile is not None and any(
            s in (BookingStatus.PENDING, BookingStatus.CONFIRMED) for s in profile.booking_statuses
        ):
            priority, reason = TaskPriority.HIGH, "the contact has an open booking"
        else:
            priority, reason = TaskPriority.NORMAL, "nothing pressing"
        return TaskPriorityResult(priority=priority, reason=reason, provider=self.name)


__all__ = ["RuleOfThumbAI", "proposed_time"]
