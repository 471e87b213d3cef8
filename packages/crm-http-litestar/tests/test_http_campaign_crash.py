"""A campaign survives its worker being killed mid-send: nobody gets two messages.

``crm worker`` runs as a real process against a SQLite file and a real SMTP
server (aiosmtpd, in this process); it is SIGKILLed at a random point while the
campaign is sending, then started again.  The outbox lease (60 s) lapses, the
restarted worker picks the campaign's event up again and resumes from the
delivery rows.

What is asserted is the honest guarantee: no recipient receives two messages;
every delivery recorded ``sent`` was received exactly once; the campaign's
``sent_count`` equals the ``sent`` rows; at most one delivery (the one in flight
when the process died) is "in doubt" — recorded ``failed`` and not resent,
received at most once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from crm_domain.clock import FixedClock
from crm_domain.context import Context
from crm_domain.entities import AudienceFilter, CampaignStatus, DeliveryStatus
from crm_domain.plugins import load_gateway
from crm_domain.queries import DeliveryQuery
from crm_domain.services import CampaignDraft, CreateContact
from crm_domain.services.campaigns import IN_DOUBT

from crm_http_litestar import Settings
from crm_http_litestar.testing import CRM, SECRET, cli_env, open_world

pytestmark = pytest.mark.anyio

RECIPIENTS = 120


class SlowInbox:
    """Keeps each accepted message's recipients; a short pause per message, like a real MTA."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.02)
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[SlowInbox, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    handler = SlowInbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def _worker(database: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = cli_env(
        database,
        CRM_SECRET_KEY=SECRET,
        CRM_MAIL_PROVIDER="smtp",
        CRM_SMTP_HOST="127.0.0.1",
        CRM_SMTP_PORT=str(port),
        CRM_SMTP_SECURITY="none",
        CRM_MAIL_FROM="Avatar Imaging <news@avatar-imaging.example>",
    )
    with log.open("ab") as out:
        return subprocess.Popen([*CRM, "worker"], env=env, stdout=out, stderr=out)


def _timed_out(what: str, log: Path) -> AssertionError:
    return AssertionError(f"timed out waiting for {what}; worker log:\n{log.read_text()}")


async def _wait_for(predicate: Any, seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():
        if time.monotonic() > deadline:
            raise _timed_out(what, log)
        await asyncio.sleep(0.1)


async def test_killing_the_worker_mid_campaign_sends_nobody_two_messages(
    tmp_path: Path, smtp: tuple[SlowInbox, int]
) -> None:
    inbox, port = smtp
    database = tmp_path / "crm.db"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{database}",
        secret_key=SECRET,
        run_worker=False,
        adapter_settings={
            "CRM_MAIL_PROVIDER": "smtp",
            "CRM_SMTP_HOST": "127.0.0.1",
            "CRM_SMTP_PORT": str(port),
            "CRM_SMTP_SECURITY": "none",
            "CRM_MAIL_FROM": "Avatar Imaging <news@avatar-imaging.example>",
        },
    )
    async for world in open_world(settings, _clock()):
        ctx = Context.system(world.locations["sydney"])
        services = world.runtime.services
        for n in range(RECIPIENTS):
            await services.contacts.create(
                ctx,
                CreateContact(
                    first_name=f"Pat{n}",
                    email=f"pat{n}@example.org",
                    email_opt_in=True,
                    tags=("crash-test",),
                ),
            )
        campaigns = services.campaigns
        assert campaigns is not None
        draft = CampaignDraft(
            name="Crash test",
            subject="Hello {{ first_name }}",
            body_html="<p>Dear {{ first_name }}, book your scan.</p>",
            audience=AudienceFilter(tag="crash-test"),
        )
        campaign = await campaigns.create(ctx, draft)
        await campaigns.send(ctx, campaign.id)
        tenant = world.locations["sydney"]

    log = tmp_path / "worker.log"
    kill_after = random.randint(3, RECIPIENTS - 10)
    first = _worker(database, port, log)

    async def reached() -> bool:
        return len(inbox.received) >= kill_after or first.poll() is not None

    await _wait_for(reached, 60, f"{kill_after} messages", log)
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL  # killed, not finished or crashed
    received_before_restart = len(inbox.received)
    assert received_before_restart < RECIPIENTS, "the worker finished before it was killed"

    gateway = load_gateway(settings.database_url)
    second = _worker(database, port, log)
    try:

        async def completed() -> bool:
            async with gateway.unit_of_work(tenant) as uow:
                found = await uow.campaigns.get(campaign.id)
            return found.status is CampaignStatus.COMPLETED

        # The killed worker's lease on the event (60 s) must lapse first.
        await _wait_for(completed, 150, "the campaign to complete", log)
        async with gateway.unit_of_work(tenant) as uow:
            done = await uow.campaigns.get(campaign.id)
            deliveries = []
            query = DeliveryQuery(campaign_id=campaign.id, limit=200)
            page = await uow.deliveries.list(query)
            deliveries.extend(page.items)
            assert page.next_cursor is None
    finally:
        second.send_signal(signal.SIGINT)
        try:
            second.wait(timeout=15)
        except subprocess.TimeoutExpired:
            second.kill()
        await gateway.close()

    counts = Counter(inbox.received)
    assert max(counts.values()) == 1, [a for a, c in counts.items() if c > 1]
    sent = {d.email for d in deliveries if d.status is DeliveryStatus.SENT}
    in_doubt = [d for d in deliveries if d.status is DeliveryStatus.FAILED]
    assert all(d.error == IN_DOUBT for d in in_doubt)
    assert len(in_doubt) <= 1
    assert len(deliveries) == RECIPIENTS
    assert len(sent) + len(in_doubt) == RECIPIENTS
    assert done.sent_count == len(sent)
    # Everyone recorded sent got it once; the in-doubt one got it at most once.
    assert sent <= set(counts)
    assert set(counts) - sent <= {d.email for d in in_doubt}
    assert len(inbox.received) in (len(sent), len(sent) + len(in_doubt))


def _clock() -> FixedClock:
    return FixedClock(datetime.now(UTC).replace(microsecond=0))
