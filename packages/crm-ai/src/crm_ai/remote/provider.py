"""Providers backed by a language model over HTTP: Workers AI and OpenAI-compatible servers.

Every call goes: circuit breaker → concurrency limit → HTTP with timeout and
retries (429/5xx/transport errors, backoff, ``Retry-After``) → JSON extraction →
strict structuring → domain validation.  An unusable answer gets one repair
request; a second one falls back to the heuristics (``fell_back=True``).  A
provider that is down falls back too, or raises ``Unavailable`` when
``CRM_AI_FALLBACK_ON_UNAVAILABLE=false``.  Nothing else escapes.

Capabilities where a model adds nothing or would need PHI (contact enrichment,
slot search, and task priority for a provider without a BAA) are answered by
the heuristics directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import anyio
import httpx
from crm_domain.clock import SystemClock
from crm_domain.entities import SmsIntent
from crm_domain.errors import Unavailable, ValidationError
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
from crm_domain.ports.clock import Clock

from crm_ai.heuristic import HeuristicProvider
from crm_ai.heuristic import intent as rules
from crm_ai.heuristic.warmness import score_lead
from crm_ai.remote import parsing, prompts
from crm_ai.remote.resilience import (
    CircuitBreaker,
    CircuitOpen,
    RetryableStatus,
    parse_retry_after,
    retry_policy,
)
from crm_ai.remote.settings import (
    OPENAI_BASE_URL,
    WORKERS_AI_BASE_URL,
    WORKERS_AI_INTENT_MODEL,
    WORKERS_AI_MODEL,
    RemoteSettings,
)

log = logging.getLogger("crm_ai")
R = TypeVar("R")


class ProviderDown(Exception):
    """The provider could not be reached or refused the request."""


class RemoteProvider:
    """Shared machinery; subclasses supply the URL, request body and envelope."""

    name = "remote"

    def __init__(
        self,
        settings: RemoteSettings,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        breaker_clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self._heuristic = HeuristicProvider(clock=clock, phone_region=settings.phone_region)
        self._fallback = HeuristicProvider(
            clock=clock, phone_region=settings.phone_region, fell_back=True
        )
        self._clock: Clock = clock or SystemClock()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._limiter = anyio.CapacityLimiter(settings.max_concurrency)
        self.breaker = (
            CircuitBreaker(settings.breaker_threshold, settings.breaker_reset, breaker_clock)
            if breaker_clock
            else CircuitBreaker(settings.breaker_threshold, settings.breaker_reset)
        )

    # --- wire format (overridden) ------------------------------------------------

    def endpoint(self, model: str) -> str:
        """The URL to POST to."""
        raise NotImplementedError

    def request_body(
        self, messages: prompts.Messages, schema_name: str, model: str
    ) -> dict[str, Any]:
        """The JSON request body."""
        raise NotImplementedError

    def answer_of(self, payload: Any) -> object:
        """The model's answer (a string or an object) from the response envelope."""
        raise NotImplementedError

    # --- HTTP ---------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Accept": "application/json"}
            if self.settings.api_token:
                headers["Authorization"] = f"Bearer {self.settings.api_token}"
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout),
                headers=headers,
                transport=self._transport,
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _post(self, messages: prompts.Messages, schema_name: str, model: str) -> object:
        """One model call with breaker, limiter, retries; returns the raw answer."""
        try:
            self.breaker.before_call()
        except CircuitOpen as exc:
            raise ProviderDown(str(exc)) from None
        url = self.endpoint(model)
        body = self.request_body(messages, schema_name, model)
        try:
            async with self._limiter:
                async for attempt in retry_policy(
                    self.settings.max_retries, self.settings.max_retry_wait
                ):
                    with attempt:
                        response = await self._http().post(url, json=body)
                        if response.status_code == 429 or response.status_code >= 500:
                            raise RetryableStatus(
                                response.status_code,
                                parse_retry_after(response.headers.get("Retry-After")),
                            )
                        if response.status_code >= 400:
                            raise ProviderDown(f"HTTP {response.status_code} from the AI provider")
        except (RetryableStatus, httpx.HTTPError, ProviderDown) as exc:
            self.breaker.failure()
            log.warning("AI provider %s call failed: %s", self.name, type(exc).__name__)
            raise ProviderDown(f"AI provider {self.name} is unavailable ({exc})") from None
        except BaseException:
            # Cancelled (a caller's timeout): not the provider's fault, but a half-open
            # breaker must not wait forever for a trial call that will never report.
            self.breaker.abandon()
            raise
        self.breaker.success()
        try:
            payload = response.json()
        except ValueError:
            raise parsing.OutputError("the response body is not JSON") from None
        return self.answer_of(payload)

    async def _structured(
        self,
        messages: prompts.Messages,
        schema_name: str,
        model: str,
        build: Callable[[dict[str, Any]], R],
    ) -> R | None:
        """A validated result, after at most one repair; ``None`` means fall back."""
        answer: object = None
        try:
            answer = await self._post(messages, schema_name, model)
            return _parse(answer, build)
        except parsing.OutputError as problem:
            first_problem = str(problem)
        log.info("AI provider %s: unusable %s answer; asking to repair", self.name, schema_name)
        repair = prompts.repair_messages(messages, _as_text(answer), first_problem)
        try:
            return _parse(await self._post(repair, schema_name, model), build)
        except parsing.OutputError:
            log.warning("AI provider %s: %s answer still unusable", self.name, schema_name)
            return None

    async def _run(
        self,
        task: str,
        remote: Callable[[], Awaitable[R | None]],
        fallback: Callable[[], Awaitable[R]],
    ) -> R:
        """Remote first; heuristics on bad output (or outage, unless configured not to)."""
        try:
            result = await remote()
        except ProviderDown as exc:
            if not self.settings.fallback_on_unavailable:
                raise Unavailable(str(exc)) from None
            return await fallback()
        except Exception:
            # The port promises a valid result or Unavailable: an unexpected error in
            # parsing untrusted output must not reach the caller, so it is logged and
            # answered by the heuristics like any other bad answer.
            log.exception("unexpected error handling the %s answer from %s", task, self.name)
            return await fallback()
        if result is None:
            return await fallback()
        return result

    # --- capabilities ----------------------------------------------------------------

    async def analyze_warmness(self, profile: LeadProfile, now: datetime) -> WarmnessAssessment:
        """Model-scored warmness; the band always follows the score."""
        messages = prompts.warmness_messages(profile, now, baa_covered=self.settings.baa_covered)

        def build(data: dict[str, Any]) -> WarmnessAssessment:
            score, band, reasons, action = parsing.warmness_fields(
                parsing.structure(data, parsing.WarmnessOut)
            )
            return WarmnessAssessment(
                score=score,
                band=WarmnessBand(band),
                reasons=reasons[:3],
                next_best_action=action,
                provider=self.name,
            )

        return await self._run(
            "warmness",
            lambda: self._structured(messages, "warmness", self.settings.model, build),
            lambda: self._fallback.analyze_warmness(profile, now),
        )

    async def detect_sms_intent(self, text: str, context: SmsContext) -> SmsIntentResult:
        """Model intent, but opt-out keywords are decided by the rules first.

        The rules run before the model and win for opt-outs (so recall cannot drop
        below the heuristic's), and a model's opt-out is accepted even when the
        rules saw none (an extra opt-out is the safe error).
        """
        guard = rules.classify(text, context)
        if guard.intent is SmsIntent.OPT_OUT or rules.is_bare_cancel(
            rules.strip_quoted(rules.normalise(text))
        ):
            return await self._heuristic.detect_sms_intent(text, context)
        messages = prompts.intent_messages(text, context, baa_covered=self.settings.baa_covered)

        def build(data: dict[str, Any]) -> SmsIntentResult:
            out = parsing.structure(data, parsing.IntentOut)
            found, confidence, when = parsing.intent_fields(out, context.received_at)
            if found is SmsIntent.RESCHEDULE and when is None:
                when = rules.proposed_time(text, context)
            return SmsIntentResult(
                intent=found, confidence=confidence, proposed_time=when, provider=self.name
            )

        return await self._run(
            "sms_intent",
            lambda: self._structured(messages, "sms_intent", self.settings.intent_model, build),
            lambda: self._fallback.detect_sms_intent(text, context),
        )

    async def enrich_contact(self, draft: ContactDraft) -> Enrichment:
        """Deterministic rules: enrichment would need PHI and gains nothing from a model."""
        return await self._heuristic.enrich_contact(draft)

    async def optimize_schedule(self, request: ScheduleRequest) -> tuple[Slot, ...]:
        """Deterministic slot search (arithmetic, not language)."""
        return await self._heuristic.optimize_schedule(request)

    async def generate_campaign(self, brief: CampaignBrief) -> CampaignDraftResult:
        """Model-written draft; the caller sanitises HTML before storing it."""
        messages = prompts.campaign_messages(brief)

        def build(data: dict[str, Any]) -> CampaignDraftResult:
            out = parsing.structure(data, parsing.CampaignOut)
            return CampaignDraftResult(
                subject=parsing.clean_text(out.subject, "subject", 200),
                html=parsing.clean_text(out.html, "html", parsing.MAX_HTML),
                text=parsing.clean_text(out.text, "text", parsing.MAX_HTML),
                provider=self.name,
            )

        return await self._run(
            "campaign",
            lambda: self._structured(messages, "campaign", self.settings.model, build),
            lambda: self._fallback.generate_campaign(brief),
        )

    async def generate_insights(
        self, rows: dict[str, tuple[MetricRow, ...]], focus: str | None
    ) -> Insights:
        """Model-written findings over aggregate rows."""
        messages = prompts.insights_messages(rows, focus)

        def build(data: dict[str, Any]) -> Insights:
            out = parsing.structure(data, parsing.InsightsOut)
            return Insights(
                summary=parsing.clean_text(out.summary, "summary"),
                findings=parsing.clean_list(out.findings, "findings"),
                recommendations=parsing.clean_list(out.recommendations, "recommendations"),
                provider=self.name,
            )

        return await self._run(
            "insights",
            lambda: self._structured(messages, "insights", self.settings.model, build),
            lambda: self._fallback.generate_insights(rows, focus),
        )

    async def parse_report_query(
        self, question: str, now: datetime, timezone: str
    ) -> ReportRequest:
        """Model-parsed question, validated into allowed metrics and dimensions."""
        messages = prompts.report_messages(
            question, now, timezone, baa_covered=self.settings.baa_covered
        )

        def build(data: dict[str, Any]) -> ReportRequest:
            out = parsing.structure(data, parsing.ReportOut)
            queries, locations, understood = parsing.report_fields(out, timezone, now)
            return ReportRequest(
                queries=queries, locations=locations, understood_as=understood, provider=self.name
            )

        return await self._run(
            "report_query",
            lambda: self._structured(messages, "report_query", self.settings.model, build),
            lambda: self._fallback.parse_report_query(question, now, timezone),
        )

    async def prioritize_task(self, title: str, profile: LeadProfile | None) -> TaskPriorityResult:
        """Rules unless BAA-covered: a task title is staff free text and may name the patient."""
        if not self.settings.baa_covered:
            return await self._heuristic.prioritize_task(title, profile)
        band = score_lead(profile, self._clock.now()).band.value if profile else None
        messages = prompts.task_messages(title, band)

        def build(data: dict[str, Any]) -> TaskPriorityResult:
            priority, reason = parsing.priority_fields(parsing.structure(data, parsing.TaskOut))
            return TaskPriorityResult(priority=priority, reason=reason, provider=self.name)

        return await self._run(
            "task_priority",
            lambda: self._structured(messages, "task_priority", self.settings.model, build),
            lambda: self._fallback.prioritize_task(title, profile),
        )


