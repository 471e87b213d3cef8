"""Rule-based understanding of a patient's SMS reply.

The order of the checks is the order of the stakes: an opt-out is checked first
and wins over everything (missing one breaks carrier rules and the law), then the
booking actions (reschedule before cancel, because "can't make it, can we do
Friday?" wants a new time), then confirmation, then questions.

How a bare ``CANCEL`` is read
-----------------------------
US carriers (CTIA guidelines) and most SMS platforms list ``CANCEL`` as an opt-out
keyword.  In this CRM, though, reminders ask patients to reply to confirm or
cancel their appointment, so after a reminder a one-word ``CANCEL`` almost always
means "cancel my booking".  The rule is therefore:

* bare ``CANCEL`` **with** an upcoming booking or a recent reminder → ``cancel``
  (the appointment), with lower confidence (0.8) so a person can review it;
* bare ``CANCEL`` **without** any booking context → ``opt_out`` (there is nothing
  else to cancel, and a missed opt-out is the worse error).

Reminder templates sent to US numbers should therefore ask for ``C``/``N`` or a
reschedule link rather than the word CANCEL, since the carrier may already have
opted the number out on its side.

How a carrier keyword is read
-----------------------------
A message, or any one line of it, that is only carrier keywords (``STOP``, ``stop
please``, ``S T O P``, ``s.t.o.p``) is an opt-out whatever the other lines say.  A
keyword inside a sentence is an opt-out too, unless *that occurrence* is plainly
another use of the word: "stop" as a verb of visiting with someone doing it ("I'll
stop by the clinic"; an imperative "Stop at once" is addressed to the clinic, so it
stays an opt-out), "bus stop", "can't stop thinking", "stop worrying", "stop, I'll
be there", "stop my appointment" (a cancellation).  Such a reply keeps its booking
meaning but at most 0.75 confidence, and its rule names the word, so a person can
review it.  The exceptions never reach across a line break.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import attrs
from crm_domain.entities import SmsIntent
from crm_domain.ports.ai import SmsContext

#: Carrier opt-out keywords (CTIA / UK / AU practice).  A message that *is* one of
#: these, give or take punctuation, emoji and politeness words, is an opt-out.
OPT_OUT_KEYWORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "unsub", "end", "quit", "revoke", "optout", "opt out"}
)

#: Words that may accompany a keyword without changing it ("STOP please").
_FILLER = frozenset(
    {"please", "pls", "plz", "now", "thanks", "thank", "you", "thx", "me", "all", "it", "ok"}
)

_OPT_OUT_PHRASES = [
    # "don't text me", "do not contact me again", "never message me"
    r"\b(?:don'?t|do\s+not|dont|never)\s+(?:ever\s+)?(?:text|txt|message|msg|sms|contact|"
    r"send|email)(?:ing)?\s+(?:me|this\s+number|us)\b",
    # "stop texting me", "stop sending me these", "stop the messages"
    r"\bstop\s+(?:all\s+)?(?:texting|txting|texts|messaging|msging|messages|sending|"
    r"contacting|the\s+(?:texts|messages|sms)|these|this|sms)\b",
    r"\b(?:remove|delete)\s+(?:me|my\s+(?:number|details|phone))\b",
    r"\btake\s+(?:me|my\s+number)\s+off\b",
    r"\bno\s+more\s+(?:texts|txts|messages|msgs|sms|reminders|notifications|alerts)\b",
    r"\bunsubscribe\b",
    r"\bunsub\b",
    r"\bopt[\s-]?out\b",
    r"\bdon'?t\s+want\s+(?:these|any|your|to\s+receive)?\s*(?:more\s+)?"
    r"(?:texts|messages|sms|any|reminders|notifications|alerts)\b",
    r"\b(?:do\s+not|don'?t)\s+want\s+to\s+(?:receive|get)\b",
    r"\bleave\s+me\s+alone\b",
    r"\bstopall\b",
    r"\bopt\s+me\s+out\b",
    r"\bwant\s+out\s+of\b",
    r"\boff\s+(?:your|the|this|ur)\s+(?:list|system|database|texts|sms)\b",
    r"\b(?:no\s+longer|don'?t|do\s+not|never)\s+(?:wish|want)\s+to\s+(?:receive|get|be\s+(?:contacted|texted))\b",
    r"\brevoke\b",
    # "cancel my subscription (to these texts)", "cancel these text messages", "cancel the
    # SMS reminders": cancelling the messages, not a booking.
    r"\bcancel\w* (?:(?:my|the|these|this|those|all|your|any|of|to|text|txt|sms) ){0,4}"
    r"(?:subscriptions?|texts|txts|messages|msgs|sms|reminders|notifications|alerts)\b",
]
_OPT_OUT_RE = re.compile("|".join(_OPT_OUT_PHRASES))

#: A carrier keyword anywhere in the message is an opt-out ("This is harassment, stop",
#: "stop!! wrong person", "Quit texting me") unless it is plainly another use of the
#: word.  Recall matters more than precision here: a wrong opt-out costs a phone call,
#: a missed one breaks the law.
_KEYWORD_ANYWHERE_RE = re.compile(r"\b(?:stop|stopall|unsubscribe|unsub|quit|optout)\b")
#: What follows a keyword when it is about the messages after all ("stop my appointment
#: reminders", "quit the texts"): such an occurrence is never excused.
_ABOUT_MESSAGES = (
    r"(?! (?:\w+ )?(?:texts?|txts?|messages?|msgs?|sms|reminders?|notifications?|alerts?|"
    r"emails?|calls?|spam)\b)"
)
#: Someone doing the visiting: "stop by/in/at" is a visit only with a first-person
#: subject or a modal with the subject dropped ("Will stop by reception", "might stop
#: in"); "Stop at once", "Stop in future", "you will stop at once" stay opt-outs.
_VISITOR = (
    r"\b(?<!you )(?<!u )(?:(?:i|we)(?:'ll|'d|'m going to| will| would| can| could| may|"
    r" might| shall| need to| have to| want to| plan to| wanna| gonna)?|ill|i'?m gonna|"
    r"will|might|may|could|can|gonna)"
)
#: Occurrences of a keyword that are plainly another use of the word.  Matched on
#: normalised text, where a space is the only blank inside a line, so none of them can
#: reach across a line break ("STOP\nAt reception?" stays an opt-out).
_KEYWORD_OTHER_USE_RE = re.compile(
    _VISITOR + r"(?: (?:just|quickly|probably|also|first|still|briefly))? stop "
    r"(?:by|in|over|off|at|past|for)\b"
    r"|\b(?:bus|pit|non|full|last|next|first)[ -]stop\b"
    r"|\b(?:can'?t|cannot|couldn'?t) stop\b|\b(?:i|we) won'?t stop\b"
    # "stop worrying", "stop bleeding": a gerund that is not about the messages.
    r"|\bstop (?:bleeding|hurting|working|eating|taking|drinking|smoking|worrying|fussing|"
    r"panicking|fretting|apologi[sz]ing|joking|laughing)\b"
    # "stop, I'll be there": "stop" then, in the same clause, a promise to attend.
    r"|\bstop(?:,| -| \u2013| \u2014) (?=(?:i'?ll|ill|i will|we'?ll|we will) (?:still )?"
    r"(?:be there|be in|come|attend|make it)\b|see (?:you|ya|u)\b(?! never)|"
    r"(?:i'?m|we'?re) (?:still )?coming\b)"
    # "stop my appointment": a cancellation (read by _CANCEL_RE).
    r"|\bstop (?:my|the|this|our|his|her|their)(?: \w+)? (?:appointment|appt|booking|scan)s?\b"
    + _ABOUT_MESSAGES
    + r"|\bquit (?:my|smoking|drinking|work|the)\b"
    + _ABOUT_MESSAGES
)

#: Letters spelt out one by one ("S T O P", "s.t.o.p", "U-N-S-U-B"): three or more
#: single letters joined by spaces or dots, dashes, stars, read as one word by the
#: opt-out checks (only by them: "c u" or "y" keep their usual meaning).
_SPELT_RE = re.compile(r"(?<![a-z0-9'])[a-z](?:[ .\-_*\u00b7\u2022]+[a-z](?![a-z0-9'])){2,}")

# Reminder boilerplate that patients quote back ("Reply STOP to opt out", "Reply Y to
# confirm or STOP to opt out").  The instruction must go on ("to", "or"), so that a
# patient's own "no more sms stop" is not read as boilerplate; it never spans lines.
_BOILERPLATE_RE = re.compile(
    r"(?:reply|text|txt|send|sms) (?:stop|y|yes|c|n|no|cancel) (?:to|or)\b[^.\n]*",
    re.IGNORECASE,
)
_QUOTE_HEADER_RE = re.compile(r"\bon\s+[^\n]{0,80}\bwrote:", re.IGNORECASE)

_NEUTRAL_RE = re.compile(
    r"\bno\s+(?:worries|problem|probs|dramas|stress|rush)\b|\bnot\s+a\s+problem\b"
)

_RESCHEDULE_RE = re.compile(
    r"\bre-?sched\w*|\bre-?book\w*|\brearrang\w*|\bpostpone\w*|"
    r"\bpush\s+(?:it|me|this|my\s+\w+)?\s*(?:back|forward|out|to)\b|"
    r"\bbring\s+(?:it|this|me)?\s*forward\b|"
    r"\bmove\s+(?:it|me|my|the|this|to|our)\b|"
    r"\bchange\s+(?:my|the|this|it|to|appt|appointment|booking|time|day|date)\b|"
    r"\bswap\b|\bdifferent\s+(?:time|day|date)\b|\banother\s+(?:time|day|date)\b|"
    r"\bnew\s+(?:time|day|date)\b|\binstead\b|\bbook\s+another\b|"
    r"\banything\s+(?:later|earlier|else|on|next|in)\b|\b(?:any|an)\s+(?:earlier|later)\b|"
    r"\bsomething\s+(?:next|later|earlier|else|after|before|on|in)\b|"
    r"\bwhat\s+about\b|\bhow\s+about\b|\b(?:is|are)\s+\w+(?:\s+\w+)?\s+(?:available|free)\b|"
    r"\blater\s+in\s+the\b|\b(?:suit|suits|work|works)\s+(?:me\s+)?better\b|"
    r"\bwould\s+(?:\w+\s+){1,2}(?:work|suit|be\s+(?:ok|okay|possible|free))\b|"
    r"\bwhat\s+else\s+(?:do\s+you\s+have|is\s+(?:there|available|free))\b|"
    r"\bdo\s+you\s+have\s+(?:a|an|any)\s+(?:mon|tue|wed|thu|fri|sat|sun|morning|afternoon|"
    r"evening|earlier|later)|\b(?:any|a|another)\s+(?:appointments?|appts?|slots?|times?|"
    r"spots?|openings?|availability)\b|\b(?:later|earlier|different|another)\s+(?:time|slot|"
    r"appointment|appt|day)\b|\b(?:later|earlier)\s+(?:this|next)\s+week\b|\b(?:could|can|shall)\s+(?:we|i|you)\s+(?:do|make\s+it|book|go\s+for|try)\s+"
    r"(?:\w+\s+)?(?:mon|tue|wed|thu|fri|sat|sun|tomorrow|tmrw|next|the\s+\d|\d)|\bcan\s+(?:i|we)\s+(?:come|do|make\s+it)\s+"
    r"(?:at|on|in|tmrw|tomorrow|next|later|earlier|the)\b"
)

_CANCEL_RE = re.compile(
    r"\bcan+c?e?l+\w*|\bcanel\w*|\bcancle\w*|\bcancell\w*|"
    r"\bcan'?t\s+(?:make|come|attend|go|do\s+it|be\s+there)\b|"
    r"\bcannot\s+(?:make|come|attend|go|be\s+there)\b|"
    r"\bwon'?t\s+(?:be\s+(?:there|coming|able|attending)|make|come|attend)\b|"
    r"\bwont\s+(?:be|make|come)\b|"
    r"\bnot\s+(?:coming|attending|going\s+to\s+(?:make|come|attend)|able\s+to|gonna)\b|"
    r"\bunable\s+to\b|\b(?:don'?t|do\s+not|no\s+longer)\s+need\b|\bdecided\s+not\b|"
    r"\bdone\s+elsewhere\b|\bgive\s+(?:\w+\s+){0,2}a\s+miss\b|\bnot\s+going\s+ahead\b|"
    r"\bcan'?t\s+do\b|\bchanged\s+my\s+mind\b|\b(?:delete|remove|drop|stop)\s+(?:my|the|this|our)\s+"
    r"(?:\w+\s+)?(?:appointment|appt|booking|scan)\b"
)
_NO_RE = re.compile(r"^(?:n|no|nope|nah|no\s+thanks?|no\s+sorry)\b")

_CONFIRM_START_RE = re.compile(
    r"^(?:y|yes+|yse|yeah|yea|yep|yup|ya|yas|c|confirm\w*|confrim\w*|sure|definitely|"
    r"definately|absolutely|of\s+course|certainly|will\s+do|sounds\s+good|perfect|righto|"
    r"coming|attending|booked\s+in|all\s+good|still\s+on)\b"
)
_CONFIRM_ANY_RE = re.compile(
    r"\b(?:i'?ll|ill|i\s+will|we'?ll|we\s+will|will)\s+(?:be\s+there|attend|come)\b|"
    r"\bsee\s+(?:you|ya|u)\b|\bi\s+can\s+(?:make\s+it|attend|come)\b|\bcan\s+attend\b|"
    r"\blooking\s+forward\b|\b(?:can'?t|cannot)\s+wait\b|\bi\s+confirm\b|\bconfirm(?:ed|ing)\b|\bstill\s+on\b"
)
_WEAK_CONFIRM_RE = re.compile(
    r"^(?:ok|okay|okie|k|kk|ok\s+thanks?|okay\s+thanks?|sure|fine|that'?s\s+fine|that\s+works|"
    r"works\s+for\s+me|all\s+set)\b"
)
_CONFIRM_EMOJI = ("👍", "✅", "👌", "🆗", "✔")

_QUESTION_START_RE = re.compile(
    r"^(?:what|whats|what's|where|when|who|whos|who's|why|how|which|is|are|do|does|can|could|"
    r"will|should|am|any)\b"
)
_GREETING_RE = re.compile(r"^(?:hi|hello|hey|hiya|g'?day)\W*$")


@attrs.frozen(slots=True)
class IntentGuess:
    """The heuristic's answer and the rule that produced it (for explanations)."""

    intent: SmsIntent
    confidence: float
    rule: str


