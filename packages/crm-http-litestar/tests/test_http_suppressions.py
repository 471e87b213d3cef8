"""``/api/suppressions`` end to end, and ``/api/sms`` refusing a suppressed number."""

from __future__ import annotations

from typing import Any

import pytest
from crm_messaging.testing import CLICKSEND_SEND_PATH, ProviderServer

from crm_http_litestar.testing import World

from .conftest import drain_outbox

pytestmark = pytest.mark.anyio


async def _add(world: World, who: str = "owner", location: str = "sydney", **body: Any) -> Any:
    return await world.client.post(
        "/api/suppressions", headers=await world.headers(who, location), json=body
    )


async def _list(world: World, who: str = "owner", **params: Any) -> Any:
    return await world.client.get(
        "/api/suppressions", headers=await world.headers(who), params=params
    )


async def test_add_list_filter_and_remove(world: World) -> None:
    phone = await _add(world, channel="sms", address="0412 555 001", note="asked at the desk")
    assert phone.status_code == 201, phone.text
    created = phone.json()
    assert (created["channel"], created["address"], created["reason"], created["note"]) == (
        "sms",
        "+61412555001",
        "manual",
        "asked at the desk",
    )
    assert created["created_at"].endswith("Z")
    email = await _add(
        world, "reception", channel="email", address="Ann@Example.ORG", reason="complaint"
    )
    assert email.status_code == 201, email.text
    assert email.json()["address"] == "ann@example.org"

    listed = await _list(world, "auditor")
    assert listed.status_code == 200, listed.text
    assert [s["id"] for s in listed.json()["items"]] == [email.json()["id"], created["id"]]
    by_channel = await _list(world, channel="email")
    assert [s["address"] for s in by_channel.json()["items"]] == ["ann@example.org"]
    # The address filter takes the number as typed.
    by_address = await _list(world, address="+61 412 555 001")
    assert [s["id"] for s in by_address.json()["items"]] == [created["id"]]
    paged = await _list(world, limit=1)
    assert paged.json()["next_cursor"]
    rest = await _list(world, limit=1, cursor=paged.json()["next_cursor"])
    assert [s["id"] for s in rest.json()["items"]] == [created["id"]]

    headers = await world.headers("owner")
    removed = await world.client.delete(f"/api/suppressions/{created['id']}", headers=headers)
    assert removed.status_code == 204, removed.text
    again = await world.client.delete(f"/api/suppressions/{created['id']}", headers=headers)
    assert again.status_code == 404
    assert [s["id"] for s in (await _list(world)).json()["items"]] == [email.json()["id"]]
    entries = [e for e in await world.audit("sydney") if e.resource_type == "suppression"]
    assert [e.action for e in entries if e.outcome.value == "success"].count("CREATE") == 2
    assert ("DELETE", created["id"]) in [(e.action, e.resource_id) for e in entries]


async def test_bad_input_is_a_422_naming_the_field_and_stores_nothing(world: World) -> None:
    cases = [
        ({"channel": "sms", "address": "not a phone"}, "address"),
        ({"channel": "email", "address": "no-at-sign"}, "address"),
        ({"channel": "fax", "address": "0412 555 001"}, "channel"),
        ({"channel": "sms", "address": "0412 555 001", "reason": "annoyed"}, "reason"),
        ({"channel": "sms", "address": "0412 555 001", "colour": "red"}, "colour"),
        ({"channel": "sms"}, "address"),
    ]
    for body, field in cases:
        response = await _add(world, **body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in response.text, (body, response.text)
    for params, field in [
        ({"channel": "fax"}, "channel"),
        ({"address": "nonsense"}, "address"),
        ({"colour": "red"}, "colour"),
    ]:
        response = await _list(world, **params)
        assert response.status_code == 422, (params, response.text)
        assert field in response.text, (params, response.text)
    assert (await _list(world)).json()["items"] == []


async def test_a_duplicate_is_a_409_and_another_location_is_a_404(world: World) -> None:
    first = await _add(world, channel="sms", address="0412 555 001")
    assert first.status_code == 201
    duplicate = await _add(world, channel="sms", address="+61412555001", reason="opt_out")
    assert duplicate.status_code == 409, duplicate.text
    assert "suppression list" in duplicate.json()["detail"]
    # The same number is Melbourne's own business.
    melbourne = await _add(world, location="melbourne", channel="sms", address="0412 555 001")
    assert melbourne.status_code == 201, melbourne.text
    foreign = await world.client.delete(
        f"/api/suppressions/{melbourne.json()['id']}", headers=await world.headers("owner")
    )
    assert foreign.status_code == 404
    assert "melbourne" not in foreign.text
    assert [s["id"] for s in (await _list(world)).json()["items"]] == [first.json()["id"]]


async def test_sms_to_a_suppressed_number_is_a_409_and_nothing_is_sent(
    sms_world: World, clicksend: ProviderServer
) -> None:
    world = sms_world
    contact = await world.client.post(
        "/api/contacts",
        headers=await world.headers("owner"),
        json={"first_name": "Pat", "phone": "0412 000 111", "sms_opt_in": True},
    )
    assert contact.status_code == 201, contact.text
    assert (await _add(world, "reception", channel="sms", address="0412000111")).status_code == 201
    response = await world.client.post(
        "/api/sms",
        headers=await world.headers("reception"),
        json={"contact_id": contact.json()["id"], "body": "Reminder", "kind": "transactional"},
    )
    assert response.status_code == 409, response.text
    assert "on the location's suppression list" in response.json()["detail"]
    await drain_outbox(world)
    conversation = await world.client.get(
        "/api/sms",
        headers=await world.headers("reception"),
        params={"contact_id": contact.json()["id"]},
    )
    assert conversation.json()["items"] == []
    assert clicksend.to(CLICKSEND_SEND_PATH) == []


async def test_a_stop_from_an_unknown_number_lands_on_the_list(
    sms_world: World, clicksend: ProviderServer
) -> None:
    from .test_http_webhooks_sms import inbound, post_reply

    world = sms_world
    stranger = "+61412999888"
    reply = await post_reply(world, inbound("STOP", "IN-X1", sender=stranger))
    assert reply.status_code == 200, reply.text
    [entry] = (await _list(world, "auditor")).json()["items"]
    assert (entry["channel"], entry["address"], entry["reason"], entry["created_by"]) == (
        "sms",
        stranger,
        "opt_out",
        "system",
    )
    # Reception later records the caller as a contact who agreed to SMS: still refused.
    contact = await world.client.post(
        "/api/contacts",
        headers=await world.headers("reception"),
        json={"first_name": "Sam", "phone": stranger, "sms_opt_in": True},
    )
    assert contact.status_code == 201, contact.text
    refused = await world.client.post(
        "/api/sms",
        headers=await world.headers("reception"),
        json={"contact_id": contact.json()["id"], "body": "Welcome", "kind": "transactional"},
    )
    assert refused.status_code == 409, refused.text
    assert "suppression list" in refused.json()["detail"]
    await drain_outbox(world)
    assert clicksend.to(CLICKSEND_SEND_PATH) == []
