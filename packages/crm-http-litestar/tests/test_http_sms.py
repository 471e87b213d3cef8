"""``/api/sms`` end to end: queued by the request, sent by the worker through ClickSend.

The app is configured with ``CRM_SMS_PROVIDER=clicksend`` pointing at a loopback
server speaking ClickSend's documented ``POST /v3/sms/send`` format
(:mod:`crm_messaging.testing`, shared with crm-messaging's own tests); the
worker step is the real outbox relay with the domain's handlers.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from crm_messaging.testing import (
    CLICKSEND_SEND_PATH,
    ProviderServer,
    Reply,
    clicksend_envelope,
    clicksend_message,
)

from crm_http_litestar.testing import World

from .conftest import CLINIC, PATIENT, drain_outbox

pytestmark = pytest.mark.anyio


async def _contact(world: World, *, sms_opt_in: bool = True, location: str = "sydney") -> str:
    response = await world.client.post(
        "/api/contacts",
        headers=await world.headers("owner", location),
        json={"first_name": "Pat", "phone": "0412 000 111", "sms_opt_in": sms_opt_in},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _send(world: World, contact_id: str, **extra: Any) -> Any:
    body = {"contact_id": contact_id, "body": "Your MRI is at 9:00", "kind": "transactional"}
    body.update(extra)
    return await world.client.post("/api/sms", headers=await world.headers("reception"), json=body)


async def _conversation(
    world: World, contact_id: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    # Tokens are minted at the test clock's time: take them before moving it.
    headers = headers or await world.headers("reception")
    response = await world.client.get(
        "/api/sms", headers=headers, params={"contact_id": contact_id}
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_post_queues_and_the_worker_sends_through_clicksend_once(
    sms_world: World, clicksend: ProviderServer
) -> None:
    world = sms_world
    contact_id = await _contact(world)
    response = await _send(world, contact_id)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert (queued["status"], queued["to_number"], queued["from_number"]) == (
        "queued",
        PATIENT,
        CLINIC,
    )
    assert clicksend.to(CLICKSEND_SEND_PATH) == []  # the request only queues

    clicksend.queue(
        CLICKSEND_SEND_PATH,
        Reply(
            200,
            clicksend_envelope(
                clicksend_message(PATIENT, message_id="CS-1", custom_string=queued["id"])
            ),
        ),
    )
    await drain_outbox(world)
    [request] = clicksend.to(CLICKSEND_SEND_PATH)
    [wire] = request["json"]["messages"]
    assert (wire["to"], wire["from"], wire["body"], wire["custom_string"]) == (
        PATIENT,
        CLINIC,
        "Your MRI is at 9:00",
        queued["id"],
    )
    [sent] = await _conversation(world, contact_id)
    assert (sent["status"], sent["provider"], sent["provider_message_id"], sent["error"]) == (
        "sent",
        "clicksend",
        "CS-1",
        None,
    )
    await drain_outbox(world)  # nothing left: not sent twice
    assert len(clicksend.to(CLICKSEND_SEND_PATH)) == 1
    entries = [e for e in await world.audit("sydney") if e.resource_type == "sms"]
    assert {"CREATE", "UPDATE"} <= {e.action for e in entries}


async def test_provider_outage_is_retried_by_the_outbox_with_back_off(
    sms_world: World, clicksend: ProviderServer
) -> None:
    world = sms_world
    contact_id = await _contact(world)
    queued = (await _send(world, contact_id)).json()
    clicksend.queue(
        CLICKSEND_SEND_PATH,
        Reply(503, {"http_code": 503, "response_code": "INTERNAL_ERROR"}),
        Reply(200, clicksend_envelope(clicksend_message(PATIENT, message_id="CS-2"))),
    )
    await drain_outbox(world)
    headers = await world.headers("reception")
    [waiting] = await _conversation(world, contact_id, headers)
    assert waiting["status"] == "queued"
    assert "Unavailable" in (waiting["error"] or "")
    world.clock.advance(timedelta(minutes=5))  # past the relay's back-off
    await drain_outbox(world)
    [sent] = await _conversation(world, contact_id, headers)
    assert (sent["id"], sent["status"], sent["provider_message_id"], sent["error"]) == (
        queued["id"],
        "sent",
        "CS-2",
        None,
    )
    assert len(clicksend.to(CLICKSEND_SEND_PATH)) == 2


async def test_a_per_message_refusal_is_recorded_as_failed(
    sms_world: World, clicksend: ProviderServer
) -> None:
    world = sms_world
    contact_id = await _contact(world)
    await _send(world, contact_id)
    clicksend.queue(
        CLICKSEND_SEND_PATH,
        Reply(200, clicksend_envelope(clicksend_message(PATIENT, status="INVALID_RECIPIENT"))),
    )
    await drain_outbox(world)
    [failed] = await _conversation(world, contact_id)
    assert failed["status"] == "failed"
    assert "INVALID_RECIPIENT" in (failed["error"] or "")
    world.clock.advance(timedelta(hours=1))
    await drain_outbox(world)
    assert len(clicksend.to(CLICKSEND_SEND_PATH)) == 1


async def test_refusals_store_nothing_and_send_nothing(
    sms_world: World, clicksend: ProviderServer
) -> None:
    world = sms_world
    no_consent = await _contact(world, sms_opt_in=False)
    response = await _send(world, no_consent)
    assert response.status_code == 409
    assert "sms_opt_in" in response.json()["detail"]
    assert (await _send(world, "01UNKNOWN0000000000000000")).status_code == 404
    elsewhere = await _contact(world, location="melbourne")
    assert (await _send(world, elsewhere)).status_code == 404
    bad_kind = await _send(world, no_consent, kind="bulk")
    assert bad_kind.status_code == 422
    assert "kind" in bad_kind.text
    doctor = await world.client.post(
        "/api/sms",
        headers=await world.headers("doctor", "melbourne"),
        json={"contact_id": elsewhere, "body": "hi", "kind": "transactional"},
    )
    assert doctor.status_code == 403
    await drain_outbox(world)
    assert await _conversation(world, no_consent) == []
    assert clicksend.to(CLICKSEND_SEND_PATH) == []


async def test_conversation_pages_with_a_cursor(sms_world: World) -> None:
    world = sms_world
    contact_id = await _contact(world)
    ids = [(await _send(world, contact_id, body=f"note {n}")).json()["id"] for n in range(3)]
    headers = await world.headers("reception")
    first = await world.client.get(
        "/api/sms", headers=headers, params={"contact_id": contact_id, "limit": 2}
    )
    assert first.status_code == 200
    page = first.json()
    assert page["next_cursor"]
    second = await world.client.get(
        "/api/sms",
        headers=headers,
        params={"contact_id": contact_id, "limit": 2, "cursor": page["next_cursor"]},
    )
    seen = [m["id"] for m in page["items"]] + [m["id"] for m in second.json()["items"]]
    assert sorted(seen) == sorted(ids)
    assert second.json()["next_cursor"] is None