def normalise(text: str) -> str:
    """Lower-case, NFKC, straight apostrophes, single spaces; keeps emoji and line breaks.

    Every Unicode line break (``\\r``, ``\\u2028``, ...) becomes ``\\n`` and every other
    blank a single space, so the rules can tell a line break from a space.  Invisible
    format characters (zero-width spaces, soft hyphens) are dropped so that they cannot
    split a keyword ("S\\u200bTOP").
    """
    text = unicodedata.normalize("NFKC", text).replace("’", "'").replace("‘", "'")
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = text.replace("\\n", "\n")
    lines = [re.sub(r"\s+", " ", line).strip() for line in text.lower().splitlines()]
    return "\n".join(line for line in lines if line)


def strip_quoted(text: str) -> str:
    """Drop the part of a reply that quotes the clinic's own message.

    Patients' phones quote the reminder (``> Reply STOP to opt out``), and that
    boilerplate must not be read as the patient's words.
    """
    kept: list[str] = []
    for line in text.split("\n"):
        if line.startswith(">"):
            continue
        header = _QUOTE_HEADER_RE.search(line)
        if header:
            before = line[: header.start()].strip()
            if before:
                kept.append(before)
            break
        kept.append(line)
    return _BOILERPLATE_RE.sub(" ", "\n".join(kept)).strip()


