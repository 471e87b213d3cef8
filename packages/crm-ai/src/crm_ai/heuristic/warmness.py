"""An explainable lead warmness score: fit plus engagement with time decay.

score = fit (0–40) + freshness (0–12) + engagement (0–60) + booking state, clamped
to 0–100.  Each part is a sum of named contributions so the top ones can be shown
as reasons.  Engagement decays with a 14-day half-life: a form submitted today
counts fully, one from a month ago about a quarter.
"""

from __future__ import annotations

import math
from datetime import datetime

import attrs
from crm_domain.entities import BookingStatus, TouchpointKind
from crm_domain.ports.ai import LeadProfile, WarmnessBand
from crm_domain.values import warmness_band

HALF_LIFE_DAYS = 14.0
FRESH_HALF_LIFE_DAYS = 5.0

#: How much a source says about intent (a referral or a phone call beats an ad click).
SOURCE_FIT = {
    "referral": 18.0,
    "phone": 16.0,
    "walk_in": 16.0,
    "google_ad": 10.0,
    "website": 10.0,
    "wix": 10.0,
    "manychat": 7.0,
    "meta_ad": 6.0,
    "import": 3.0,
    "other": 4.0,
}

#: Points per touchpoint before decay; negative ones pull the score down.
TOUCHPOINT_WEIGHT = {
    TouchpointKind.AD_CLICK: 3.0,
    TouchpointKind.PAGE_VIEW: 4.0,
    TouchpointKind.FORM_SUBMIT: 14.0,
    TouchpointKind.EMAIL_SENT: 0.0,
    TouchpointKind.EMAIL_OPENED: 5.0,
    TouchpointKind.EMAIL_CLICKED: 10.0,
    TouchpointKind.SMS_SENT: 0.0,
    TouchpointKind.SMS_RECEIVED: 14.0,
    TouchpointKind.CALL_INBOUND: 20.0,
    TouchpointKind.CALL_OUTBOUND: 3.0,
    TouchpointKind.CHAT_MESSAGE: 6.0,
    TouchpointKind.BOOKING_CREATED: 25.0,
    TouchpointKind.BOOKING_ATTENDED: 20.0,
    TouchpointKind.BOOKING_CANCELLED: -10.0,
    TouchpointKind.NO_SHOW: -12.0,
    TouchpointKind.NOTE: 0.0,
}

_LABEL = {
    TouchpointKind.AD_CLICK: "clicked an ad",
    TouchpointKind.PAGE_VIEW: "viewed the website",
    TouchpointKind.FORM_SUBMIT: "submitted a form",
    TouchpointKind.EMAIL_OPENED: "opened an email",
    TouchpointKind.EMAIL_CLICKED: "clicked a link in an email",
    TouchpointKind.SMS_RECEIVED: "replied by SMS",
    TouchpointKind.CALL_INBOUND: "called the clinic",
    TouchpointKind.CALL_OUTBOUND: "was called by the clinic",
    TouchpointKind.CHAT_MESSAGE: "chatted with the clinic",
    TouchpointKind.BOOKING_CREATED: "made a booking",
    TouchpointKind.BOOKING_ATTENDED: "attended an appointment",
    TouchpointKind.BOOKING_CANCELLED: "cancelled a booking",
    TouchpointKind.NO_SHOW: "did not show up",
}

#: An existing patient relationship: worth this much, halving every 120 days since the visit.
PATIENT_POINTS = 35.0
PATIENT_HALF_LIFE_DAYS = 120.0
_VISIT_KINDS = (TouchpointKind.BOOKING_ATTENDED, TouchpointKind.BOOKING_CREATED)

_ACTIVE = {BookingStatus.PENDING, BookingStatus.CONFIRMED}


@attrs.frozen(slots=True)
class Contribution:
    """One named part of the score."""

    points: float
    reason: str


@attrs.frozen(slots=True)
class Score:
    """The score, its band, and every contribution (largest first)."""

    score: int
    band: WarmnessBand
    contributions: tuple[Contribution, ...]

    def reasons(self, limit: int = 3) -> tuple[str, ...]:
        """The biggest contributions in plain language, positive and negative."""
        ranked = sorted(self.contributions, key=lambda c: -abs(c.points))
        return tuple(c.reason for c in ranked[:limit] if abs(c.points) >= 1.0)


def _decay(days: float, half_life: float) -> float:
    return math.pow(0.5, max(days, 0.0) / half_life)


def _days(now: datetime, then: datetime) -> float:
    return (now - then).total_seconds() / 86400.0


