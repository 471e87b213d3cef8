"""Who may be texted, and when: the rules every outbound SMS passes before it is queued.

* **Consent.** An SMS goes only to a contact with a phone number who agreed to
  SMS (``sms_opt_in``).  A STOP clears that at once, so nothing more is sent —
  whatever the kind.  The one exception is the confirmation of the opt-out
  itself, which the SMS service sends without asking this policy.
  A transactional message (a reminder) does not bypass consent: the store
  cannot tell a contact who was never asked from one who withdrew, and texting
  the latter is what the Spam Act forbids.
* **Sending window.** Marketing SMS go out only from 08:00 to 21:00 in the
  location's own timezone; transactional ones at any hour.

A per-location suppression list (numbers never to text, kept even when the
contact is deleted) is not here yet: it needs its own table (see CHANGELOG).
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from crm_domain.entities import Contact, SmsKind

#: Marketing SMS may be sent from this local time (inclusive) …
MARKETING_WINDOW_START = time(8, 0)
#: … until this local time (exclusive).
MARKETING_WINDOW_END = time(21, 0)


def within_marketing_window(now: datetime, timezone: str) -> bool:
    """Whether ``now`` falls inside 08:00–21:00 in ``timezone`` (an IANA name)."""
    local = now.astimezone(ZoneInfo(timezone)).time()
    return MARKETING_WINDOW_START <= local < MARKETING_WINDOW_END


def sms_refusal(contact: Contact, kind: SmsKind, now: datetime, timezone: str) -> str | None:
    """Why ``contact`` may not be sent an SMS of ``kind`` at ``now``, or ``None`` when it may."""
    if contact.phone is None:
        return f"contact {contact.id} has no phone number"
    if not contact.sms_opt_in:
        return f"contact {contact.id} has not agreed to SMS or has opted out (sms_opt_in is false)"
    if kind is SmsKind.MARKETING and not within_marketing_window(now, timezone):
        return (
            "marketing SMS are sent only from 08:00 to 21:00 in the location's timezone "
            f"({timezone}); send it later or as a transactional message if it is one"
        )
    return None


__all__ = [
    "MARKETING_WINDOW_END",
    "MARKETING_WINDOW_START",
    "sms_refusal",
    "within_marketing_window",
]
