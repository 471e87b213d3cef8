"""Reply codes: a bare one-word reply means what the clinic's own message said it means."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from crm_domain.entities import SmsIntent
from crm_domain.policies.reply_codes import coded_intent, offered_codes


def test_codes_are_read_from_the_clinics_wording() -> None:
    assert offered_codes("Reminder: MRI tomorrow 9:00. Reply Y to confirm or C to cancel.") == {
        "y": SmsIntent.CONFIRM,
        "c": SmsIntent.CANCEL,
    }
    assert offered_codes("Reply C to confirm, R to reschedule") == {
        "c": SmsIntent.CONFIRM,
        "r": SmsIntent.RESCHEDULE,
    }
    assert offered_codes('Text "YES" to confirm or 2 to cancel') == {
        "yes": SmsIntent.CONFIRM,
        "2": SmsIntent.CANCEL,
    }
    # Lower-case words in a sentence are not codes; a code offered twice defines nothing.
    assert offered_codes("We would love to confirm your booking") == {}
    assert offered_codes("Reply C to confirm. Or C to cancel.") == {}


def test_a_reply_is_coded_only_when_it_is_exactly_an_offered_code() -> None:
    prompt = "Reply Y to confirm or C to cancel."
    assert coded_intent("C", prompt) is SmsIntent.CANCEL
    assert coded_intent(" c. ", prompt) is SmsIntent.CANCEL
    assert coded_intent('"Y"!', prompt) is SmsIntent.CONFIRM
    assert coded_intent("C u tomorrow", prompt) is None
    assert coded_intent("N", prompt) is None
    assert coded_intent("C", None) is None
    assert coded_intent("C", "Reply C to confirm") is SmsIntent.CONFIRM


CODES = st.sampled_from([*string.ascii_uppercase, *string.digits])


@given(confirm=CODES, cancel=CODES, noise=st.text(max_size=40))
def test_any_two_distinct_codes_in_a_prompt_are_read_back(
    confirm: str, cancel: str, noise: str
) -> None:
    prompt = f"{noise}\nReply {confirm} to confirm or {cancel} to cancel."
    if confirm == cancel:
        assert coded_intent(confirm, prompt) is None
        return
    assert coded_intent(confirm.lower(), prompt) is SmsIntent.CONFIRM
    assert coded_intent(cancel, prompt) is SmsIntent.CANCEL
