"""Issue 17's done-when: ``crm serve --demo`` and a separate ``crm worker`` process.

The server runs without its embedded worker (``CRM_RUN_WORKER=false``); the
worker's clock is a file the test writes (``CRM_CLOCK_FILE``), so "the day
before the scan" comes at once.  A booking created through the API gets its
reminder through ClickSend's wire format (a loopback server) at the right
local time and not before; the patient's "Cancel" reply cancels it and the
later reminder does nothing; a no-show becomes a follow-up task for the next
morning.  The worker is killed (SIGKILL) half-way and restarted: every action
still happens exactly once.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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

from .test_http_messaging_served import _eventually

PATIENT = "+61412000444"
CLINIC = "+61290000017"
SYDNEY = ZoneInfo("Australia/Sydney")


@pytest.fixture
def clicksend_server() -> Iterator[ProviderServer]:
    with running_provider_server() as server:
        server.defaults[CLICKSEND_SEND_PATH] = Reply(
            200, clicksend_envelope(clicksend_message(PATIENT, message_id="CS-REMINDER"))
        )
        yield server


class Processes:
    """The server, the worker (restartable) and the worker's clock file."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.clock_file = Path(env["CRM_CLOCK_FILE"])
        self.worker: subprocess.Popen[str] | None = None
        self.children: list[subprocess.Popen[str]] = []

    def start_worker(self) -> None:
        process, lines = start_crm(self.tmp_path, self.env, "worker")
        self.children.append(process)
        self.worker = process
        _wait_line(process, lines, "consuming the outbox")

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(timeout=20)
        self.worker = None

    def set_clock(self, when: datetime) -> None:
        self.clock_file.write_text(when.isoformat(), encoding="utf-8")


def _wait_line(process: subprocess.Popen[str], lines: queue.Queue[str], text: str) -> list[str]:
    output: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(text in o for o in output):
        try:
            output.append(lines.get(timeout=1))
        except queue.Empty:
            if process.poll() is not None:
                break
    assert any(text in o for o in output), "".join(output)
    return output


@pytest.fixture
def served(tmp_path: Path, clicksend_server: ProviderServer) -> Iterator[tuple[Processes, str]]:
    port = free_port()
    env = cli_env(
        tmp_path / "crm.db",
        CRM_RUN_WORKER="false",
        CRM_SMS_PROVIDER="clicksend",
        CRM_SMS_NUMBERS=f"sydney={CLINIC}",
        CRM_CLICKSEND_USERNAME="clinic-user",
        CRM_CLICKSEND_API_KEY="cs-key-0123456789",
        CRM_CLICKSEND_BASE_URL=f"{clicksend_server.url}/v3",
    )
    server, lines = start_crm(
        tmp_path, env, "serve", "--demo", "--port", str(port), "--no-access-log"
    )
    # Only the worker reads the clock file; the server keeps real time (its tokens expire).
    processes = Processes(tmp_path, {**env, "CRM_CLOCK_FILE": str(tmp_path / "clock.txt")})
    processes.children.append(server)
    try:
        output = _wait_line(server, lines, "running on")
        output.append(f"BASE http://127.0.0.1:{port}")
        processes.start_worker()
        yield processes, "".join(output)
    finally:
        for child in processes.children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()


def test_reminders_reply_no_show_and_a_killed_worker(
    served: tuple[Processes, str], clicksend_server: ProviderServer
) -> None:
    processes, printed = served
    base = re.search(r"BASE (\S+)", printed)
    token = re.search(r"Bearer ([\w.-]+)", printed)
    sms_url = re.search(r"ClickSend inbound SMS: (\S+)", printed)
    assert base and token and sms_url, printed
    auth = {"Authorization": f"Bearer {token.group(1)}"}
    sent = lambda: clicksend_server.to(CLICKSEND_SEND_PATH)  # noqa: E731

    with httpx.Client(base_url=base.group(1), timeout=10) as client:
        contact = client.post(
            "/api/contacts",
            headers=auth,
            json={"first_name": "Rem", "phone": PATIENT, "sms_opt_in": True},
        )
        assert contact.status_code == 201, contact.text
        contact_id = contact.json()["id"]
        # 11:00 Sydney time three days on: reminders at 11:00 the day before and 09:00.
        day = (datetime.now(SYDNEY) + timedelta(days=3)).date()
        starts = datetime(day.year, day.month, day.day, 11, 0, tzinfo=SYDNEY)
        booking = client.post(
            "/api/bookings",
            headers=auth,
            json={
                "contact_id": contact_id,
                "service_type": "MRI",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(minutes=45)).isoformat(),
            },
        )
        assert booking.status_code == 201, booking.text
        booking_id = booking.json()["id"]

        # A minute before the first reminder: nothing goes out.
        processes.set_clock(starts - timedelta(days=1, minutes=1))
        time.sleep(3)  # three worker polls
        assert sent() == []

        processes.set_clock(starts - timedelta(days=1) + timedelta(minutes=1))
        [reminder] = _eventually(sent, "the T-24 h reminder")
        message = reminder["json"]["messages"][0]
        assert (message["to"], message["from"]) == (PATIENT, CLINIC)
        local = f"{starts:%a %d %b} at 11:00"
        assert local in message["body"] and "Reply Y to confirm or C to cancel" in message["body"]

        def outbound_sent() -> bool:
            items = client.get(
                "/api/sms",
                headers=auth,
                params={"contact_id": contact_id, "direction": "outbound"},
            ).json()["items"]
            return [m["status"] for m in items] == ["sent"]

        _eventually(outbound_sent, "the reminder recorded as sent")
        # Half-way: the worker dies without warning and a new one takes over.
        processes.kill_worker()
        processes.start_worker()

        answer = client.post(
            sms_url.group(1),
            data={"from": PATIENT, "to": CLINIC, "body": "Cancel", "message_id": "rem-in-1"},
        )
        assert answer.status_code == 200, answer.text
        status = client.get(f"/api/bookings/{booking_id}", headers=auth).json()["status"]
        assert status == "cancelled"

        # A scan that has just started, then marked a no-show by reception.
        soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        missed = client.post(
            "/api/bookings",
            headers=auth,
            json={
                "contact_id": contact_id,
                "service_type": "CT",
                "starts_at": soon.isoformat(),
                "ends_at": (soon + timedelta(minutes=30)).isoformat(),
            },
        )
        assert missed.status_code == 201, missed.text
        time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.5)
        no_show = client.patch(
            f"/api/bookings/{missed.json()['id']}", headers=auth, json={"status": "no_show"}
        )
        assert no_show.status_code == 200, no_show.text

        # Past the T-2 h time (and any lease the killed worker held).
        processes.set_clock(starts - timedelta(hours=2) + timedelta(minutes=5))

        def follow_ups() -> list[Any]:
            items = client.get(
                "/api/tasks", headers=auth, params={"booking_id": missed.json()["id"]}
            ).json()["items"]
            return list(items)

        [task] = _eventually(follow_ups, "the no-show follow-up task")
        due = datetime.fromisoformat(task["due_at"]).astimezone(SYDNEY)
        assert (due.date() - soon.astimezone(SYDNEY).date(), due.hour, due.minute) == (
            timedelta(days=1),
            9,
            0,
        )
        # Once more past everything: still one SMS (the cancelled booking's T-2 h did nothing).
        processes.set_clock(starts + timedelta(hours=1))
        time.sleep(3)
        assert len(sent()) == 1
        assert len(follow_ups()) == 1
