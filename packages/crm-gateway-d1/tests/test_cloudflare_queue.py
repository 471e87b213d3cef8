"""The Cloudflare Queues producer against Miniflare's real queue, through the HTTP shim."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from crm_domain.clock import UlidFactory
from crm_domain.entities import DomainEvent
from crm_domain.errors import Unavailable, ValidationError

from crm_gateway_d1.local import LocalD1
from crm_gateway_d1.queues import MAX_BATCH_BYTES, CloudflareQueue, batches

pytestmark = [pytest.mark.d1, pytest.mark.anyio]

_ids = UlidFactory()


def _event(payload: dict[str, Any] | None = None) -> DomainEvent:
    return DomainEvent(
        id=_ids.new_id(),
        tenant_id="loc-1",
        name="BookingCancelled",
        aggregate_type="booking",
        aggregate_id="b-1",
        payload=payload or {"n": 1},
        occurred_at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
    )


def _wait_for(local: LocalD1, ids: set[str], timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = [m for m in local.received() if m["body"]["id"] in ids]
        if len(got) >= len(ids) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


async def test_events_reach_the_consumer_in_order(local_d1: LocalD1) -> None:
    queue = local_d1.queue()
    events = [_event({"rank": i, "name": "Zoë 🦄"}) for i in range(3)]
    try:
        await queue.publish("events", events)
    finally:
        await queue.close()
    got = _wait_for(local_d1, {e.id for e in events})
    assert [m["body"]["id"] for m in got] == [e.id for e in events]
    first = got[0]["body"]
    assert first["payload"] == {"rank": 0, "name": "Zoë 🦄"}
    assert first["occurred_at"] == "2026-03-02T09:30:00+00:00"
    assert first["tenant_id"] == "loc-1"


async def test_150_events_go_in_two_batches(local_d1: LocalD1) -> None:
    queue = local_d1.queue()
    events = [_event() for _ in range(150)]
    before = queue.requests_sent
    try:
        await queue.publish("events", events)
    finally:
        await queue.close()
    assert queue.requests_sent - before == 2
    assert len(_wait_for(local_d1, {e.id for e in events})) == 150


async def test_large_events_are_split_by_bytes(local_d1: LocalD1) -> None:
    events = [_event({"blob": "x" * 60_000}) for _ in range(6)]
    planned = batches(events)
    assert [len(b) for b in planned] == [4, 2]
    queue = local_d1.queue()
    try:
        await queue.publish("events", events)  # Miniflare refuses batches over its limit
    finally:
        await queue.close()
    assert len(_wait_for(local_d1, {e.id for e in events})) == 6
    assert MAX_BATCH_BYTES == 256_000


async def test_a_message_over_128_kb_is_refused_before_sending(local_d1: LocalD1) -> None:
    queue = local_d1.queue()
    before = queue.requests_sent
    try:
        with pytest.raises(ValidationError, match="at most 128000"):
            await queue.publish("events", [_event({"blob": "x" * 130_000})])
    finally:
        await queue.close()
    assert queue.requests_sent == before


async def test_throttling_is_retried_and_a_missing_queue_is_unavailable(local_d1: LocalD1) -> None:
    queue = local_d1.queue(max_attempts=3)
    event = _event()
    try:
        local_d1.fail_next(1, status=429, retry_after=0)
        await queue.publish("events", [event])
        with pytest.raises(Unavailable, match="no such queue"):
            await queue.publish("no-such-queue", [_event()])
    finally:
        await queue.close()
    assert len(_wait_for(local_d1, {event.id})) == 1


def test_settings_name_queues() -> None:
    queue = CloudflareQueue.from_env(
        {
            "CRM_CF_ACCOUNT_ID": "acct",
            "CRM_D1_API_TOKEN": "t",
            "CRM_CF_QUEUE_IDS": "automations=q1, campaigns=q2",
        }
    )
    assert queue.url("automations").endswith("/accounts/acct/queues/q1/messages/batch")
    assert queue.url("other").endswith("/queues/other/messages/batch")
    with pytest.raises(ValidationError, match="CRM_CF_QUEUE_IDS"):
        CloudflareQueue.from_env(
            {"CRM_CF_ACCOUNT_ID": "a", "CRM_D1_API_TOKEN": "t", "CRM_CF_QUEUE_IDS": "x"}
        )