def _words(text: str) -> list[str]:
    # Apostrophes inside a word only ("don't"), so a quoted 'STOP' is still "stop".
    return re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text.replace("-", " "))


def unspell(text: str) -> str:
    """Join letters spelt out one by one: ``"s t o p please"`` → ``"stop please"``."""
    return _SPELT_RE.sub(lambda m: re.sub(r"[^a-z]", "", m[0]), text)


def keyword_line_opt_out(own: str) -> bool:
    """True when any one line of the message is carrier keywords only ("STOP\\nAt 3?")."""
    return any(keyword_opt_out(line) for line in own.split("\n"))


def keyword_used_as_one(own: str) -> bool:
    """True when some occurrence of a keyword is not plainly another use of the word.

    Each occurrence is judged on its own: "STOP. I'll stop by later" is an opt-out.
    """
    return _KEYWORD_ANYWHERE_RE.search(_KEYWORD_OTHER_USE_RE.sub(" ", own)) is not None


def keyword_opt_out(own: str) -> bool:
    """True when the message is carrier keywords only ("STOP", "stop stop", "STOP END"),
    give or take filler words, punctuation and emoji."""
    words = [w for w in _words(own) if w not in _FILLER]
    if not words:
        return False
    joined = " ".join(words).replace("opt out", "optout").replace("stop all", "stopall")
    return all(w in OPT_OUT_KEYWORDS for w in joined.split())


