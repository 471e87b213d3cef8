"""The staff console's rules, in process: sessions from a cookie, CSRF, CSP, RBAC, tenancy, audit.

The browser tests (``test_http_console_browser.py``) drive the same pages in
Chromium; these check each rule directly and fast.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from crm_domain.clock import FixedClock
from litestar import Router, get

from crm_http_litestar import CrmConfig, Settings, create_app
from crm_http_litestar.console import CONTENT_SECURITY_POLICY
from crm_http_litestar.pipeline import CONSOLE_COOKIE, RouteWithoutPermission
from crm_http_litestar.testing import EMAILS, World, console_browser, open_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def demo_world(settings: Settings, clock: FixedClock) -> AsyncIterator[World]:
    """The demo world with ``demo`` on (the one-click sign-in buttons exist only then)."""
    async for world in open_world(attrs.evolve(settings, demo=True), clock):
        yield world


async def _contact(world: World, who: str = "owner", location: str = "sydney") -> dict[str, Any]:
    """A new contact who may receive SMS, made through the API."""
    response = await world.client.post(
        "/api/contacts",
        headers=await world.headers(who, location),
        json={
            "first_name": "Casey",
            "last_name": "Console",
            "phone": "+61412345678",
            "sms_opt_in": True,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _booking_today(world: World, contact_id: str) -> dict[str, Any]:
    """A pending booking earlier today in Sydney (today's list is by local day)."""
    tz = ZoneInfo("Australia/Sydney")
    now = world.clock.now().astimezone(tz)
    starts = max(datetime.combine(now.date(), time.min, tzinfo=tz), now - timedelta(minutes=30))
    response = await world.client.post(
        "/api/bookings",
        headers=await world.headers("owner"),
        json={
            "contact_id": contact_id,
            "service_type": "MRI",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(minutes=15)).isoformat(),
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _booking_status(world: World, booking_id: str) -> str:
    response = await world.client.get(
        f"/api/bookings/{booking_id}", headers=await world.headers("owner")
    )
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def test_sign_in_page_has_a_button_per_demo_user_only_in_the_demo(
    world: World, demo_world: World
) -> None:
    page = await demo_world.client.get("/console/sign-in")
    assert page.status_code == 200
    for email in EMAILS.values():
        assert f'data-demo-user="{email}"' in page.text
    assert "/console/sign-in/google" not in page.text  # no Google client id configured
    plain = await world.client.get("/console/sign-in")
    assert "data-demo-user" not in plain.text
    refused = await world.client.post(
        "/console/sign-in/demo",
        data={"email": EMAILS["owner"], "location": "sydney", "_csrf_token": "x"},
    )
    assert refused.status_code == 403  # no valid CSRF token, before anything else


async def test_demo_sign_in_sets_a_locked_down_session_cookie_and_sign_out_revokes_it(
    demo_world: World,
) -> None:
    async with console_browser(demo_world, None) as browser:
        signed_in = await browser.post(
            "/console/sign-in/demo", {"email": EMAILS["reception"], "location": "sydney"}
        )
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/console/today"
        cookie = signed_in.headers["set-cookie"]
        assert cookie.startswith(f"{CONSOLE_COOKIE}=")
        assert "HttpOnly" in cookie
        assert "Path=/console" in cookie
        assert "SameSite=lax" in cookie
        assert "Secure" not in cookie  # served over plain http here
        token = cookie.split(";", 1)[0].split("=", 1)[1]
        today = await browser.get("/console/today")
        assert today.status_code == 200
        assert "receptionist" in today.text
        # The same token works as a bearer token: it is the API's own kind of session.
        me = await demo_world.client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["roles"] == ["receptionist"]
        out = await browser.post("/console/sign-out", {})
        assert out.status_code == 303
        assert out.headers["location"] == "/console/sign-in"
        # The old cookie no longer opens anything: the server-side session is revoked.
        browser.client.cookies.set(
            CONSOLE_COOKIE, token, domain="testserver.local", path="/console"
        )
        after = await browser.get("/console/today")
        assert after.status_code == 401
        assert after.headers["content-type"].startswith("text/html")
        assert 'href="/console/sign-in"' in after.text
        me = await demo_world.client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401


async def test_demo_sign_in_is_a_404_outside_the_demo(world: World) -> None:
    async with console_browser(world, None) as browser:
        refused = await browser.post(
            "/console/sign-in/demo", {"email": EMAILS["owner"], "location": "sydney"}
        )
        assert refused.status_code == 404
        assert CONSOLE_COOKIE not in refused.headers.get("set-cookie", "")


async def test_pages_send_a_strict_content_security_policy(world: World) -> None:
    async with console_browser(world, "reception") as browser:
        for path in ("/console/sign-in", "/console/today", "/console/no-such-page"):
            response = await browser.get(path)
            policy = response.headers["content-security-policy"]
            assert policy == CONTENT_SECURITY_POLICY, path
            assert "default-src 'self'" in policy
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
            assert response.headers["x-frame-options"] == "DENY"
            html = response.text
            assert "<script" not in html and " style=" not in html, path
            assert "https://" not in html, path  # nothing from a CDN
        assert response.headers["cache-control"] == "no-store"  # pages hold patient data
        css = await browser.client.get("/console/static/console.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert css.headers["cache-control"] == "public, max-age=3600"
        missing = await browser.client.get("/console/static/..%2F_web.py")
        assert missing.status_code == 404


async def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(
    world: World,
) -> None:
    contact = await _contact(world)
    booking = await _booking_today(world, contact["id"])
    async with console_browser(world, "reception") as browser:
        await browser.get("/console/today")
        path = f"/console/bookings/{booking['id']}/confirm"
        refused = await browser.post(path, {}, csrf=False)
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("text/html")
        forged = await browser.post(path, {"_csrf_token": "forged"}, csrf=False)
        assert forged.status_code == 403
        assert await _booking_status(world, booking["id"]) == "pending"
        done = await browser.post(path, {})
        assert done.status_code == 303
        assert done.headers["location"] == "/console/today?done=confirmed"
        assert await _booking_status(world, booking["id"]) == "confirmed"
    entries = await world.audit("sydney")
    assert any(
        e.request_path == path and e.status_code == 403 and e.outcome.value == "denied"
        for e in entries
    )


async def test_the_api_and_webhooks_take_no_csrf_token(world: World) -> None:
    # A bearer-token POST with no CSRF cookie or field still works (CSRF is console-only).
    contact = await _contact(world)
    assert contact["first_name"] == "Casey"
    # A webhook is judged by its own check (here: no key), not refused for CSRF.
    hook = await world.client.post("/webhooks/manychat", json={})
    assert hook.status_code in (401, 403, 404), hook.text  # its own key check answered
    assert hook.headers["content-type"].startswith("application/problem+json")
    assert "CSRF" not in hook.text


async def test_a_console_route_without_a_declared_permission_stops_the_app(
    settings: Settings,
) -> None:
    @get("/undeclared", opt={"console": True}, sync_to_thread=False)
    def undeclared() -> str:
        return "open"

    with pytest.raises(RouteWithoutPermission, match="/console/undeclared"):
        create_app(
            CrmConfig(
                settings=settings,
                extra_routes=[Router(path="/console", route_handlers=[undeclared])],
            )
        )

    @get("/not-console", opt={"permission": "contacts:read"}, sync_to_thread=False)
    def not_console() -> str:
        return "json refusals"

    # A permission is not enough: under /console a route must also be a console route.
    with pytest.raises(RouteWithoutPermission, match="console"):
        create_app(
            CrmConfig(
                settings=settings,
                extra_routes=[Router(path="/console", route_handlers=[not_console])],
            )
        )

    @get("/declared", opt={"console": True, "public": True}, sync_to_thread=False)
    def declared() -> str:
        return "public on purpose"

    create_app(
        CrmConfig(
            settings=settings, extra_routes=[Router(path="/console", route_handlers=[declared])]
        )
    )


async def test_another_locations_contact_is_a_404_page_with_no_data(world: World) -> None:
    melbourne = await _contact(world, "owner", "melbourne")
    async with console_browser(world, "reception") as browser:
        page = await browser.get(f"/console/contacts/{melbourne['id']}")
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "Casey" not in page.text and "+61412345678" not in page.text
        # The owner at Melbourne sees it.
    async with console_browser(world, "owner", "melbourne") as browser:
        page = await browser.get(f"/console/contacts/{melbourne['id']}")
        assert page.status_code == 200
        assert "Casey Console" in page.text


async def test_viewing_a_contact_page_writes_an_audit_entry_for_that_contact(
    world: World,
) -> None:
    contact = await _contact(world)
    path = f"/console/contacts/{contact['id']}"
    async with console_browser(world, "reception") as browser:
        assert (await browser.get(path)).status_code == 200
    reads = [
        e
        for e in await world.audit("sydney")
        if e.request_path == path and e.resource_type == "contact" and e.action == "READ"
    ]
    assert len(reads) == 1, reads
    assert reads[0].resource_id == contact["id"]
    assert reads[0].user_id == world.users["reception"]
    assert reads[0].outcome.value == "success"


async def test_readonly_sees_no_write_buttons_and_a_forged_post_is_refused(
    world: World,
) -> None:
    contact = await _contact(world)
    booking = await _booking_today(world, contact["id"])
    async with console_browser(world, "reception") as reception:
        today = await reception.get("/console/today")
        assert f"/console/bookings/{booking['id']}/confirm" in today.text
    async with console_browser(world, "auditor") as auditor:
        today = await auditor.get("/console/today")
        assert today.status_code == 200
        assert booking["id"] in today.text  # reads the day
        assert "/confirm" not in today.text and "/cancel" not in today.text
        assert "/complete" not in today.text
        page = await auditor.get(f"/console/contacts/{contact['id']}")
        assert page.status_code == 200
        assert "Casey Console" in page.text
        assert 'method="post" action="/console/contacts' not in page.text
        assert auditor.csrf  # a valid token: only the role stands in the way
        forged = await auditor.post(f"/console/bookings/{booking['id']}/confirm", {})
        assert forged.status_code == 403
        assert forged.headers["content-type"].startswith("text/html")
        assert "Not allowed" in forged.text
        sms = await auditor.post(f"/console/contacts/{contact['id']}/sms", {"body": "hi"})
        assert sms.status_code == 403
    assert await _booking_status(world, booking["id"]) == "pending"


async def test_bad_form_input_re_renders_the_form_naming_the_field_and_stores_nothing(
    world: World,
) -> None:
    contact = await _contact(world)
    path = f"/console/contacts/{contact['id']}"
    async with console_browser(world, "reception") as browser:
        await browser.get(path)
        bad = await browser.post(
            f"{path}/bookings",
            {"service_type": "MRI", "date": "31/02/2026", "time": "9am", "minutes": "x"},
        )
        assert bad.status_code == 422
        assert "Date and time: use a date like" in bad.text
        assert "Length: a number of minutes" in bad.text
        assert 'aria-invalid="true"' in bad.text
        assert 'value="31/02/2026"' in bad.text  # what was typed comes back
        empty = await browser.post(f"{path}/sms", {"body": "   "})
        assert empty.status_code == 422
        assert "Message: write the text to send." in empty.text
        long = await browser.post(f"{path}/sms", {"body": "x" * 1601})
        assert long.status_code == 422
        assert "at most 1600 characters" in long.text
    bookings = await world.client.get(
        f"/api/bookings?contact_id={contact['id']}", headers=await world.headers("owner")
    )
    assert bookings.json()["items"] == []
    messages = await world.client.get(
        f"/api/sms?contact_id={contact['id']}", headers=await world.headers("owner")
    )
    assert messages.json()["items"] == []


async def test_booking_from_the_contact_page_shows_on_today_in_local_time(
    world: World,
) -> None:
    contact = await _contact(world)
    tz = ZoneInfo("Australia/Sydney")
    when = (world.clock.now().astimezone(tz) + timedelta(days=1)).replace(
        hour=10, minute=15, second=0, microsecond=0
    )
    async with console_browser(world, "reception") as browser:
        await browser.get(f"/console/contacts/{contact['id']}")
        made = await browser.post(
            f"/console/contacts/{contact['id']}/bookings",
            {
                "service_type": "CT scan",
                "date": when.strftime("%Y-%m-%d"),
                "time": "10:15",
                "minutes": "45",
            },
        )
        assert made.status_code == 303, made.text
        page = await browser.get(made.headers["location"])
        assert "Booking created." in page.text
        assert "Booking: CT scan" in page.text
        assert when.strftime("%a %d %b %Y, 10:15") in page.text  # Sydney time, not UTC
    listed = await world.client.get(
        f"/api/bookings?contact_id={contact['id']}", headers=await world.headers("owner")
    )
    (booking,) = listed.json()["items"]
    assert datetime.fromisoformat(booking["starts_at"]) == when


async def test_signed_out_browsers_get_a_sign_in_page_not_data(world: World) -> None:
    async with console_browser(world, None) as browser:
        for path in ("/console/today", "/console/contacts/anything"):
            page = await browser.get(path)
            assert page.status_code == 401, path
            assert "Please sign in" in page.text
        home = await browser.client.get("/console", follow_redirects=False)
        assert home.status_code == 303
        assert home.headers["location"] == "/console/today"
    # A bearer header is not a console session (and a cookie is not an API session's source).
    page = await world.client.get("/console/today", headers=await world.headers("owner"))
    assert page.status_code == 401


async def test_reports_page_draws_the_chart_on_the_server_and_explains_a_question(
    world: World,
) -> None:
    async with console_browser(world, "owner") as browser:
        page = await browser.get("/console/reports?metric=bookings&by=week&days=90")
        assert page.status_code == 200
        chart = re.search(r'<img class="chart" src="([^"]+)"', page.text)
        assert chart is not None
        svg = await browser.client.get(chart.group(1).replace("&amp;", "&"))
        assert svg.status_code == 200
        assert svg.headers["content-type"].startswith("image/svg+xml")
        assert svg.text.lstrip().startswith("<svg")
        asked = await browser.get("/console/reports?question=no-show+rate+by+week")
        assert asked.status_code == 200
        assert "Understood as: <strong>no_show_rate by week" in asked.text
        bad = await browser.get("/console/reports?metric=revenue&by=week&days=90")
        assert bad.status_code == 422
        assert "Metric: choose one of the list." in bad.text
        unknown = await browser.get("/console/reports?question=revenue+by+month")
        assert unknown.status_code == 422
        assert "Question:" in unknown.text
    # Reports are read by every role, readonly included.
    async with console_browser(world, "auditor") as browser:
        assert (await browser.get("/console/reports")).status_code == 200


async def test_admin_page_shows_users_ip_rules_your_address_and_a_verified_audit_log(
    world: World,
) -> None:
    async with console_browser(world, "owner") as browser:
        page = await browser.get("/console/admin")
        assert page.status_code == 200
        assert "Your address is <strong><code>127.0.0.1</code></strong>" in page.text
        assert "<code>127.0.0.0/8</code>" in page.text
        assert EMAILS["reception"] in page.text and "receptionist" in page.text
        assert "Verified: all" in page.text
    async with console_browser(world, "reception") as browser:
        refused = await browser.get("/console/admin")
        assert refused.status_code == 403
        assert "Not allowed" in refused.text
        today = await browser.get("/console/today")
        assert 'href="/console/admin"' not in today.text  # no link to a page it cannot open


async def test_campaigns_and_automations_are_listed_for_the_roles_that_may_read_them(
    world: World,
) -> None:
    headers = await world.headers("owner")
    campaign = await world.client.post(
        "/api/campaigns",
        headers=headers,
        json={"name": "Spring check-ups", "subject": "Hello", "body_html": "<p>Book</p>"},
    )
    assert campaign.status_code == 201, campaign.text
    rule = await world.client.post(
        "/api/automations",
        headers=headers,
        json={
            "name": "Tag web leads",
            "trigger": "ContactCreated",
            "actions": [{"kind": "add_tag", "params": {"tag": "web"}}],
        },
    )
    assert rule.status_code == 201, rule.text
    async with console_browser(world, "owner") as browser:
        page = await browser.get("/console/campaigns")
        assert page.status_code == 200
        assert "Spring check-ups" in page.text and "draft" in page.text
        page = await browser.get("/console/automations")
        assert page.status_code == 200
        assert "Tag web leads" in page.text and "add tag" in page.text
        assert 'href="/console/automations"' in page.text
    async with console_browser(world, "reception") as browser:
        assert (await browser.get("/console/campaigns")).status_code == 200
        refused = await browser.get("/console/automations")
        assert refused.status_code == 403
        assert "Tag web leads" not in refused.text
        assert 'href="/console/automations"' not in (await browser.get("/console/today")).text
    # Another location sees neither.
    async with console_browser(world, "owner", "melbourne") as browser:
        assert "Spring check-ups" not in (await browser.get("/console/campaigns")).text
        assert "Tag web leads" not in (await browser.get("/console/automations")).text


async def test_cookies_are_secure_when_the_console_is_served_over_https(
    settings: Settings, clock: FixedClock
) -> None:
    import httpx

    configured = attrs.evolve(
        settings, demo=True, adapter_settings={"CRM_PUBLIC_URL": "https://crm.example"}
    )
    async for world in open_world(configured, clock):
        # Behind a TLS-ending proxy the socket is http: the public URL decides.
        page = await world.client.get("/console/sign-in")
        assert "; Secure" in page.headers["set-cookie"]
        transport = httpx.ASGITransport(app=world.peer)  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url="https://testserver.local"
        ) as client:
            page = await client.get("/console/sign-in")
            token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            signed_in = await client.post(
                "/console/sign-in/demo",
                data={
                    "email": EMAILS["reception"],
                    "location": "sydney",
                    "_csrf_token": token.group(1),
                },
            )
            assert signed_in.status_code == 303, signed_in.text
            cookie = signed_in.headers["set-cookie"]
            assert cookie.startswith(f"{CONSOLE_COOKIE}=") and "; Secure" in cookie


async def test_the_ip_allowlist_applies_to_console_pages(world: World) -> None:
    async with console_browser(world, "reception") as browser:
        assert (await browser.get("/console/today")).status_code == 200
        world.peer.address = "203.0.113.9"  # outside the demo's 127.0.0.0/8 and ::1
        try:
            refused = await browser.get("/console/today")
        finally:
            world.peer.address = "127.0.0.1"
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("text/html")
        assert "Bookings today" not in refused.text
    denied = [
        e
        for e in await world.audit("sydney")
        if e.request_path == "/console/today" and e.ip_address == "203.0.113.9"
    ]
    assert [e.outcome.value for e in denied] == ["denied"]