def _parse(answer: object, build: Callable[[dict[str, Any]], R]) -> R:
    """Extract, structure and validate; every failure becomes ``OutputError``."""
    data = parsing.extract_json(answer)
    try:
        return build(data)
    except ValidationError as exc:
        raise parsing.OutputError(exc.detail) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise parsing.OutputError(f"{type(exc).__name__}: {exc}"[:300]) from None


def _as_text(answer: object) -> str:
    if isinstance(answer, str):
        return answer
    try:
        return json.dumps(answer)
    except (TypeError, ValueError):
        return repr(answer)


class WorkersAIProvider(RemoteProvider):
    """Cloudflare Workers AI over its REST API (``/accounts/{id}/ai/run/{model}``).

    Request: ``{messages, response_format: {type: "json_schema", json_schema}, max_tokens}``.
    Response envelope: ``{result: {response: str | object, usage}, success, errors, messages}``;
    in JSON mode ``response`` is already an object.
    """

    name = "workers-ai"

    def __init__(self, settings: RemoteSettings, **kwargs: Any) -> None:
        if not settings.account_id:
            raise ValidationError("CRM_AI_ACCOUNT_ID", "is required for Workers AI")
        super().__init__(settings, **kwargs)

    def endpoint(self, model: str) -> str:
        """``{base}/accounts/{account}/ai/run/{model}``."""
        base, account = self.settings.base_url, self.settings.account_id
        return f"{base}/accounts/{account}/ai/run/{model}"

    def request_body(
        self, messages: prompts.Messages, schema_name: str, model: str
    ) -> dict[str, Any]:
        """Messages plus JSON mode."""
        if self.settings.json_mode == "json_schema":
            response_format: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": prompts.schema(schema_name),
            }
        else:
            response_format = {"type": "json_object"}
        return {
            "messages": messages,
            "response_format": response_format,
            "max_tokens": self.settings.max_tokens,
            "temperature": 0,
        }

    def answer_of(self, payload: Any) -> object:
        """``result.response`` of a successful envelope."""
        if not isinstance(payload, dict):
            raise parsing.OutputError("the envelope is not an object")
        if payload.get("success") is False:
            raise parsing.OutputError("the provider reported an error")
        result = payload.get("result")
        if not isinstance(result, dict) or "response" not in result:
            raise parsing.OutputError("the envelope has no result.response")
        response: object = result["response"]
        return response


