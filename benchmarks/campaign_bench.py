"""Campaign sending, messages/s: the worker's ``deliver`` against a bare aiosmtplib loop.

Both send the same rendered messages to the same local SMTP server (aiosmtpd,
in a thread of this process) in the same run.  Ours goes through the SMTP
mailer of ``crm-messaging`` and records every delivery on a durable SQLite
file (``sending`` before, ``sent`` + touchpoint + count after); the baseline
only sends, over one connection.

    uv run --all-packages python benchmarks/campaign_bench.py --recipients 10000
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.controller import Controller
from crm_domain.bootstrap import bootstrap
from crm_domain.context import Context
from crm_domain.entities import Contact
from crm_domain.plugins import load_gateway
from crm_domain.ports.gateway import SupportsMigrations
from crm_domain.services import CampaignDraft, CreateLocation
from crm_domain.services.campaign_rendering import render_email
from crm_messaging import smtp_factory


class Sink:
    """Counts what the server accepted."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        self.count += 1
        return "250 OK"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(recipients: int) -> None:
    """Seed, then time the baseline and ours."""
    sink = Sink()
    port = _port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    mailer = smtp_factory(
        {
            "CRM_SMTP_HOST": "127.0.0.1",
            "CRM_SMTP_PORT": str(port),
            "CRM_SMTP_SECURITY": "none",
            "CRM_MAIL_FROM": "Avatar Imaging <news@avatar-imaging.example>",
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        gateway = load_gateway(f"sqlite+aiosqlite:///{Path(tmp) / 'crm.db'}")
        assert isinstance(gateway, SupportsMigrations)
        await gateway.migrate()
        services = bootstrap(gateway, mailer=mailer)
        location = await services.access.create_location(
            Context.system("bootstrap"),
            CreateLocation(
                code="sydney", name="Sydney", timezone="Australia/Sydney", address="1 George St"
            ),
        )
        ctx = Context.system(location.id)
        await services.access.seed_permissions(ctx)
        now = datetime.now(UTC)
        contacts = [
            Contact(
                id=services.ids.new_id(),
                tenant_id=location.id,
                first_name=f"Pat{n}",
                email=f"pat{n}@example.org",
                email_opt_in=True,
                created_at=now,
                updated_at=now,
            )
            for n in range(recipients)
        ]
        async with gateway.unit_of_work(location.id) as uow:
            await uow.contacts.add_many(contacts)
            await uow.commit()
        campaigns = services.campaigns
        assert campaigns is not None
        campaign = await campaigns.create(
            ctx,
            CampaignDraft(
                name="Bench",
                subject="Hello {{ first_name }}",
                body_html="<p>Dear {{ first_name }}, your annual check-up is due.</p>",
            ),
        )
        await campaigns.send(ctx, campaign.id)

        # Baseline: the same rendered messages, one aiosmtplib connection, nothing recorded.
        messages = [
            render_email(
                campaign,
                c,
                location,
                to=c.email or "",
                unsubscribe_url=campaigns.links.url(location.id, c.id),
                from_address="news@avatar-imaging.example",
            )
            for c in contacts
        ]
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        started = time.perf_counter()
        for m in messages:
            email = EmailMessage()
            email["From"] = "news@avatar-imaging.example"
            email["To"] = m.to
            email["Subject"] = m.subject
            for name, value in m.headers.items():
                email[name] = value
            email.set_content(m.text)
            email.add_alternative(m.html, subtype="html")
            await client.send_message(email)
        bare = recipients / (time.perf_counter() - started)
        await client.quit()

        started = time.perf_counter()
        accepted = await campaigns.deliver(ctx, campaign.id)
        ours = accepted / (time.perf_counter() - started)
        await mailer.aclose()
        await gateway.close()
    controller.stop()
    assert accepted == recipients and sink.count == 2 * recipients
    print(f"recipients {recipients}: bare aiosmtplib {bare:.0f} msg/s, ours {ours:.0f} msg/s")
    print(f"ratio {ours / bare:.3f}x")


def main() -> None:
    """Parse options and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=1000)
    asyncio.run(run(parser.parse_args().recipients))


if __name__ == "__main__":
    main()
