"""Model-answer parsing, the circuit breaker and the network guard, in isolation."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from crm_domain.entities import SmsIntent
from crm_domain.errors import Unavailable
from crm_domain.ports.ai import SmsContext

from crm_ai.remote import openai_factory
from crm_ai.remote.parsing import (
    IntentOut,
    OutputError,
    WarmnessOut,
    extract_json,
    intent_fields,
    make_converter,
    structure,
)
from crm_ai.remote.resilience import CircuitBreaker, CircuitOpen, parse_retry_after

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"a": 1}, {"a": 1}),
        ('{"a": 1}', {"a": 1}),
        ('Here you go: {"a": "}{"} and more', {"a": "}{"}),
        ('```json\n{"a": [1, {"b": 2}]}\n```', {"a": [1, {"b": 2}]}),
        ('[1, 2] then {"a": 1}', {"a": 1}),
        ('{"broken": } {"a": 2}', {"a": 2}),
    ],
)
def test_extract_json_finds_the_object(raw: object, expected: dict[str, object]) -> None:
    assert extract_json(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "no json", "[1, 2]", 42, None, '{"a": 1'])
def test_extract_json_rejects_answers_without_an_object(raw: object) -> None:
    with pytest.raises(OutputError):
        extract_json(raw)


def test_converter_is_strict_and_private() -> None:
    converter = make_converter()
    assert converter is not make_converter()
    with pytest.raises(OutputError, match="schema"):
        structure({"intent": "confirm", "confidence": "0.9"}, IntentOut)
    with pytest.raises(OutputError):
        structure({"score": True, "reasons": [], "next_best_action": "x"}, WarmnessOut)
    with pytest.raises(OutputError):
        structure({"score": 70.5, "reasons": [], "next_best_action": "x"}, WarmnessOut)
    with pytest.raises(OutputError):
        structure({"score": 70, "reasons": "not a list", "next_best_action": "x"}, WarmnessOut)
    out = structure(
        {"score": 70.0, "reasons": ["a"], "next_best_action": "x", "extra": 1}, WarmnessOut
    )
    assert out.score == 70


def test_proposed_times_in_the_past_or_far_future_are_dropped() -> None:
    def when(value: str) -> datetime | None:
        out = IntentOut(intent="reschedule", confidence=0.7, proposed_time=value)
        return intent_fields(out, NOW)[2]

    assert when("2026-03-12T15:00:00+11:00") == datetime(2026, 3, 12, 4, 0, tzinfo=UTC)
    assert when("2026-03-01T15:00:00+11:00") is None
    assert when("2031-03-01T15:00:00+11:00") is None
    with pytest.raises(OutputError, match="offset"):
        when("2026-03-12T15:00:00")
    with pytest.raises(OutputError):
        intent_fields(IntentOut(intent="CONFIRM!", confidence=0.5), NOW)
    assert intent_fields(IntentOut(intent=" Confirm ", confidence=0.5), NOW)[0] is SmsIntent.CONFIRM


def test_breaker_allows_a_single_trial_when_half_open() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, reset_after=10, clock=lambda: now[0])
    breaker.before_call()
    breaker.failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    now[0] = 10.0
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # a second caller waits for the trial's outcome
    breaker.failure()
    assert breaker.state == "open"  # a failed trial re-opens for another period
    now[0] = 20.0
    breaker.before_call()
    breaker.abandon()  # cancelled trial frees the slot
    breaker.before_call()
    breaker.success()
    assert breaker.state == "closed"


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    future = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    seconds = parse_retry_after(future)
    assert seconds is not None and 25 <= seconds <= 31


def test_network_guard_blocks_non_loopback_hosts() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(ConnectionRefusedError, match="blocked"),
    ):
        sock.connect(("203.0.113.7", 443))
    with pytest.raises(socket.gaierror, match="blocked"):
        socket.getaddrinfo("api.cloudflare.com", 443)


@pytest.mark.anyio
async def test_a_provider_pointed_at_a_real_host_cannot_reach_it() -> None:
    ai = openai_factory(
        {
            "CRM_AI_MODEL": "m",
            "CRM_AI_BASE_URL": "https://api.example.com",
            "CRM_AI_MAX_RETRIES": "0",
            "CRM_AI_FALLBACK_ON_UNAVAILABLE": "false",
        }
    )
    with pytest.raises(Unavailable):
        await ai.detect_sms_intent("yes", SmsContext(received_at=NOW, has_upcoming_booking=True))
    await ai.aclose()
