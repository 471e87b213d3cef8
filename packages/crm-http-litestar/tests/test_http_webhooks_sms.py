"""``/webhooks/sms/clicksend``: patients' replies in ClickSend's inbound format, acted on.

The bodies are ClickSend's URL-action fields (``from``, ``to``, ``body``,
``message_id``, ``timestamp``, ``original_message_id``, ``custom_string``,
``user_id``, ``subaccount_id``, …), form-encoded (``webhook_type`` post) or
JSON (``webhook_type`` json); delivery receipts carry ``message_id`` and
``status``.  The opt-out confirmation is sent by the worker through the
loopback ClickSend server.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest
from crm_messaging.testing import (
    CLICKSEND_SEND_PATH,
    ProviderServer,
    Reply,
    clicksend_envelope,
    clicksend_message,
)

from crm_http_litestar.messaging import MessagingSettings
from crm_http_litestar.settings import parse_networks
from crm_http_litestar.testing import World

from .conftest import CLINIC, PATIENT, SMS_KEY, drain_outbox

pytestmark = pytest.mark.anyio

URL = "/webhooks/sms/clicksend"


def inbound(body: str, message_id: str = "IN-1", sender: str = PATIENT) -> dict[str, str]:
    """ClickSend's inbound fields for a reply from ``sender`` to the clinic's number."""
    return {
        "timestamp": "1764970000",
        "from": sender,
        "body": body,
        "original_body": "Reminder: your MRI tomorrow at 9:00. Reply Y to confirm, C to cancel.",
        "original_message_id": "BF7AD270-0DE2-418B-B606-000000000001",
        "to": CLINIC,
        "custom_string": "",
        "user_id": "1",
        "subaccount_id": "1",
        "message_id": message_id,
        "_keyword": body.split()[0].lower() if body.split() else "",
    }


async def post_reply(world: World, fields: dict[str, str], *, key: str | None = SMS_KEY) -> Any:
    params = {} if key is None else {"key": key}
    return await world.client.post(URL, params=params, data=fields)


async def _patient_with_booking(world: World) -> tuple[str, str]:
    headers = await world.headers("owner")
    contact = await world.client.post(
        "/api/contacts",
        headers=headers,
        json={"first_name": "Pat", "phone": PATIENT, "sms_opt_in": True},
    )
    assert contact.status_code == 201, contact.text
    starts = world.clock.now() + timedelta(days=2)
    booking = await world.client.post(
        "/api/bookings",
        headers=headers,
        json={
            "contact_id": contact.json()["id"],
            "service_type": "MRI",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(minutes=45)).isoformat(),
        },
    )
    assert booking.status_code == 201, booking.text
    return str(contact.json()["id"]), str(booking.json()["id"])


async def _booking_status(world: World, booking_id: str) -> str:
    response = await world.client.get(
        f"/api/bookings/{booking_id}", headers=await world.headers("owner")
    )
    return str(response.json()["status"])


async def _messages(world: World, **params: str) -> list[dict[str, Any]]:
    response = await world.client.get(
        "/api/sms", headers=await world.headers("owner"), params=params
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_y_confirms_and_cancel_cancels_the_next_booking(sms_world: World) -> None:
    # "C" is read as *confirm* by crm-ai's rules ("Reply C to confirm" in its labelled
    # data), so the cancelling reply here is the word itself.
    world = sms_world
    contact_id, booking_id = await _patient_with_booking(world)
    answer = await post_reply(world, inbound("Y", "IN-Y"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "received"
    assert await _booking_status(world, booking_id) == "confirmed"
    cancel = await post_reply(world, inbound("Cancel", "IN-C"))
    assert cancel.status_code == 200
    assert await _booking_status(world, booking_id) == "cancelled"
    stored = await _messages(world, contact_id=contact_id, direction="inbound")
    assert {(m["body"], m["intent"], m["provider"]) for m in stored} == {
        ("Y", "confirm", "clicksend"),
        ("Cancel", "cancel", "clicksend"),
    }
    # Audited as the location's system user (no staff user), in the location's chain.
    entries = [e for e in await world.audit("sydney") if e.request_path == URL]
    assert entries and all(e.user_id is None for e in entries)
    assert any("cancelled" in (e.detail or "") for e in entries)


async def test_json_format_and_reschedule_becomes_a_task_with_the_time(
    sms_world: World,
) -> None:
    world = sms_world
    await _patient_with_booking(world)
    response = await world.client.post(
        URL,
        params={"key": SMS_KEY},
        json=inbound("Can we move it to Friday at 3pm please?", "IN-R"),
    )
    assert response.status_code == 200, response.text
    tasks = await world.client.get(
        "/api/tasks", headers=await world.headers("owner"), params={"limit": 200}
    )
    titles = [t["title"] for t in tasks.json()["items"]]
    assert any(t.startswith("Reschedule request by SMS") for t in titles), titles


async def test_stop_withdraws_consent_sends_one_confirmation_and_blocks_sends(
    sms_world: World, clicksend: ProviderServer
) -> None:
    world = sms_world
    contact_id, _ = await _patient_with_booking(world)
    clicksend.queue(
        CLICKSEND_SEND_PATH,
        Reply(200, clicksend_envelope(clicksend_message(PATIENT, message_id="CS-STOP"))),
    )
    assert (await post_reply(world, inbound("STOP", "IN-S1"))).status_code == 200
    assert (await post_reply(world, inbound("stop", "IN-S2"))).status_code == 200
    contact = await world.client.get(
        f"/api/contacts/{contact_id}", headers=await world.headers("owner")
    )
    assert contact.json()["sms_opt_in"] is False
    await drain_outbox(world)
    [sent] = clicksend.to(CLICKSEND_SEND_PATH)
    [wire] = sent["json"]["messages"]
    assert (wire["to"], wire["from"]) == (PATIENT, CLINIC)
    assert "unsubscribed" in wire["body"]
    refused = await world.client.post(
        "/api/sms",
        headers=await world.headers("reception"),
        json={"contact_id": contact_id, "body": "hello", "kind": "transactional"},
    )
    assert refused.status_code == 409
    await drain_outbox(world)
    assert len(clicksend.to(CLICKSEND_SEND_PATH)) == 1


async def test_a_redelivery_is_a_200_that_changes_nothing(sms_world: World) -> None:
    world = sms_world
    contact_id, booking_id = await _patient_with_booking(world)
    first = await post_reply(world, inbound("Cancel", "IN-DUP"))
    again = await post_reply(world, inbound("Cancel", "IN-DUP"))
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["id"] == again.json()["id"]
    assert len(await _messages(world, contact_id=contact_id, direction="inbound")) == 1
    assert await _booking_status(world, booking_id) == "cancelled"


async def test_refusals_store_nothing_and_are_audited(sms_world: World) -> None:
    world = sms_world
    contact_id, booking_id = await _patient_with_booking(world)
    wrong = await post_reply(world, inbound("Cancel"), key="not-the-key-0000000000")
    missing = await post_reply(world, inbound("Cancel"), key=None)
    assert (wrong.status_code, missing.status_code) == (401, 401)
    no_from = inbound("Cancel")
    del no_from["from"]
    unnamed = await post_reply(world, no_from)
    assert unnamed.status_code == 422
    assert unnamed.json()["field"] == "from"
    bad_number = await post_reply(world, inbound("Cancel", sender="not a phone"))
    assert bad_number.status_code == 422
    malformed = await world.client.post(
        URL,
        params={"key": SMS_KEY},
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 422
    oversized = await post_reply(world, inbound("Cancel" * 70_000))
    assert oversized.status_code == 413
    assert await _messages(world, contact_id=contact_id, direction="inbound") == []
    assert await _booking_status(world, booking_id) == "pending"
    # A wrong key names no location: the system chain; later refusals: the location's.
    unknown = [e.status_code for e in await world.audit(None) if e.request_path == URL]
    assert unknown == [401, 401]
    known = [e.status_code for e in await world.audit("sydney") if e.request_path == URL]
    assert sorted(known) == [413, 422, 422, 422]


async def test_source_ip_allowlist(sms_world: World) -> None:
    world = sms_world
    contact_id, _ = await _patient_with_booking(world)
    runtime = world.runtime
    runtime.messaging = attrs.evolve(
        runtime.messaging, sms_webhook_networks=parse_networks("203.0.113.0/24")
    )
    refused = await post_reply(world, inbound("Cancel"))
    assert refused.status_code == 403
    assert await _messages(world, contact_id=contact_id, direction="inbound") == []
    runtime.messaging = attrs.evolve(
        runtime.messaging, sms_webhook_networks=parse_networks("127.0.0.0/8")
    )
    assert (await post_reply(world, inbound("Cancel"))).status_code == 200


async def test_delivery_receipt_marks_the_message_delivered(
    sms_world: World, clicksend: ProviderServer
) -> None:
    world = sms_world
    contact_id, _ = await _patient_with_booking(world)
    queued = await world.client.post(
        "/api/sms",
        headers=await world.headers("reception"),
        json={"contact_id": contact_id, "body": "See you", "kind": "transactional"},
    )
    clicksend.queue(
        CLICKSEND_SEND_PATH,
        Reply(200, clicksend_envelope(clicksend_message(PATIENT, message_id="CS-DLR"))),
    )
    await drain_outbox(world)
    receipt = {
        "timestamp_send": "1764970000",
        "timestamp": "1764970005",
        "message_id": "CS-DLR",
        "status": "Delivered",
        "status_code": "201",
        "status_text": "Success: Message received on handset.",
        "error_code": "",
        "error_text": "",
        "custom_string": queued.json()["id"],
        "user_id": "1",
        "subaccount_id": "1",
    }
    assert (await post_reply(world, receipt)).status_code == 200
    [message] = await _messages(world, contact_id=contact_id, direction="outbound")
    assert message["status"] == "delivered"


def test_keys_shorter_than_16_characters_are_refused() -> None:
    from crm_domain.errors import ValidationError

    from crm_http_litestar import Settings

    settings = Settings(
        secret_key="x" * 40, adapter_settings={"CRM_SMS_WEBHOOK_KEYS": "sydney=short"}
    )
    with pytest.raises(ValidationError, match="CRM_SMS_WEBHOOK_KEYS"):
        MessagingSettings.from_settings(settings)


def test_a_webhook_route_without_its_own_check_does_not_start() -> None:
    from litestar import post

    from crm_http_litestar import CrmConfig, Settings, create_app
    from crm_http_litestar.pipeline import RouteWithoutPermission
    from crm_http_litestar.testing import SECRET

    @post("/webhooks/unchecked", opt={"public": True})
    async def unchecked() -> None:
        return None

    settings = Settings(database_url="memory://", secret_key=SECRET, run_worker=False)
    with pytest.raises(RouteWithoutPermission, match="/webhooks/unchecked"):
        create_app(CrmConfig(settings=settings, extra_routes=[unchecked]))


async def test_messagemedia_reply_cancels_and_reports_are_read(sms_world: World) -> None:
    world = sms_world
    contact_id, booking_id = await _patient_with_booking(world)
    url = "/webhooks/sms/messagemedia"
    reply = {
        "callback_url": f"https://crm.example{url}?key=…",
        "content": "Cancel please",
        "date_received": "2026-12-05T09:00:00.000Z",
        "destination_number": CLINIC,
        "message_id": "877c19ef-fa2e-4cec-827a-e1df9b5509f7",
        "metadata": {"reference": "01ABC"},
        "reply_id": "a175e797-2b54-468b-9850-41a3eab32f74",
        "source_number": PATIENT,
        "vendor_account_id": {"vendor_id": "MessageMedia", "account_id": "MyAccount"},
    }
    first = await world.client.post(url, params={"key": SMS_KEY}, json=reply)
    again = await world.client.post(url, params={"key": SMS_KEY}, json=reply)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["id"] == again.json()["id"]
    assert await _booking_status(world, booking_id) == "cancelled"
    [stored] = await _messages(world, contact_id=contact_id, direction="inbound")
    assert (stored["provider"], stored["provider_message_id"]) == (
        "messagemedia",
        reply["reply_id"],
    )
    report = {
        "delivery_report_id": "01e1fa0a-6e27-4945-9cdb-18644b4de043",
        "message_id": "no-such-message",
        "status": "delivered",
        "source_number": PATIENT,
        "date_received": "2026-12-05T09:01:00.000Z",
        "submitted_date": "2026-12-05T09:00:58.000Z",
    }
    unknown = await world.client.post(url, params={"key": SMS_KEY}, json=report)
    assert unknown.json()["status"] == "receipt ignored"
    enroute = await world.client.post(
        url, params={"key": SMS_KEY}, json={**report, "status": "enroute"}
    )
    assert enroute.json()["status"] == "receipt ignored"
    assert (await world.client.post(url, json=reply)).status_code == 401


async def test_clicksend_undelivered_fails_and_intermediate_receipts_change_nothing(
    sms_world: World, clicksend: ProviderServer
) -> None:
    world = sms_world
    contact_id, _ = await _patient_with_booking(world)
    await world.client.post(
        "/api/sms",
        headers=await world.headers("reception"),
        json={"contact_id": contact_id, "body": "See you", "kind": "transactional"},
    )
    clicksend.queue(
        CLICKSEND_SEND_PATH,
        Reply(200, clicksend_envelope(clicksend_message(PATIENT, message_id="CS-UND"))),
    )
    await drain_outbox(world)
    receipt = {"message_id": "CS-UND", "status": "Queued", "status_text": "queued"}
    assert (await post_reply(world, receipt)).json()["status"] == "receipt ignored"
    [message] = await _messages(world, contact_id=contact_id, direction="outbound")
    assert message["status"] == "sent"
    failed = {**receipt, "status": "Undelivered", "status_text": "Failed: handset off"}
    assert (await post_reply(world, failed)).json()["status"] == "receipt recorded"
    [message] = await _messages(world, contact_id=contact_id, direction="outbound")
    assert (message["status"], message["error"]) == ("failed", "Failed: handset off")
