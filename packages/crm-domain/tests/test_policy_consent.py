"""The domain's own opt-out check: binding whatever the AI provider says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_domain.policies.consent import is_opt_out

KEYWORDS = ["stop", "stopall", "unsubscribe", "end", "quit", "revoke", "opt out", "optout"]
BREAKS = ["\n", "\r\n", "\r", "\u2028", "\x0b"]


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop.",
        "STOP\nAT",
        "Sure\r\nSTOP",
        "S T O P",
        "s.t.o.p",
        "S-T-O-P!",
        "ST\u200bOP",
        "unsubscribe me please",
        "cancel my subscription to these texts",
        "Please don't text me again",
    ],
)
def test_opt_outs_are_recognised(text: str) -> None:
    assert is_opt_out(text)


@pytest.mark.parametrize(
    "text",
    ["yes", "C", "I'll stop by the clinic at 3", "Can I come at the end of the day?", "stopping"],
)
def test_other_replies_are_not_opt_outs(text: str) -> None:
    assert not is_opt_out(text)


@given(
    keyword=st.sampled_from(KEYWORDS),
    upper=st.booleans(),
    punctuation=st.sampled_from(["", ".", "!", " !!", "?"]),
    before=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20), max_size=3),
    after=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20), max_size=3),
    line_break=st.sampled_from(BREAKS),
)
def test_a_line_that_is_only_a_keyword_is_always_an_opt_out(
    keyword: str,
    upper: bool,
    punctuation: str,
    before: list[str],
    after: list[str],
    line_break: str,
) -> None:
    line = (keyword.upper() if upper else keyword) + punctuation
    other = [part.replace("\n", " ") for part in before], [a.replace("\n", " ") for a in after]
    assert is_opt_out(line_break.join([*other[0], line, *other[1]]))