def score_lead(profile: LeadProfile, now: datetime) -> Score:
    """Score a lead; deterministic for a given ``now``."""
    parts: list[Contribution] = []
    source = str(profile.source)
    last_visit = _last_attended(profile)
    patient = last_visit is not None or str(profile.status) == "patient"
    fit = SOURCE_FIT.get(source, 4.0)
    if patient:
        # Once someone has been a patient, how they first found us matters less.
        fit /= 2
    parts.append(Contribution(fit, f"source: {source.replace('_', ' ')}"))
    if profile.service_interest:
        parts.append(Contribution(8.0, f"interested in {profile.service_interest}"))
    reach = 4.0 * profile.has_phone + 3.0 * profile.has_email
    reach += 3.0 * profile.sms_opt_in + 2.0 * profile.email_opt_in
    if reach:
        parts.append(Contribution(reach, "reachable with consent" if reach > 7 else "reachable"))

    if patient:
        since = _days(now, last_visit) if last_visit else _days(now, profile.created_at)
        parts.append(
            Contribution(PATIENT_POINTS * _decay(since, PATIENT_HALF_LIFE_DAYS), "past patient")
        )
    else:
        fresh = 12.0 * _decay(_days(now, profile.created_at), FRESH_HALF_LIFE_DAYS)
        if fresh >= 1.0:
            parts.append(Contribution(fresh, "new lead"))
        if source == "walk_in":
            # Walking in is an in-person touchpoint the CRM does not record separately.
            visit = 10.0 * _decay(_days(now, profile.created_at), HALF_LIFE_DAYS)
            parts.append(Contribution(visit, "came to the clinic in person"))

    per_kind: dict[TouchpointKind, float] = {}
    for fact in profile.touchpoints:
        if patient and fact.kind in _VISIT_KINDS:
            continue  # already counted as "past patient"
        weight = TOUCHPOINT_WEIGHT.get(fact.kind, 0.0)
        per_kind[fact.kind] = per_kind.get(fact.kind, 0.0) + weight * _decay(
            _days(now, fact.occurred_at), HALF_LIFE_DAYS
        )
    engagement = sum(v for v in per_kind.values() if v > 0)
    if engagement > 60.0:
        # Keep the parts proportional when the cap bites, so the reasons stay honest.
        scale = 60.0 / engagement
        per_kind = {k: (v * scale if v > 0 else v) for k, v in per_kind.items()}
    for kind, points in per_kind.items():
        if abs(points) >= 0.5:
            recent = "recently " if points > 0 and _recent(profile, kind, now) else ""
            parts.append(Contribution(points, f"{recent}{_LABEL.get(kind, kind.value)}"))

    statuses = set(profile.booking_statuses)
    if statuses & _ACTIVE or (str(profile.status) == "booked" and not statuses):
        parts.append(Contribution(40.0, "has an upcoming booking"))
    if BookingStatus.NO_SHOW in statuses:
        parts.append(Contribution(-8.0, "missed an appointment"))
    if str(profile.status) == "lost":
        parts.append(Contribution(-40.0, "marked as lost"))

    raw = sum(c.points for c in parts)
    score = max(0, min(100, round(raw)))
    ranked = tuple(sorted(parts, key=lambda c: -abs(c.points)))
    return Score(score=score, band=WarmnessBand(warmness_band(score)), contributions=ranked)


def _last_attended(profile: LeadProfile) -> datetime | None:
    visits = [t.occurred_at for t in profile.touchpoints if t.kind in _VISIT_KINDS[:1]]
    if not visits and BookingStatus.COMPLETED in profile.booking_statuses:
        # A completed booking without its touchpoint: date it from the contact.
        return profile.created_at
    return max(visits, default=None)


def _recent(profile: LeadProfile, kind: TouchpointKind, now: datetime) -> bool:
    return any(t.kind == kind and _days(now, t.occurred_at) <= 7 for t in profile.touchpoints)


def next_best_action(profile: LeadProfile, band: WarmnessBand) -> str:
    """What a receptionist should do next, using only consented channels."""
    statuses = set(profile.booking_statuses)
    if str(profile.status) == "lost":
        return "No action; revisit only if the lead gets in touch again."
    if BookingStatus.NO_SHOW in statuses:
        return "Call to find out what happened and offer a new time."
    if statuses & _ACTIVE:
        return "Make sure the booking is confirmed and preparation instructions were sent."
    if band is WarmnessBand.HOT:
        if profile.has_phone:
            return "Call today and offer the next available appointment."
        return "Email today with available appointment times."
    if band is WarmnessBand.WARM:
        if profile.has_phone and profile.sms_opt_in:
            return "Send an SMS follow-up with a booking link."
        if profile.has_email and profile.email_opt_in:
            return "Send a follow-up email with a booking link."
        if profile.has_phone:
            return "Call to follow up on their enquiry."
        return "Follow up through the channel they used to reach us."
    if profile.has_email and profile.email_opt_in:
        return "Add to the nurture email campaign."
    return "No action for now; wait for new engagement."


__all__ = [
    "HALF_LIFE_DAYS",
    "SOURCE_FIT",
    "TOUCHPOINT_WEIGHT",
    "Contribution",
    "Score",
    "next_best_action",
    "score_lead",
]
