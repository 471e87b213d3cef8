"""``/webhooks/manychat``: ManyChat's External Request (Full Contact Data), answered in v2.

The body is the subscriber JSON ManyChat sends with "Full Contact Data"
(``id``, ``first_name``, ``last_name``, ``email``, ``phone``,
``last_input_text``, ``last_interaction``, …); the answer is a Dynamic Block
``{"version": "v2", "content": {"messages": [...], "actions": [], "quick_replies": []}}``.
"""

from __future__ import annotations

from typing import Any

import pytest

from crm_http_litestar.testing import World

from .conftest import MANYCHAT_KEY

pytestmark = pytest.mark.anyio

URL = "/webhooks/manychat"


def subscriber(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "7311820",
        "key": "user:7311820",
        "page_id": "101",
        "status": "active",
        "first_name": "Mia",
        "last_name": "Chen",
        "name": "Mia Chen",
        "gender": None,
        "locale": "en_AU",
        "timezone": "Australia/Sydney",
        "last_input_text": "How much is a knee MRI?",
        "optin_phone": True,
        "phone": "+61400555666",
        "optin_email": False,
        "email": None,
        "subscribed": "2026-12-01T10:00:00+00:00",
        "last_interaction": "2026-12-05T09:15:00+00:00",
        "custom_fields": {"interest": "MRI"},
    }
    data.update(changes)
    return data


async def _post(world: World, body: dict[str, Any], key: str | None = MANYCHAT_KEY) -> Any:
    headers = {} if key is None else {"X-CRM-Key": key}
    return await world.client.post(URL, json=body, headers=headers)


async def _mia(world: World) -> list[dict[str, Any]]:
    response = await world.client.get(
        "/api/contacts", headers=await world.headers("owner"), params={"limit": 200}
    )
    return [c for c in response.json()["items"] if c["phone"] == "+61400555666"]


async def test_a_lead_is_created_then_completed_and_answered_in_v2(sms_world: World) -> None:
    world = sms_world
    answer = await _post(world, subscriber())
    assert answer.status_code == 200, answer.text
    block = answer.json()
    assert block["version"] == "v2"
    [message] = block["content"]["messages"]
    assert message["type"] == "text" and "Mia" in message["text"]
    assert (block["content"]["actions"], block["content"]["quick_replies"]) == ([], [])
    [contact] = await _mia(world)
    assert (contact["first_name"], contact["source"]) == ("Mia", "manychat")
    # The same delivery again changes nothing; a later interaction adds the email.
    assert (await _post(world, subscriber())).status_code == 200
    later = subscriber(email="mia@example.com", last_interaction="2026-12-05T10:00:00+00:00")
    assert (await _post(world, later)).status_code == 200
    [contact] = await _mia(world)
    assert contact["email"] == "mia@example.com"
    touchpoints = await world.client.get(
        f"/api/contacts/{contact['id']}/touchpoints", headers=await world.headers("owner")
    )
    kinds = [t["kind"] for t in touchpoints.json()["items"]]
    assert kinds == ["chat_message", "chat_message"]


async def test_wrong_or_missing_key_and_bad_bodies_store_nothing(sms_world: World) -> None:
    world = sms_world
    assert (await _post(world, subscriber(), key="wrong-key-000000000000")).status_code == 401
    assert (await _post(world, subscriber(), key=None)).status_code == 401
    no_id = subscriber()
    del no_id["id"]
    refused = await _post(world, no_id)
    assert (refused.status_code, refused.json()["field"]) == (422, "id")
    assert (await _post(world, subscriber(phone="nope", email=None))).status_code == 422
    assert (await _post(world, subscriber(phone=None, email=None))).status_code == 422
    assert await _mia(world) == []