#: Keywords long enough that a one-letter slip still cannot be another common word.
_FUZZY_KEYWORDS = ("stop", "stopall", "unsubscribe", "unsub", "quit", "revoke", "optout")


def _within_one_edit(word: str, target: str) -> bool:
    """Damerau-Levenshtein distance ≤ 1 (one insert, delete, substitute or swap)."""
    if word == target:
        return True
    if abs(len(word) - len(target)) > 1:
        return False
    if len(word) == len(target):
        diffs = [i for i, (a, b) in enumerate(zip(word, target, strict=True)) if a != b]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and word[diffs[0]] == target[diffs[1]]
            and word[diffs[1]] == target[diffs[0]]
        )
    short, long = (word, target) if len(word) < len(target) else (target, word)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def typo_opt_out(own: str) -> bool:
    """A one-word message one slip away from a keyword ("STOPP", "stpo", "unsubscibe")."""
    words = [w for w in _words(own) if w not in _FILLER]
    if len(words) != 1 or len(words[0]) < 4:
        return False
    return any(_within_one_edit(words[0], k) for k in _FUZZY_KEYWORDS)


def is_bare_cancel(own: str) -> bool:
    """A one-word CANCEL (any case, punctuation or emoji around it)."""
    words = [w for w in _words(own) if w not in _FILLER]
    return words == ["cancel"]


