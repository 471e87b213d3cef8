"""``/api/campaigns`` end to end: drafted by the API, sent by the worker, to a real SMTP server.

The app runs with ``CRM_MAIL_PROVIDER=smtp`` pointed at aiosmtpd on a free
loopback port; the worker step is the real outbox relay with the domain's
handlers (:func:`drain_outbox`).
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import attrs
import pytest
from aiosmtpd.controller import Controller
from crm_domain.clock import FixedClock
from crm_domain.context import Context
from crm_domain.entities import CampaignStatus

from crm_http_litestar import Settings
from crm_http_litestar.testing import World, open_world

from .conftest import drain_outbox

pytestmark = pytest.mark.anyio

STAFF = "marketing@avatar-imaging.example"


class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
async def mail_world(
    settings: Settings, clock: FixedClock, inbox: tuple[Inbox, int]
) -> AsyncIterator[World]:
    configured = attrs.evolve(
        settings,
        adapter_settings={
            "CRM_MAIL_PROVIDER": "smtp",
            "CRM_SMTP_HOST": "127.0.0.1",
            "CRM_SMTP_PORT": str(inbox[1]),
            "CRM_SMTP_SECURITY": "none",
            "CRM_MAIL_FROM": "Avatar Imaging <news@avatar-imaging.example>",
            "CRM_PUBLIC_URL": "https://crm.avatar-imaging.example",
        },
    )
    async for world in open_world(configured, clock):
        yield world


DRAFT = {
    "name": "Spring check-ups",
    "subject": "Hello {{ first_name }}",
    "body_html": "<p>Dear {{ first_name }},</p><script>x()</script><p>Book a scan.</p>",
}


async def _create(world: World, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await world.client.post(
        "/api/campaigns", headers=await world.headers("owner"), json=body or DRAFT
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_draft_preview_send_and_the_worker_delivers_once_each(
    mail_world: World, inbox: tuple[Inbox, int]
) -> None:
    world = mail_world
    server = inbox[0]
    headers = await world.headers("owner")
    created = await _create(world)
    assert created["status"] == "draft" and "<script>" not in created["body_html"]
    cid = created["id"]
    patched = await world.client.patch(
        f"/api/campaigns/{cid}", headers=headers, json={"name": "Spring 2026"}
    )
    assert patched.status_code == 200 and patched.json()["name"] == "Spring 2026"
    preview = (await world.client.get(f"/api/campaigns/{cid}/preview", headers=headers)).json()
    assert preview["count"] > 0 and len(preview["sample"]) == min(5, preview["count"])

    sent = await world.client.post(f"/api/campaigns/{cid}/send", headers=headers)
    assert sent.status_code == 202, sent.text
    assert sent.json()["status"] == "sending"
    assert server.messages == []  # the worker sends, not the request
    await drain_outbox(world)
    await drain_outbox(world)
    recipients = sorted(rcpt[0] for rcpt, _ in server.messages)
    assert len(recipients) == preview["count"] == len(set(recipients))
    for _, raw in server.messages:
        message = message_from_bytes(raw, policy=policy.default)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert str(message["List-Unsubscribe"]).startswith(
            "<https://crm.avatar-imaging.example/campaigns/unsubscribe/"
        )
    done = (await world.client.get(f"/api/campaigns/{cid}", headers=headers)).json()
    assert done["status"] == "completed"
    assert done["sent_count"] == preview["count"] == done["progress"]["sent"]
    stats = (await world.client.get(f"/api/campaigns/{cid}/stats", headers=headers)).json()
    assert stats["deliveries"]["sent"] == len(server.messages)
    again = await world.client.post(f"/api/campaigns/{cid}/send", headers=headers)
    assert again.status_code == 409
    listed = (await world.client.get("/api/campaigns", headers=headers)).json()
    assert [c["id"] for c in listed["items"]] == [cid]


async def test_a_scheduled_campaign_is_sent_by_the_worker_when_its_time_comes(
    mail_world: World, inbox: tuple[Inbox, int], clock: FixedClock
) -> None:
    world = mail_world
    server = inbox[0]
    headers = await world.headers("owner")
    cid = (await _create(world))["id"]
    at = clock.now() + timedelta(hours=3)
    scheduled = await world.client.post(
        f"/api/campaigns/{cid}/send", headers=headers, json={"scheduled_at": at.isoformat()}
    )
    assert scheduled.status_code == 202, scheduled.text
    assert scheduled.json()["status"] == "scheduled"
    await drain_outbox(world)
    assert server.messages == []  # not before its time
    clock.advance(timedelta(hours=3))
    await drain_outbox(world)
    # Read back through the service: tokens are checked against the real time, which
    # this test's clock has left 3 h behind.
    service = world.runtime.services.campaigns
    assert service is not None
    done = await service.get(Context.system(world.locations["sydney"]), cid)
    assert done.status is CampaignStatus.COMPLETED
    assert done.sent_count == len(server.messages) > 0


def _html_part(raw: bytes) -> str:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


async def test_opens_and_clicks_are_counted_once_and_clicks_go_only_to_campaign_links(
    mail_world: World, inbox: tuple[Inbox, int]
) -> None:
    world = mail_world
    server = inbox[0]
    headers = await world.headers("owner")
    body = (
        '<p>Hi {{ first_name }}, <a href="https://avatar-imaging.example/book?a=1&amp;b=2">'
        'book</a> or <a href="https://avatar-imaging.example/faq">read</a>.</p>'
    )
    cid = (await _create(world, {**DRAFT, "body_html": body}))["id"]
    assert (await world.client.post(f"/api/campaigns/{cid}/send", headers=headers)).is_success
    await drain_outbox(world)
    html = _html_part(server.messages[0][1])
    pixel = re.search(
        r'<img src="https://crm\.avatar-imaging\.example(/campaigns/open/[^"]+)"', html
    )
    clicks = re.findall(
        r'href="https://crm\.avatar-imaging\.example(/campaigns/click/[^"]+)"', html
    )
    assert pixel and len(clicks) == 2, html
    assert "avatar-imaging.example/faq" not in html  # the targets are not in the message

    for _ in range(2):  # a second load of the pixel changes nothing
        opened = await world.client.get(pixel.group(1))
        assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    forged = await world.client.get(pixel.group(1)[:-3] + "AAA")
    assert forged.status_code == 200 and forged.content == opened.content

    went = await world.client.get(clicks[0], follow_redirects=False)
    assert went.status_code == 302
    assert went.headers["location"] == "https://avatar-imaging.example/book?a=1&b=2"
    second = await world.client.get(clicks[1], follow_redirects=False)
    assert second.headers["location"] == "https://avatar-imaging.example/faq"
    tampered = clicks[0].replace(".0.", ".7.", 1)
    assert (await world.client.get(tampered, follow_redirects=False)).status_code == 404

    done = (await world.client.get(f"/api/campaigns/{cid}", headers=headers)).json()
    assert (done["opened_count"], done["clicked_count"]) == (1, 1)


async def test_a_test_send_goes_to_the_staff_address_only(
    mail_world: World, inbox: tuple[Inbox, int]
) -> None:
    # Separate from the worker test: the test client serves the app on its own event
    # loop, and the SMTP mailer's pooled connection belongs to the loop that opened it.
    world = mail_world
    server = inbox[0]
    created = await _create(world)
    test = await world.client.post(
        f"/api/campaigns/{created['id']}/test",
        headers=await world.headers("owner"),
        json={"to": STAFF},
    )
    assert test.status_code == 202, test.text
    [(rcpt, raw)] = server.messages
    assert rcpt == [STAFF]
    assert str(message_from_bytes(raw, policy=policy.default)["Subject"]) == "[TEST] Hello Test"
    status = await world.client.get(
        f"/api/campaigns/{created['id']}", headers=await world.headers("owner")
    )
    assert status.json()["status"] == "draft"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**DRAFT, "audience": {"warmness_min": 101}}, "warmness_min"),
        ({**DRAFT, "audience": {"sql": "1=1"}}, "sql"),
        ({**DRAFT, "body_html": "<p>{% if %}</p>"}, "body_html"),
        ({**DRAFT, "subject": "{{ first_name"}, "subject"),
        ({**DRAFT, "colour": "red"}, "colour"),
        ({**DRAFT, "audience": {"warmness_min": 50, "warmness_max": 10}}, "warmness_max"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field_and_stores_nothing(
    mail_world: World, body: dict[str, Any], field: str
) -> None:
    world = mail_world
    headers = await world.headers("owner")
    response = await world.client.post("/api/campaigns", headers=headers, json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    listed = (await world.client.get("/api/campaigns", headers=headers)).json()
    assert listed["items"] == []


async def test_permissions_and_other_locations(mail_world: World) -> None:
    world = mail_world
    reception = await world.headers("reception")
    refused = await world.client.post("/api/campaigns", headers=reception, json=DRAFT)
    assert refused.status_code == 403
    created = await _create(world)
    assert (
        await world.client.get(f"/api/campaigns/{created['id']}", headers=reception)
    ).status_code == 200
    assert (
        await world.client.post(f"/api/campaigns/{created['id']}/send", headers=reception)
    ).status_code == 403
    melbourne = await world.headers("owner", "melbourne")
    assert (
        await world.client.get(f"/api/campaigns/{created['id']}", headers=melbourne)
    ).status_code == 404
    bad_to = await world.client.post(
        f"/api/campaigns/{created['id']}/test",
        headers=await world.headers("owner"),
        json={"to": "not an address"},
    )
    assert bad_to.status_code == 422 and "to" in bad_to.text


async def test_the_unsubscribe_link_confirms_on_get_and_unsubscribes_on_post(
    mail_world: World, inbox: tuple[Inbox, int]
) -> None:
    world = mail_world
    headers = await world.headers("owner")
    cid = (await _create(world))["id"]
    before = (await world.client.get(f"/api/campaigns/{cid}/preview", headers=headers)).json()
    assert (await world.client.post(f"/api/campaigns/{cid}/send", headers=headers)).is_success
    await drain_outbox(world)
    _, raw = inbox[0].messages[0]
    link = str(message_from_bytes(raw, policy=policy.default)["List-Unsubscribe"]).strip("<>")
    path = link.removeprefix("https://crm.avatar-imaging.example")
    assert path.startswith("/campaigns/unsubscribe/")

    page = await world.client.get(path)  # no token: the link needs no login
    assert page.status_code == 200 and '<form method="post">' in page.text
    after_get = (await world.client.get(f"/api/campaigns/{cid}/preview", headers=headers)).json()
    assert after_get["count"] == before["count"]  # looking is not unsubscribing

    one_click = await world.client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200, one_click.text
    after = (await world.client.get(f"/api/campaigns/{cid}/preview", headers=headers)).json()
    assert after["count"] == before["count"] - 1
    assert (await world.client.post(path)).status_code == 200  # repeating is harmless

    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert (await world.client.get(forged)).status_code == 404
    assert (await world.client.post(forged)).status_code == 404
    entries = [e for e in await world.audit("sydney") if e.resource_type == "contact"]
    assert any("unsubscribed by link" in (e.detail or "") for e in entries)
