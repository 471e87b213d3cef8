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

* **Suppression list.** A number on the location's suppression list
  (:class:`~crm_domain.entities.Suppression`, channel ``sms``) is never
  texted either — a reminder included — whatever the contact's consent says:
  the list outlives a deleted, merged or re-created contact.  Again only the
  opt-out's own confirmation is sent regardless.  The caller looks the number
  up (:meth:`~crm_domain.ports.gateway.SuppressionRepository.find_address`)
  and hands the result in, so this module stays pure.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from crm_domain.entities import Contact, SmsKind, Suppression

#: Marketing SMS may be sent from this local time (inclusive) …
MARKETING_WINDOW_START = time(8, 0)
#: … until this local time (exclusive).
MARKETING_WINDOW_END = time(21, 0)


def within_marketing_window(now: datetime, timezone: str) -> bool:
    """Whether ``now`` falls inside 08:00–21:00 in ``timezone`` (an IANA name)."""
    local = now.astimezone(ZoneInfo(timezone)).time()
    return MARKETING_WINDOW_START <= local < MARKETING_WINDOW_END


#: Why a message to a suppressed number or address is refused (the 409's detail starts so).
ON_SUPPRESSION_LIST = "on the location's suppression list"


def suppressed_refusal(suppression: Suppression) -> str:
    """The refusal for an address on the suppression list (PHI-free: no address in it)."""
    return (
        f"the {suppression.channel.value} address is {ON_SUPPRESSION_LIST} "
        f"(suppression {suppression.id}, {suppression.reason.value})"
    )


def sms_refusal(
    contact: Contact,
    kind: SmsKind,
    now: datetime,
    timezone: str,
    *,
    suppression: Suppression | None = None,
) -> str | None:
    """Why ``contact`` may not be sent an SMS of ``kind`` at ``now``, or ``None`` when it may.

    ``suppression`` is the location's suppression of the contact's number, if any.
    """
    if contact.phone is None:
        return f"contact {contact.id} has no phone number"
    if not contact.sms_opt_in:
        return f"contact {contact.id} has not agreed to SMS or has opted out (sms_opt_in is false)"
    if suppression is not None:
        return f"contact {contact.id}: {suppressed_refusal(suppression)}"
    if kind is SmsKind.MARKETING and not within_marketing_window(now, timezone):
        return (
            "marketing SMS are sent only from 08:00 to 21:00 in the location's timezone "
            f"({timezone}); send it later or as a transactional message if it is one"
        )
    return None


__all__ = [
    "MARKETING_WINDOW_END",
    "MARKETING_WINDOW_START",
    "ON_SUPPRESSION_LIST",
    "sms_refusal",
    "suppressed_refusal",
    "within_marketing_window",
]
