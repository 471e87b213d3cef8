"""A contact's own data cannot inject markup, template code or headers into a campaign.

Hypothesis feeds hostile names (HTML, ``{{ }}`` / ``{% %}``, CR/LF, long
Unicode) through the whole path: the contact is stored by the contact service,
a campaign is sent by the campaign service and the worker's ``deliver`` step,
through the real SMTP mailer, to a real SMTP server (aiosmtpd).  The messages
the server received are parsed and must carry the names only escaped (HTML) or
as literal text, and exactly the headers we set.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import anyio
import markupsafe
from crm_domain.bootstrap import bootstrap
from crm_domain.clock import FixedClock, UlidFactory
from crm_domain.context import Context
from crm_domain.entities import AudienceFilter
from crm_domain.memory import InMemoryGateway
from crm_domain.services import CampaignDraft, CreateContact, CreateLocation
from crm_domain.services.campaign_rendering import header_safe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_messaging import smtp_factory

HOSTILE = st.sampled_from(
    [
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "{{ 7*7 }}",
        "{{ config.__class__ }}",
        "{% for x in range(9) %}X{% endfor %}",
        "\r\nBcc: victim@example.org\r\n",
        "\nSubject: pwned",
        "&amp; &lt;",
        "Zoë 李 🙂",
        "\u2028\u2029\x85",
    ]
)
NAME = (
    st.lists(st.one_of(HOSTILE, st.text(min_size=1, max_size=30)), min_size=1, max_size=4)
    .map("".join)
    .map(lambda s: s.replace("\x00", "")[:100])
    .filter(lambda s: bool(s.strip()))
)
EXPECTED_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
}


def _ws(value: str) -> str:
    return " ".join(value.split())


def _parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert plain is not None and rich is not None
    return str(plain.get_content()), str(rich.get_content())  # type: ignore[attr-defined]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first_name=NAME, last_name=NAME)
def test_hostile_names_arrive_only_escaped_with_headers_intact(
    start_smtp: Any, first_name: str, last_name: str
) -> None:
    server = start_smtp("plain")
    anyio.run(_send_and_check, server, first_name, last_name)


async def _send_and_check(server: Any, first_name: str, last_name: str) -> None:
    mailer = smtp_factory(
        {
            "CRM_SMTP_HOST": "127.0.0.1",
            "CRM_SMTP_PORT": str(server.port),
            "CRM_SMTP_SECURITY": "none",
            "CRM_MAIL_FROM": "Avatar Imaging <clinic@avatar.example>",
            "CRM_SMTP_TIMEOUT": "5",
        }
    )
    gateway = InMemoryGateway()
    clock = FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    services = bootstrap(gateway, clock=clock, ids=UlidFactory(), mailer=mailer)
    campaigns = services.campaigns
    assert campaigns is not None
    try:
        sydney = await services.access.create_location(
            Context.system("bootstrap"),
            CreateLocation(
                code="sydney",
                name="Sydney",
                timezone="Australia/Sydney",
                address="1 George St, Sydney NSW 2000",
            ),
        )
        ctx = Context.system(sydney.id)
        await services.access.seed_permissions(ctx)
        await services.contacts.create(
            ctx,
            CreateContact(
                first_name=first_name,
                last_name=last_name,
                email="patient@example.org",
                email_opt_in=True,
            ),
        )
        draft = CampaignDraft(
            name="Spring",
            subject="Hello {{ first_name }}",
            body_html="<p>Dear {{ first_name }} {{ last_name }},</p><p>Book now.</p>",
            body_text="Dear {{ first_name }} {{ last_name }},\nBook now.",
            audience=AudienceFilter(),
        )
        created = await campaigns.create(ctx, draft)
        await campaigns.send(ctx, created.id)
        assert await campaigns.deliver(ctx, created.id) == 1
    finally:
        await mailer.aclose()
        await gateway.close()

    [received] = server.handler.messages
    server.handler.messages.clear()
    assert received["rcpt_tos"] == ["patient@example.org"]
    message = message_from_bytes(received["content"], policy=policy.default)
    assert isinstance(message, EmailMessage)
    names = [key.lower() for key in message]
    assert set(names) <= EXPECTED_HEADERS, names
    assert len(names) == len(set(names))  # no header given twice
    assert message["To"] == "patient@example.org"
    assert "bcc" not in names
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(r"<http[^\s<>]+>", str(message["List-Unsubscribe"]))
    subject = str(message["Subject"])
    assert "\r" not in subject and "\n" not in subject
    assert _ws(subject) == _ws(header_safe(f"Hello {first_name}"))
    text, html = _parts(message)
    # Plain text: the name literally (template code in it was not run).
    assert _ws(f"Dear {first_name} {last_name},") in _ws(text)
    # HTML: the name escaped, so it adds no element or attribute.
    escaped = f"Dear {markupsafe.escape(first_name)} {markupsafe.escape(last_name)},"
    assert _ws(escaped) in _ws(html)
    # The one image is the open pixel the CRM adds (a signed link of its own).
    pixels = re.findall(
        r'<img src="(http[^"<>]+)" width="1" height="1" alt="" style="border:0">', html
    )
    assert len(pixels) == 1 and "/campaigns/open/" in pixels[0]
    assert "<script" not in html and html.count("<img") == 1
    assert "1 George St, Sydney NSW 2000" in text and "1 George St, Sydney NSW 2000" in html