def has_booking_context(context: SmsContext) -> bool:
    """Whether a reply could be about an appointment."""
    return context.has_upcoming_booking or (context.last_outbound_kind or "") in {
        "reminder",
        "confirmation",
        "booking",
    }


def classify(text: str, context: SmsContext) -> IntentGuess:
    """Classify one SMS reply.  Deterministic; never raises for any string."""
    full = normalise(text)
    own = strip_quoted(full) or full
    booking = has_booking_context(context)
    spelt = unspell(own)

    if is_bare_cancel(spelt):
        if booking:
            return IntentGuess(SmsIntent.CANCEL, 0.8, "bare CANCEL after a reminder")
        return IntentGuess(SmsIntent.OPT_OUT, 0.9, "bare CANCEL with no booking to cancel")
    if keyword_opt_out(spelt):
        return IntentGuess(SmsIntent.OPT_OUT, 0.99, "carrier opt-out keyword")
    if keyword_line_opt_out(spelt):
        return IntentGuess(SmsIntent.OPT_OUT, 0.97, "carrier opt-out keyword on a line of its own")
    if _OPT_OUT_RE.search(spelt):
        return IntentGuess(SmsIntent.OPT_OUT, 0.95, "asks to stop messages")
    if keyword_used_as_one(spelt):
        return IntentGuess(SmsIntent.OPT_OUT, 0.85, "opt-out keyword in the message")
    if typo_opt_out(spelt):
        return IntentGuess(SmsIntent.OPT_OUT, 0.8, "misspelt opt-out keyword")

    guess = _booking_intent(own, context, booking)
    other_use = _KEYWORD_ANYWHERE_RE.search(spelt)
    if other_use is None:
        return guess
    # Not an opt-out only because the keyword read as another use of the word: a
    # judgement call, so it is flagged for review.
    return IntentGuess(
        guess.intent,
        min(guess.confidence, 0.75),
        f"{guess.rule}; '{other_use[0]}' read as another use of the word",
    )


