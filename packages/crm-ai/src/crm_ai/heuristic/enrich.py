"""Deterministic contact enrichment: name casing, E.164 phones, email clean-up, source."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from crm_domain.entities import ContactSource
from crm_domain.errors import ValidationError
from crm_domain.ports.ai import ContactDraft, Enrichment
from crm_domain.values import DEFAULT_PHONE_REGION, parse_email, parse_phone

#: Lower-case name particles when they are not the first word ("van der Berg").
_PARTICLES = frozenset({"van", "von", "der", "den", "de", "del", "della", "da", "di", "le", "la"})

#: Common mistyped mail domains; fixed only when the whole domain matches.
DOMAIN_TYPOS = {
    "gmial.com": "gmail.com",
    "gmai.com": "gmail.com",
    "gmal.com": "gmail.com",
    "gamil.com": "gmail.com",
    "gmail.con": "gmail.com",
    "gmail.co": "gmail.com",
    "hotmial.com": "hotmail.com",
    "hotmail.con": "hotmail.com",
    "yahoo.con": "yahoo.com",
    "outlook.con": "outlook.com",
    "bigpond.con": "bigpond.com",
    "iclod.com": "icloud.com",
}

_UTM_SOURCES = (
    (("facebook", "fb", "instagram", "ig", "meta"), ContactSource.META_AD),
    (("google", "adwords", "gads", "youtube"), ContactSource.GOOGLE_AD),
    (("manychat",), ContactSource.MANYCHAT),
    (("wix",), ContactSource.WIX),
    (("referral", "gp", "doctor"), ContactSource.REFERRAL),
)
_REFERRER_HOSTS = (
    (("facebook.", "fb.com", "instagram.", "l.facebook.", "m.facebook."), ContactSource.META_AD),
    (("googleadservices.", "doubleclick.", "googlesyndication."), ContactSource.GOOGLE_AD),
    (("manychat.",), ContactSource.MANYCHAT),
    (("wix.", "wixsite."), ContactSource.WIX),
)


def _case_part(part: str) -> str:
    """Capitalise one hyphen- and apostrophe-free chunk, with Mc handling."""
    if not part:
        return part
    low = part.lower()
    if low.startswith("mc") and len(low) > 2:
        return "Mc" + low[2].upper() + low[3:]
    return low[0].upper() + low[1:]


def _case_word(word: str) -> str:
    # O'Brien, D'Arcy: capitalise after an apostrophe when the prefix is one letter.
    pieces = re.split(r"(['’-])", word)
    out: list[str] = []
    for i, piece in enumerate(pieces):
        if piece in {"'", "’", "-"}:
            out.append(piece)
        elif i >= 2 and pieces[i - 1] in {"'", "’"} and len(pieces[i - 2]) > 1:
            out.append(piece.lower())  # "Didn't" style: no capital after a long prefix
        else:
            out.append(_case_part(piece))
    return "".join(out)


def case_name(value: str | None) -> str | None:
    """Tidy a personal name.

    Only names typed all in lower or all in upper case are re-cased: a name the
    person typed in mixed case ("DeShawn", "MacLeod") is kept as they wrote it.
    """
    if value is None:
        return None
    text = re.sub(r"\s+", " ", value).strip()
    if not text:
        return None
    letters = [c for c in text if c.isalpha()]
    if letters and not (text == text.lower() or text == text.upper()):
        return text
    words = text.split(" ")
    cased = [
        w.lower() if i > 0 and w.lower() in _PARTICLES else _case_word(w)
        for i, w in enumerate(words)
    ]
    return " ".join(cased)


def normalise_email(value: str | None, notes: list[str]) -> str | None:
    """The normalised address, fixing well-known domain typos; ``None`` if invalid."""
    if value is None or not value.strip():
        return None
    text = value.strip().strip("<>").replace(" ", "")
    local, at, domain = text.rpartition("@")
    if at and domain.lower() in DOMAIN_TYPOS:
        fixed = DOMAIN_TYPOS[domain.lower()]
        notes.append(f"email domain corrected from {domain.lower()} to {fixed}")
        text = f"{local}@{fixed}"
    try:
        return parse_email(text)
    except ValidationError:
        notes.append("email is not a valid address; dropped")
        return None


def normalise_phone(value: str | None, notes: list[str], region: str) -> str | None:
    """The number in E.164, national numbers read in ``region``; ``None`` if invalid."""
    if value is None or not value.strip():
        return None
    try:
        return parse_phone(value, region=region)
    except ValidationError:
        notes.append("phone is not a valid number; dropped")
        return None


def infer_source(draft: ContactDraft) -> tuple[ContactSource, str | None]:
    """The contact source and a note saying how it was inferred."""
    if draft.source:
        try:
            return ContactSource(draft.source.strip().lower()), None
        except ValueError:
            pass
    utm = (draft.utm_source or "").strip().lower()
    if utm:
        for names, source in _UTM_SOURCES:
            if any(utm == n or utm.startswith((n + "_", n + ".")) for n in names):
                return source, f"source inferred from utm_source={utm}"
    referrer = (draft.referrer or "").strip().lower()
    if referrer:
        host = urlsplit(referrer if "//" in referrer else "//" + referrer).hostname or ""
        for prefixes, source in _REFERRER_HOSTS:
            if any(p in host for p in prefixes):
                return source, f"source inferred from referrer {host}"
        if "gclid=" in referrer:
            return ContactSource.GOOGLE_AD, "source inferred from a Google click id"
        if "fbclid=" in referrer:
            return ContactSource.META_AD, "source inferred from a Meta click id"
        return ContactSource.WEBSITE, f"source inferred from referrer {host or referrer}"
    if utm:
        return ContactSource.OTHER, f"unknown utm_source={utm}"
    if draft.source:
        return ContactSource.OTHER, f"unknown source {draft.source!r}"
    return ContactSource.OTHER, None


def enrich(draft: ContactDraft, region: str = DEFAULT_PHONE_REGION) -> Enrichment:
    """Normalise every field of a draft; never raises for bad input."""
    notes: list[str] = []
    source, how = infer_source(draft)
    if how:
        notes.append(how)
    interest = (draft.service_interest or "").strip().lower() or None
    return Enrichment(
        first_name=case_name(draft.first_name),
        last_name=case_name(draft.last_name),
        email=normalise_email(draft.email, notes),
        phone=normalise_phone(draft.phone, notes, region),
        source=source.value,
        service_interest=interest,
        notes=tuple(notes),
    )


__all__ = ["DOMAIN_TYPOS", "case_name", "enrich", "infer_source"]