class OpenAICompatibleProvider(RemoteProvider):
    """An OpenAI-style ``/v1/chat/completions`` server: vLLM, llama.cpp server, Ollama.

    Answer: ``choices[0].message.content`` (a JSON string).
    """

    name = "openai"

    def endpoint(self, model: str) -> str:
        """``{base}/v1/chat/completions``; a base already ending in ``/v1`` is not doubled."""
        base = self.settings.base_url
        return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"

    def request_body(
        self, messages: prompts.Messages, schema_name: str, model: str
    ) -> dict[str, Any]:
        """Chat completion with ``response_format`` json_schema (or json_object)."""
        if self.settings.json_mode == "json_schema":
            response_format: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": prompts.schema(schema_name)},
            }
        else:
            response_format = {"type": "json_object"}
        return {
            "model": model,
            "messages": messages,
            "response_format": response_format,
            "max_tokens": self.settings.max_tokens,
            "temperature": 0,
            "stream": False,
        }

    def answer_of(self, payload: Any) -> object:
        """``choices[0].message.content``."""
        try:
            content: object = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise parsing.OutputError("the response has no choices[0].message.content") from None
        if content is None:
            raise parsing.OutputError("the answer was empty")
        return content


def workers_ai_factory(settings: Mapping[str, str]) -> WorkersAIProvider:
    """Entry point ``crm.ai: workers-ai``."""
    return WorkersAIProvider(
        RemoteSettings.from_mapping(
            settings,
            default_base_url=WORKERS_AI_BASE_URL,
            default_model=WORKERS_AI_MODEL,
            default_intent_model=WORKERS_AI_INTENT_MODEL,
        )
    )


def openai_factory(settings: Mapping[str, str]) -> OpenAICompatibleProvider:
    """Entry point ``crm.ai: openai``; ``CRM_AI_MODEL`` names the served model."""
    return OpenAICompatibleProvider(
        RemoteSettings.from_mapping(
            settings,
            default_base_url=OPENAI_BASE_URL,
            default_model=None,
            default_intent_model=None,
        )
    )


__all__ = [
    "OpenAICompatibleProvider",
    "ProviderDown",
    "RemoteProvider",
    "WorkersAIProvider",
    "openai_factory",
    "workers_ai_factory",
]