def _booking_intent(own: str, context: SmsContext, booking: bool) -> IntentGuess:
    """The reply's meaning once it is known not to be an opt-out."""
    plain = _NEUTRAL_RE.sub(" ", own).strip()
    if _RESCHEDULE_RE.search(plain):
        return IntentGuess(SmsIntent.RESCHEDULE, 0.9, "asks for another time")
    if _CONFIRM_ANY_RE.search(plain) and not _CANCEL_RE.search(plain):
        return IntentGuess(SmsIntent.CONFIRM, 0.9, "confirms attendance")
    if _CANCEL_RE.search(plain):
        if "?" in plain and proposed_time(own, context) is not None:
            return IntentGuess(SmsIntent.RESCHEDULE, 0.8, "cannot attend and offers another time")
        return IntentGuess(SmsIntent.CANCEL, 0.9, "cancels or cannot attend")
    if booking and _NO_RE.match(plain):
        return IntentGuess(SmsIntent.CANCEL, 0.75, "says no to the reminder")
    if _CONFIRM_START_RE.match(plain) or _CONFIRM_ANY_RE.search(plain):
        return IntentGuess(SmsIntent.CONFIRM, 0.9, "confirms attendance")
    if any(e in plain for e in _CONFIRM_EMOJI) and len(_words(plain)) <= 3:
        return IntentGuess(SmsIntent.CONFIRM, 0.85, "thumbs-up or tick")
    if booking and _WEAK_CONFIRM_RE.match(plain):
        return IntentGuess(SmsIntent.CONFIRM, 0.7, "acknowledges the reminder")
    words = _words(plain)
    if not _GREETING_RE.match(plain) and (
        ("?" in plain and len(words) >= 2) or (_QUESTION_START_RE.match(plain) and len(words) >= 3)
    ):
        return IntentGuess(SmsIntent.QUESTION, 0.8, "asks a question")
    return IntentGuess(SmsIntent.OTHER, 0.6, "no booking action or question")


# --- proposed times -------------------------------------------------------------

_WEEKDAYS = {
    "mon": 0,
    "monday": 0,
    "tue": 1,
    "tues": 1,
    "tuesday": 1,
    "wed": 2,
    "weds": 2,
    "wednesday": 2,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "thursday": 3,
    "fri": 4,
    "friday": 4,
    "sat": 5,
    "saturday": 5,
    "sun": 6,
    "sunday": 6,
}
_DAY_RE = re.compile(
    r"\b(?P<next>next\s+|this\s+)?(?P<wd>"
    + "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
    + r")\b"
)
_REL_RE = re.compile(r"\b(?P<rel>today|tonight|tomorrow|tmrw|tmr|tomoz|2moro|next\s+week)\b")
_DOM_RE = re.compile(r"\b(?:the\s+)?(?P<dom>[0-3]?\d)(?:st|nd|rd|th)\b")
_CLOCK_RE = re.compile(
    r"\b(?:at\s+|@\s*|after\s+|before\s+|around\s+|about\s+)?(?P<h>[01]?\d|2[0-3])"
    r"(?:[:.](?P<m>[0-5]\d))?\s*(?P<ampm>am|pm|a\.m\.|p\.m\.)?(?![\d/])"
)
_PART_RE = re.compile(r"\b(?P<part>morning|arvo|afternoon|evening|lunch(?:time)?|midday|noon)\b")
_PARTS = {
    "morning": time(9, 0),
    "arvo": time(14, 0),
    "afternoon": time(14, 0),
    "evening": time(17, 0),
    "lunch": time(12, 0),
    "lunchtime": time(12, 0),
    "midday": time(12, 0),
    "noon": time(12, 0),
}


