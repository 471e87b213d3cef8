"""Messaging through ``crm serve --demo`` as a process, with its in-process worker.

A Wix booking webhook creates the booking; the patient's reply "C" cancels it; STOP
withdraws SMS consent (one confirmation goes out through ClickSend's wire
format to a loopback server); a later ``POST /api/sms`` is a 409 and nothing
more is sent.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from crm_messaging.testing import (
    CLICKSEND_SEND_PATH,
    ProviderServer,
    Reply,
    clicksend_envelope,
    clicksend_message,
    running_provider_server,
)

from crm_http_litestar.testing import cli_env, free_port, start_crm

from .conftest import WIX_SITE, WixKey, wix_body, wix_booking

PATIENT = "+61412000333"


@pytest.fixture
def clicksend_server() -> Iterator[ProviderServer]:
    with running_provider_server() as server:
        server.defaults[CLICKSEND_SEND_PATH] = Reply(
            200, clicksend_envelope(clicksend_message(PATIENT, message_id="CS-SERVED"))
        )
        yield server


@pytest.fixture
def served_demo(
    tmp_path: Path, wix_key: WixKey, clicksend_server: ProviderServer
) -> Iterator[list[str]]:
    """``crm serve --demo`` with Wix and ClickSend configured; yields its printed lines."""
    port = free_port()
    env = cli_env(
        tmp_path / "crm.db",
        CRM_WIX_PUBLIC_KEY=wix_key.public_pem.replace("\n", "\\n"),
        CRM_WIX_SITES=f"{WIX_SITE}=sydney",
        CRM_SMS_PROVIDER="clicksend",
        CRM_CLICKSEND_USERNAME="clinic-user",
        CRM_CLICKSEND_API_KEY="cs-key-0123456789",
        CRM_CLICKSEND_BASE_URL=f"{clicksend_server.url}/v3",
    )
    process, lines = start_crm(
        tmp_path, env, "serve", "--demo", "--port", str(port), "--no-access-log"
    )
    output: list[str] = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and not any("running on" in o for o in output):
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                if process.poll() is not None:
                    break
        assert any("running on" in o for o in output), "".join(output)
        output.append(f"BASE http://127.0.0.1:{port}")
        yield output
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _eventually(check: Callable[[], Any], what: str, seconds: float = 20) -> Any:
    """Poll ``check`` until it returns something truthy (the worker polls every second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_wix_booking_then_reply_cancels_then_stop_blocks_sms(
    served_demo: list[str], wix_key: WixKey, clicksend_server: ProviderServer
) -> None:
    printed = "".join(served_demo)
    base = served_demo[-1].split()[1]
    token = re.search(r"Bearer ([\w.-]+)", printed)
    sms_url = re.search(r"ClickSend inbound SMS: (\S+)", printed)
    assert token and sms_url, printed
    assert f"{base}/webhooks/wix" in printed and f"{base}/webhooks/manychat" in printed
    assert re.search(r"curl -d from=.* -d body=Cancel", printed), printed
    auth = {"Authorization": f"Bearer {token.group(1)}"}
    clinic = re.search(r"to='(\+\d+)'", printed)
    assert clinic, printed

    with httpx.Client(base_url=base, timeout=10) as client:
        starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
        booking = wix_booking("wix-served-1", starts=starts, email=None, phone=PATIENT)
        body = wix_body(
            wix_key, "created", booking, event_id="served-1", event_time=datetime.now(UTC)
        )
        created = client.post("/webhooks/wix", content=body)
        assert created.status_code == 200, created.text

        def wix_booking_row() -> dict[str, Any] | None:
            items = client.get("/api/bookings", headers=auth, params={"limit": 200}).json()
            return next((b for b in items["items"] if b["source"] == "wix"), None)

        row = _eventually(wix_booking_row, "the worker to apply the Wix booking")
        contact_id = row["contact_id"]
        # Reception records the patient's SMS consent (given on the phone).
        consent = client.patch(
            f"/api/contacts/{contact_id}", headers=auth, json={"sms_opt_in": True}
        )
        assert consent.status_code == 200, consent.text

        def reply(text: str, message_id: str) -> None:
            answer = client.post(
                sms_url.group(1),
                data={
                    "from": PATIENT,
                    "to": clinic.group(1),
                    "body": text,
                    "message_id": message_id,
                },
            )
            assert answer.status_code == 200, answer.text

        # Reception texts the patient the clinic's usual codes; the bare "C" answers it.
        asked = client.post(
            "/api/sms",
            headers=auth,
            json={
                "contact_id": contact_id,
                "body": "Your MRI is booked. Reply Y to confirm or C to cancel.",
                "kind": "transactional",
            },
        )
        assert asked.status_code == 202, asked.text
        _eventually(lambda: clicksend_server.to(CLICKSEND_SEND_PATH), "the clinic's SMS sent")
        reply("C", "served-in-1")
        status = client.get(f"/api/bookings/{row['id']}", headers=auth).json()["status"]
        assert status == "cancelled"

        reply("STOP", "served-in-2")
        contact = client.get(f"/api/contacts/{contact_id}", headers=auth).json()
        assert contact["sms_opt_in"] is False
        _eventually(
            lambda: len(clicksend_server.to(CLICKSEND_SEND_PATH)) == 2, "the opt-out confirmation"
        )
        confirmation = clicksend_server.to(CLICKSEND_SEND_PATH)[1]
        assert confirmation["json"]["messages"][0]["to"] == PATIENT
        assert "unsubscribed" in confirmation["json"]["messages"][0]["body"]

        refused = client.post(
            "/api/sms",
            headers=auth,
            json={"contact_id": contact_id, "body": "Special offer", "kind": "transactional"},
        )
        assert refused.status_code == 409, refused.text
        time.sleep(2)  # two worker polls: still nothing more sent
        assert len(clicksend_server.to(CLICKSEND_SEND_PATH)) == 2
        outbound = client.get(
            "/api/sms", headers=auth, params={"contact_id": contact_id, "direction": "outbound"}
        ).json()["items"]
        assert [m["status"] for m in outbound] == ["sent", "sent"]
