"""The AI port and its structured, validated results.

Inputs are PHI-minimised profiles built by the services: no name, email, phone,
date of birth or free-text note reaches a provider unless the location marks
its provider as covered by a BAA (``LocationSettings.ai_phi_allowed``).
Implementations live in ``crm-ai`` and are found through the ``crm.ai`` entry
points; :class:`~crm_domain.memory.ai.RuleOfThumbAI` is the in-library fake.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import attrs

from crm_domain.entities import BookingStatus, SmsIntent, TaskPriority, TouchpointKind
from crm_domain.ports.analytics import MetricQuery, MetricRow


class WarmnessBand(enum.StrEnum):
    """Bands of the warmness score."""

    COLD = "cold"
    WARM = "warm"
    HOT = "hot"


@attrs.frozen(slots=True, kw_only=True)
class TouchpointFact:
    """A touchpoint reduced to what scoring needs."""

    kind: TouchpointKind
    occurred_at: datetime


@attrs.frozen(slots=True, kw_only=True)
class LeadProfile:
    """A contact reduced to non-identifying facts, for scoring and task priority."""

    source: str
    status: str
    service_interest: str | None = None
    has_email: bool = False
    has_phone: bool = False
    email_opt_in: bool = False
    sms_opt_in: bool = False
    tags: tuple[str, ...] = ()
    created_at: datetime
    touchpoints: tuple[TouchpointFact, ...] = ()
    booking_statuses: tuple[BookingStatus, ...] = ()


@attrs.frozen(slots=True, kw_only=True)
class WarmnessAssessment:
    """An explained warmness score."""

    score: int
    band: WarmnessBand
    reasons: tuple[str, ...]
    next_best_action: str
    provider: str
    fell_back: bool = False


@attrs.frozen(slots=True, kw_only=True)
class SmsContext:
    """What the clinic knows around an inbound SMS (no PHI)."""

    received_at: datetime
    timezone: str = "UTC"
    has_upcoming_booking: bool = False
    booking_starts_at: datetime | None = None
    last_outbound_kind: str | None = None  # e.g. "reminder"


@attrs.frozen(slots=True, kw_only=True)
class SmsIntentResult:
    """The understood meaning of a patient's SMS reply."""

    intent: SmsIntent
    confidence: float
    proposed_time: datetime | None = None
    provider: str
    fell_back: bool = False


@attrs.frozen(slots=True, kw_only=True)
class ContactDraft:
    """Raw contact fields from a form, a webhook or an import, before enrichment."""

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    source: str | None = None
    utm_source: str | None = None
    referrer: str | None = None
    service_interest: str | None = None


@attrs.frozen(slots=True, kw_only=True)
class Enrichment:
    """Normalised contact fields; ``None`` where nothing could be inferred."""

    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    source: str
    service_interest: str | None
    notes: tuple[str, ...] = ()


@attrs.frozen(slots=True, kw_only=True)
class Slot:
    """A proposed booking slot with its rank score (higher is better)."""

    start: datetime
    end: datetime
    score: float
    reason: str


@attrs.frozen(slots=True, kw_only=True)
class ScheduleRequest:
    """Free-slot search for a service at a location."""

    window_start: datetime
    window_end: datetime
    duration_minutes: int
    timezone: str
    opening_hours: tuple[tuple[int, str, str], ...]  # (weekday, "HH:MM", "HH:MM")
    buffer_minutes: int
    busy: tuple[tuple[datetime, datetime], ...]
    preferred_time: datetime | None = None
    max_results: int = 5


@attrs.frozen(slots=True, kw_only=True)
class CampaignBrief:
    """What a campaign should say (no contact data)."""

    goal: str
    audience_description: str
    service_type: str | None = None
    clinic_name: str
    tone: str = "professional, caring"


@attrs.frozen(slots=True, kw_only=True)
class CampaignDraftResult:
    """A generated campaign; HTML is sanitised by the caller before storing."""

    subject: str
    html: str
    text: str
    provider: str
    fell_back: bool = False


@attrs.frozen(slots=True, kw_only=True)
class Insights:
    """Plain-language findings about report data."""

    summary: str
    findings: tuple[str, ...]
    recommendations: tuple[str, ...]
    provider: str
    fell_back: bool = False


@attrs.frozen(slots=True, kw_only=True)
class ReportRequest:
    """A natural-language question parsed into validated metric queries (never SQL)."""

    queries: tuple[MetricQuery, ...]
    locations: tuple[str, ...] = ()  # location codes named in the question; empty = current
    understood_as: str
    provider: str
    fell_back: bool = False
    #: Parts of the question that could not be read (e.g. "the metric: 'vibes'");
    #: any part here makes the question unanswerable (a 422 naming it).
    not_understood: tuple[str, ...] = ()


@attrs.frozen(slots=True, kw_only=True)
class TaskPriorityResult:
    """A suggested task priority with the reason."""

    priority: TaskPriority
    reason: str
    provider: str


@runtime_checkable
class AIProvider(Protocol):
    """Every AI capability the services use. Results are always valid or ``Unavailable``."""

    name: str

    async def analyze_warmness(self, profile: LeadProfile, now: datetime) -> WarmnessAssessment:
        """Score a lead 0–100 with reasons and a next best action."""
        ...

    async def detect_sms_intent(self, text: str, context: SmsContext) -> SmsIntentResult:
        """Classify a patient's SMS reply; opt-out keywords must never be missed."""
        ...

    async def enrich_contact(self, draft: ContactDraft) -> Enrichment:
        """Normalise names, phone, email, and infer the source."""
        ...

    async def optimize_schedule(self, request: ScheduleRequest) -> tuple[Slot, ...]:
        """Rank free slots."""
        ...

    async def generate_campaign(self, brief: CampaignBrief) -> CampaignDraftResult:
        """Draft a campaign email."""
        ...

    async def generate_insights(
        self, rows: dict[str, tuple[MetricRow, ...]], focus: str | None
    ) -> Insights:
        """Explain report data (metric name → rows)."""
        ...

    async def parse_report_query(
        self, question: str, now: datetime, timezone: str
    ) -> ReportRequest:
        """Turn a manager's question into validated metric queries."""
        ...

    async def prioritize_task(self, title: str, profile: LeadProfile | None) -> TaskPriorityResult:
        """Suggest a priority for a new task."""
        ...


def json_safe(value: Any) -> Any:
    """Helper for providers: attrs results as plain data (for logs and prompts)."""
    return attrs.asdict(value) if attrs.has(type(value)) else value
