"""The offline, deterministic, explainable AI provider (the default)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from crm_domain.clock import SystemClock
from crm_domain.entities import SmsIntent
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
)
from crm_domain.ports.analytics import MetricRow
from crm_domain.ports.clock import Clock
from crm_domain.values import DEFAULT_PHONE_REGION

from crm_ai.heuristic import campaign, enrich, insights, intent, report_query, schedule, tasks
from crm_ai.heuristic.warmness import next_best_action, score_lead


class HeuristicProvider:
    """Every capability with rules and arithmetic: no network, no model, same answer twice.

    ``fell_back`` lets the remote providers reuse it and mark their results.
    """

    name = "heuristic"

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        phone_region: str = DEFAULT_PHONE_REGION,
        fell_back: bool = False,
    ) -> None:
        self._clock = clock or SystemClock()
        self._region = phone_region
        self._fell_back = fell_back

    async def analyze_warmness(self, profile: LeadProfile, now: datetime) -> WarmnessAssessment:
        """Fit + decayed engagement; the reasons are the biggest contributions."""
        scored = score_lead(profile, now)
        return WarmnessAssessment(
            score=scored.score,
            band=scored.band,
            reasons=scored.reasons(),
            next_best_action=next_best_action(profile, scored.band),
            provider=self.name,
            fell_back=self._fell_back,
        )

    async def detect_sms_intent(self, text: str, context: SmsContext) -> SmsIntentResult:
        """Rules in order of stakes; opt-out keywords first (see ``heuristic.intent``)."""
        guess = intent.classify(text, context)
        when = None
        if guess.intent is SmsIntent.RESCHEDULE:
            when = intent.proposed_time(text, context)
        return SmsIntentResult(
            intent=guess.intent,
            confidence=guess.confidence,
            proposed_time=when,
            provider=self.name,
            fell_back=self._fell_back,
        )

    async def enrich_contact(self, draft: ContactDraft) -> Enrichment:
        """Name casing, E.164 phone, normalised email, inferred source."""
        return enrich.enrich(draft, region=self._region)

    async def optimize_schedule(self, request: ScheduleRequest) -> tuple[Slot, ...]:
        """Free slots within hours, outside busy times plus buffer, ranked."""
        return schedule.free_slots(request)

    async def generate_campaign(self, brief: CampaignBrief) -> CampaignDraftResult:
        """A template draft chosen by the goal's words."""
        subject, html, text = campaign.draft(brief)
        return CampaignDraftResult(
            subject=subject, html=html, text=text, provider=self.name, fell_back=self._fell_back
        )

    async def generate_insights(
        self, rows: dict[str, tuple[MetricRow, ...]], focus: str | None
    ) -> Insights:
        """Trends, outliers and leaders in plain language."""
        summary, findings, recommendations = insights.analyse(rows, focus)
        return Insights(
            summary=summary,
            findings=findings,
            recommendations=recommendations,
            provider=self.name,
            fell_back=self._fell_back,
        )

    async def parse_report_query(
        self, question: str, now: datetime, timezone: str
    ) -> ReportRequest:
        """Keyword grammar for metric, grouping, filters, locations and period."""
        queries, locations, understood, unknown = report_query.parse(question, now, timezone)
        return ReportRequest(
            queries=queries,
            locations=locations,
            understood_as=understood,
            provider=self.name,
            fell_back=self._fell_back,
            not_understood=unknown,
        )

    async def prioritize_task(self, title: str, profile: LeadProfile | None) -> TaskPriorityResult:
        """Keywords in the title, then the lead's band."""
        priority, reason = tasks.prioritise(title, profile, self._clock.now())
        return TaskPriorityResult(priority=priority, reason=reason, provider=self.name)


def heuristic_factory(settings: Mapping[str, str]) -> HeuristicProvider:
    """Entry point ``crm.ai: heuristic``; reads ``CRM_AI_PHONE_REGION`` (default AU)."""
    return HeuristicProvider(
        phone_region=settings.get("CRM_AI_PHONE_REGION", DEFAULT_PHONE_REGION).upper()
    )


__all__ = ["HeuristicProvider", "heuristic_factory"]
