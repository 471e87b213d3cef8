"""Turning a campaign and one contact into the email that contact receives.

Rendering lives in the domain (Jinja2 and nh3 are declared dependencies of
``crm-domain``): they are pure libraries with no I/O, and what a contact's data
may do to a message is a domain rule, tested without any adapter.

The rules:

* the campaign's HTML is sanitised with nh3 when it is saved, so staff cannot
  store a script either;
* templates run in Jinja2's :class:`~jinja2.sandbox.SandboxedEnvironment`, and
  a contact's fields are *values*, never template source: ``{{ 7*7 }}`` in a
  name is printed as written; the HTML part autoescapes them;
* the subject is a header: control characters (CR, LF, …) become spaces, so
  no merge field can add a header;
* every message carries the clinic's postal address, an unsubscribe link and
  ``List-Unsubscribe`` / ``List-Unsubscribe-Post`` (RFC 8058 one-click);
* with :class:`Tracking`, each literal ``http(s)`` link of the campaign becomes
  a signed click link naming only its position in the campaign (the redirect
  goes back to the URL stored there, never to one the link carries), and a
  1×1 open pixel is appended.  Links built from merge fields are not tracked.
"""

from __future__ import annotations

import html as html_lib
import itertools
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import attrs
import jinja2
import nh3
from jinja2.sandbox import SandboxedEnvironment

from crm_domain.entities import Contact, EmailCampaign, Location
from crm_domain.errors import ValidationError
from crm_domain.ports.messaging import OutgoingEmail

#: The merge fields a campaign may use; anything else renders empty.
MERGE_FIELDS = ("first_name", "last_name", "clinic_name")

_HTML_ENV = SandboxedEnvironment(autoescape=True, undefined=jinja2.Undefined)
_TEXT_ENV = SandboxedEnvironment(autoescape=False, undefined=jinja2.Undefined)
_TAG = re.compile(r"<[^>]*>")
#: A literal web link in sanitised HTML (nh3 writes attributes with double quotes).
_HREF = re.compile(r'(<a\b[^>]*?\bhref=")(https?://[^"{}]*)(")', re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n{3,}")


def sanitise_html(body_html: str) -> str:
    """The campaign HTML with scripts, event handlers and unsafe URLs removed (nh3)."""
    return nh3.clean(body_html)


def text_from_html(body_html: str) -> str:
    """A plain-text part derived from the HTML when staff give none."""
    text = _TAG.sub("", re.sub(r"(?i)<br\s*/?>|</p>", "\n", body_html))
    return _BLANK_LINES.sub("\n\n", html_lib.unescape(text)).strip()


def check_template(field: str, source: str) -> None:
    """``ValidationError`` naming ``field`` when ``source`` is not a valid template."""
    try:
        _HTML_ENV.parse(source)
    except jinja2.TemplateSyntaxError as error:
        detail = f"template error on line {error.lineno}: {error.message}"
        raise ValidationError(field, detail) from None


def header_safe(value: str, limit: int = 300) -> str:
    """``value`` as one header line: control and separator characters become spaces."""
    cleaned = "".join(
        " " if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch for ch in value
    )
    return " ".join(cleaned.split())[:limit]


@attrs.frozen(slots=True, kw_only=True)
class Tracking:
    """Where one delivery's open pixel and click links point."""

    open_url: str
    #: The signed click link of the campaign's link number ``index`` (0-based).
    click_url: Callable[[int], str]


def tracked_links(body_html: str) -> list[str]:
    """The campaign's trackable links in order: the targets click links may lead to."""
    return [html_lib.unescape(match.group(2)) for match in _HREF.finditer(body_html)]


def _with_tracking(body_html: str, tracking: Tracking) -> str:
    counter = itertools.count()

    def swap(match: re.Match[str]) -> str:
        url = html_lib.escape(tracking.click_url(next(counter)), quote=True)
        return f"{match.group(1)}{url}{match.group(3)}"

    # Rewritten in the template source, before rendering: the numbering is then the
    # campaign's own, the same for every recipient and at click time.
    return _HREF.sub(swap, body_html)


def _fields(contact: Contact, location: Location) -> dict[str, Any]:
    return {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "clinic_name": location.name,
    }


def render_email(
    campaign: EmailCampaign,
    contact: Contact,
    location: Location,
    *,
    to: str,
    unsubscribe_url: str,
    from_address: str | None = None,
    tracking: Tracking | None = None,
) -> OutgoingEmail:
    """The message ``contact`` receives from ``campaign`` (see the module docstring)."""
    fields = _fields(contact, location)
    source = (
        campaign.body_html if tracking is None else _with_tracking(campaign.body_html, tracking)
    )
    try:
        body_html = _HTML_ENV.from_string(source).render(fields)
        body_text = _TEXT_ENV.from_string(campaign.body_text).render(fields)
        subject = _TEXT_ENV.from_string(campaign.subject).render(fields)
    except jinja2.TemplateError as error:
        # Templates are checked on save; a sandbox refusal at render time is a campaign error.
        raise ValidationError("body_html", f"template error: {error}") from None
    address = location.address or location.name
    footer_html = (
        f'<hr><p style="font-size:12px;color:#666">{html_lib.escape(location.name)}<br>'
        f"{html_lib.escape(address)}<br>"
        f'<a href="{html_lib.escape(unsubscribe_url, quote=True)}">Unsubscribe</a></p>'
    )
    footer_text = f"\n\n--\n{location.name}\n{address}\nUnsubscribe: {unsubscribe_url}\n"
    if tracking is not None:
        pixel = html_lib.escape(tracking.open_url, quote=True)
        footer_html += f'<img src="{pixel}" width="1" height="1" alt="" style="border:0">'
    return OutgoingEmail(
        to=to,
        subject=header_safe(subject),
        html=body_html + footer_html,
        text=body_text + footer_text,
        from_address=from_address,
        headers={
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


__all__ = [
    "MERGE_FIELDS",
    "Tracking",
    "check_template",
    "header_safe",
    "render_email",
    "sanitise_html",
    "text_from_html",
    "tracked_links",
]