def _clock(text: str) -> time | None:
    for match in _CLOCK_RE.finditer(text):
        hour = int(match["h"])
        minute = int(match["m"] or 0)
        ampm = (match["ampm"] or "").replace(".", "")
        explicit = bool(ampm) or match["m"] is not None
        prefixed = match.group(0).lstrip()[:1].isalpha() or match.group(0).lstrip()[:1] == "@"
        if not explicit and not prefixed:
            continue  # a bare number ("the 20th" is handled elsewhere; "2 kids" is not a time)
        if ampm == "pm" and hour < 12:
            hour += 12
        elif ampm == "am" and hour == 12:
            hour = 0
        elif not ampm and 1 <= hour <= 6:
            hour += 12  # "at 2" in a clinic means 2 pm
        if hour > 23:
            continue
        return time(hour, minute)
    part = _PART_RE.search(text)
    return _PARTS[part["part"]] if part else None


def _localise(day: datetime, at: time, zone: ZoneInfo) -> datetime:
    """Attach a wall-clock time to a date in ``zone``, moving out of a DST gap."""
    naive = datetime.combine(day.date(), at)
    local = naive.replace(tzinfo=zone)
    # A wall time inside a spring-forward gap does not exist; the UTC round trip
    # moves it forward by the gap, which is what a receptionist would book.
    return local.astimezone(ZoneInfo("UTC")).astimezone(zone)


def proposed_time(text: str, context: SmsContext) -> datetime | None:
    """The day/time a reschedule request names, resolved in the clinic's timezone.

    A weekday means its next occurrence after today; ``next <weekday>`` means the one
    in the following calendar week; a day without a time means 9:00; a time without a
    day means its next occurrence.  ``None`` when the text names neither.
    """
    try:
        zone = ZoneInfo(context.timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    own = strip_quoted(normalise(text)) or normalise(text)
    now = context.received_at.astimezone(zone)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    day: datetime | None = None
    if rel := _REL_RE.search(own):
        word = rel["rel"]
        if word in {"today", "tonight"}:
            day = today
        elif word.startswith("next"):
            day = today + timedelta(days=7 - today.weekday())
        else:
            day = today + timedelta(days=1)
    elif wd := _DAY_RE.search(own):
        target = _WEEKDAYS[wd["wd"]]
        ahead = (target - today.weekday()) % 7 or 7
        if (wd["next"] or "").startswith("next") and today.weekday() + ahead < 7:
            ahead += 7
        day = today + timedelta(days=ahead)
    elif dom := _DOM_RE.search(own):
        number = int(dom["dom"])
        if 1 <= number <= 31:
            candidate = _day_of_month(today, number)
            day = candidate
    at = _clock(own)
    if day is None and at is None:
        return None
    if day is None:
        day = today
        if _localise(day, at or time(9), zone) <= now:
            day = today + timedelta(days=1)
    return _localise(day, at or time(9, 0), zone)


def _day_of_month(today: datetime, number: int) -> datetime | None:
    for months_ahead in range(3):
        month = (today.month - 1 + months_ahead) % 12 + 1
        year = today.year + (today.month - 1 + months_ahead) // 12
        try:
            candidate = today.replace(year=year, month=month, day=number)
        except ValueError:
            continue
        if candidate > today:
            return candidate
    return None


__all__ = [
    "OPT_OUT_KEYWORDS",
    "IntentGuess",
    "classify",
    "has_booking_context",
    "keyword_opt_out",
    "normalise",
    "proposed_time",
    "strip_quoted",
]
