"""SMS consent: recognising an opt-out reply whatever an AI provider says.

Carrier rules (and the Spam Act in Australia) make an opt-out binding: a
"STOP" must never be missed.  The SMS use case therefore checks every inbound
message with :func:`is_opt_out` itself and treats a match as an opt-out even
when the configured provider classified it otherwise (or was unavailable).
"""

from __future__ import annotations

import re

#: Carrier opt-out keywords (a whole line of the message) and free-text opt-outs (anywhere).
_OPT_OUT_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "end", "quit", "revoke", "opt out", "optout", "cancel all"}
)
_OPT_OUT_PHRASES = re.compile(
    r"\b(stop (texting|messaging|sending)|don'?t (text|message|sms) me|do not (text|message|sms)"
    r"|unsubscribe|opt me out|remove me|cancel (my )?subscription)\b"
)
#: Invisible characters a phone keyboard or a copy-paste can put inside a word.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
#: A word spelt out letter by letter: "S T O P", "s.t.o.p", "S-T-O-P".
_SPELT = re.compile(r"^(?:[a-z][\s.\-_*]+)+[a-z]$")


def _normalised(text: str) -> str:
    return " ".join(text.translate(_INVISIBLE).lower().replace("’", "'").split())


def _keyword_line(line: str) -> bool:
    plain = _normalised(line).strip(" .!?,;:-*")
    if _SPELT.match(plain):
        plain = re.sub(r"[\s.\-_*]", "", plain)
    return plain in _OPT_OUT_WORDS


def is_opt_out(text: str) -> bool:
    """Whether ``text`` is an SMS opt-out: a line that is a carrier keyword, or a clear request.

    Every line is checked on its own (``str.splitlines``: any Unicode line
    break), so "STOP" followed by a second line is still an opt-out.
    """
    if any(_keyword_line(line) for line in text.splitlines()):
        return True
    return _OPT_OUT_PHRASES.search(_normalised(text)) is not None


__all__ = ["is_opt_out"]
