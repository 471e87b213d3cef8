"""SMS consent: recognising an opt-out reply whatever an AI provider says.

Carrier rules (and the Spam Act in Australia) make an opt-out binding: a
"STOP" must never be missed.  The SMS use case therefore checks every inbound
message with :func:`is_opt_out` itself and treats a match as an opt-out even
when the configured provider classified it otherwise (or was unavailable).
"""

from __future__ import annotations

import re

#: Carrier opt-out keywords (a whole message) and free-text opt-outs (anywhere).
_OPT_OUT_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "end", "quit", "revoke", "opt out", "optout", "cancel all"}
)
_OPT_OUT_PHRASES = re.compile(
    r"\b(stop (texting|messaging|sending)|don'?t (text|message|sms) me|do not (text|message|sms)"
    r"|unsubscribe|opt me out|remove me)\b"
)


def _normalised(text: str) -> str:
    return " ".join(text.lower().replace("’", "'").split())


def is_opt_out(text: str) -> bool:
    """Whether ``text`` is an SMS opt-out (a carrier keyword alone, or a clear request)."""
    plain = _normalised(text).strip(" .!")
    return plain in _OPT_OUT_WORDS or _OPT_OUT_PHRASES.search(plain) is not None


__all__ = ["is_opt_out"]
