"""Reply codes: a one-word answer means what the clinic's own message said it means.

Clinics write "Reply Y to confirm or C to cancel" — and others "Reply C to
confirm".  A bare "C" is therefore ambiguous on its own, and guessing wrong
cancels a patient's scan.  The SMS use case reads the codes the last message
the clinic sent that contact offered (:func:`offered_codes`) and, when the
whole reply is one of them (:func:`coded_intent`), takes that meaning without
asking any AI.  Opt-out keywords stay binding before this rule
(:mod:`crm_domain.policies.consent`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from crm_domain.entities import SmsIntent

#: The verbs a code can stand for, as a clinic writes them.
_VERBS: Mapping[str, SmsIntent] = {
    "confirm": SmsIntent.CONFIRM,
    "cancel": SmsIntent.CANCEL,
    "reschedule": SmsIntent.RESCHEDULE,
    "rebook": SmsIntent.RESCHEDULE,
    "change": SmsIntent.RESCHEDULE,
}
#: ``Y to confirm``, ``"C" to cancel``, ``YES to confirm``: the code is a capitalised
#: token (or a digit) right before "to <verb>" — case-sensitive, so a sentence like
#: "we'd love to confirm" offers no code "love".
_OFFER = re.compile(
    r"(?<![\w'\"])['\"“‘]?([A-Z]{1,10}|[0-9])['\"”’]?\s+(?:to|for)\s+(" + "|".join(_VERBS) + r")\b",
    re.IGNORECASE,
)
#: What may surround a code in a reply: spaces, punctuation, quotes.
_TRIM = " \t\r\n.!,;:'\"“”‘’()"


def offered_codes(prompt: str) -> dict[str, SmsIntent]:
    """The reply codes a clinic's message offers, by case-folded code.

    A code offered for two meanings ("C to confirm … C to cancel") is dropped:
    such a message defines nothing.
    """
    codes: dict[str, SmsIntent] = {}
    clashing: set[str] = set()
    for match in _OFFER.finditer(prompt):
        token, verb = match.group(1), match.group(2).lower()
        if not (token.isupper() or token.isdigit()):
            continue  # the case-insensitive flag is for the verb only
        code = token.casefold()
        intent = _VERBS[verb]
        if codes.get(code, intent) is not intent:
            clashing.add(code)
        codes[code] = intent
    for code in clashing:
        del codes[code]
    return codes


def coded_intent(reply: str, prompt: str | None) -> SmsIntent | None:
    """The meaning of ``reply`` when the whole of it is a code ``prompt`` offered."""
    if not prompt:
        return None
    code = reply.strip(_TRIM).casefold()
    if not code or len(code) > 10:
        return None
    return offered_codes(prompt).get(code)


__all__ = ["coded_intent", "offered_codes"]
