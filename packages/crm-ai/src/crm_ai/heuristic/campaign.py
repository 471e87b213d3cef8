"""Campaign drafts from Jinja2 templates (HTML autoescaped, text plain)."""

from __future__ import annotations

import re

import jinja2
from crm_domain.ports.ai import CampaignBrief
from jinja2.sandbox import SandboxedEnvironment

# Each kind of goal has a subject line and a short body; the brief's words are
# inserted as data (escaped in HTML), never as template source.
_KINDS: dict[str, dict[str, str]] = {
    "reactivation": {
        "match": r"re-?activat|win\s*back|lapsed|haven'?t\s+seen|come\s+back|dormant",
        "subject": "We'd love to see you again at {{ clinic }}",
        "lead": "It has been a while since your last visit, and we wanted to check in.",
        "body": "If you need {{ service or 'imaging' }} again, our team would be glad to help, "
        "and booking online takes a minute.",
        "cta": "Book a time that suits you",
    },
    "new_service": {
        "match": r"new\s+(service|machine|scanner|equipment)|now\s+offer|launch|introduc",
        "subject": "{% if service %}{{ service }} now available{% else %}Something new{% endif %}"
        " at {{ clinic }}",
        "lead": "We're pleased to let you know about something new at the clinic.",
        "body": "{% if service %}{{ service }} is now available at {{ clinic }}.{% else %}We have "
        "added new services at {{ clinic }}.{% endif %} "
        "Ask your doctor whether it is right for you.",
        "cta": "Find out more and book",
    },
    "reminder": {
        "match": r"remind|due|follow[-\s]?up|annual|check[-\s]?up|screening",
        "subject": "A friendly reminder from {{ clinic }}",
        "lead": "This is a friendly reminder that it may be time for your next appointment.",
        "body": "{% if service %}Regular {{ service }} is an important part of looking after "
        "your health. {% endif %}If your doctor has recommended a follow-up, we have "
        "appointments available.",
        "cta": "Book your appointment",
    },
    "promotion": {
        "match": r"promo|offer|discount|special|deal|sale",
        "subject": "A special offer from {{ clinic }}",
        "lead": "For a limited time we have a special offer we think you'll appreciate.",
        "body": "{% if service %}The offer applies to {{ service }}. {% endif %}"
        "Terms and availability are on our website.",
        "cta": "See the offer",
    },
    "general": {
        "match": r".",
        "subject": "News from {{ clinic }}",
        "lead": "We have an update we'd like to share with you.",
        "body": "{% if service %}It concerns {{ service }} at {{ clinic }}. {% endif %}"
        "Our team is happy to answer any questions.",
        "cta": "Get in touch",
    },
}

_HTML = """<!doctype html>
<html><body style="font-family: sans-serif; line-height: 1.5">
<p>Hi {{ '{{' }} first_name {{ '}}' }},</p>
<p>{{ lead }}</p>
<p>{{ body }}</p>
<p><a href="{{ '{{' }} booking_url {{ '}}' }}">{{ cta }}</a></p>
<p>Kind regards,<br>The team at {{ clinic }}</p>
<p style="font-size: small">You are receiving this because you agreed to hear from {{ clinic }}.
<a href="{{ '{{' }} unsubscribe_url {{ '}}' }}">Unsubscribe</a>.</p>
</body></html>
"""

_TEXT = """Hi {{ '{{' }} first_name {{ '}}' }},

{{ lead }}

{{ body }}

{{ cta }}: {{ '{{' }} booking_url {{ '}}' }}

Kind regards,
The team at {{ clinic }}

Unsubscribe: {{ '{{' }} unsubscribe_url {{ '}}' }}
"""


def _environment(autoescape: bool) -> jinja2.Environment:
    # A sandbox because subjects are templates too; autoescape only for HTML.
    return SandboxedEnvironment(
        autoescape=autoescape, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )


_HTML_ENV = _environment(autoescape=True)
_TEXT_ENV = _environment(autoescape=False)


def goal_kind(goal: str) -> str:
    """Which template family fits the goal."""
    low = goal.lower()
    for kind, spec in _KINDS.items():
        if re.search(spec["match"], low):
            return kind
    return "general"


def draft(brief: CampaignBrief) -> tuple[str, str, str]:
    """Subject, HTML and text.  ``{{ first_name }}`` etc. are left for the mailer to fill."""
    spec = _KINDS[goal_kind(brief.goal)]
    values: dict[str, str] = {
        "clinic": brief.clinic_name.strip(),
        "service": (brief.service_type or "").strip(),
        "lead": spec["lead"],
        "cta": spec["cta"],
    }
    # The brief's goal and audience are written for staff, so they choose the template
    # but are not copied into the email; only the clinic and service names are.
    values["body"] = _TEXT_ENV.from_string(spec["body"]).render(values)
    subject = _TEXT_ENV.from_string(spec["subject"]).render(values)
    subject = re.sub(r"\s+", " ", subject).strip()[:150]
    html = _HTML_ENV.from_string(_HTML).render(values)
    text = _TEXT_ENV.from_string(_TEXT).render(values)
    return subject, html, re.sub(r"\n{3,}", "\n\n", text)


__all__ = ["draft", "goal_kind"]
