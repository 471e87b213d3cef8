"""The offline heuristic provider: every capability, deterministic and explained."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from crm_domain.clock import FixedClock
from crm_domain.entities import BookingStatus, SmsIntent, TaskPriority, TouchpointKind
from crm_domain.ports.ai import (
    AIProvider,
    CampaignBrief,
    ContactDraft,
    LeadProfile,
    ScheduleRequest,
    SmsContext,
    TouchpointFact,
    WarmnessBand,
)
from crm_domain.ports.analytics import Dimension, Metric, MetricRow
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from crm_ai.heuristic import HeuristicProvider
from crm_ai.heuristic.intent import OPT_OUT_KEYWORDS, classify, normalise, proposed_time

pytestmark = pytest.mark.anyio

SYD = ZoneInfo("Australia/Sydney")
NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # Tue 10 Mar, 20:00 in Sydney
REMINDER = SmsContext(
    received_at=NOW,
    timezone="Australia/Sydney",
    has_upcoming_booking=True,
    booking_starts_at=NOW + timedelta(days=1),
    last_outbound_kind="reminder",
)
NO_BOOKING = SmsContext(received_at=NOW, timezone="Australia/Sydney")


@pytest.fixture
def ai() -> HeuristicProvider:
    return HeuristicProvider(clock=FixedClock(NOW))


def test_satisfies_the_port(ai: HeuristicProvider) -> None:
    assert isinstance(ai, AIProvider)
    assert ai.name == "heuristic"


# --- SMS intent -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop",
        "Stop.",
        "STOPALL",
        "stop all",
        "UNSUBSCRIBE",
        "END",
        "QUIT",
        "REVOKE",
        "OPT OUT",
        "opt-out",
        "optout",
        "STOP 🛑",
        "  Stop please!! ",
        "don't text me",
        "Don’t text me again",
        "do not message me",
        "stop messaging me",
        "Please stop texting me",
        "remove me from your list",
        "no more texts",
        "Cancel my appointment and stop texting me",
        "Yes confirmed. Also please unsubscribe me",
        "no more sms stop",  # not the clinic's "Reply STOP to opt out" boilerplate
    ],
)
@pytest.mark.parametrize("context", [REMINDER, NO_BOOKING], ids=["reminder", "no-booking"])
async def test_opt_out_is_never_missed(
    ai: HeuristicProvider, text: str, context: SmsContext
) -> None:
    result = await ai.detect_sms_intent(text, context)
    assert result.intent is SmsIntent.OPT_OUT
    assert result.confidence >= 0.9


@pytest.mark.parametrize("text", ["CANCEL", "cancel", "Cancel.", "cancel please"])
async def test_bare_cancel_cancels_the_booking_after_a_reminder(
    ai: HeuristicProvider, text: str
) -> None:
    result = await ai.detect_sms_intent(text, REMINDER)
    assert result.intent is SmsIntent.CANCEL
    assert result.confidence < 0.9  # lower, so a person can review it


@pytest.mark.parametrize("text", ["CANCEL", "cancel"])
async def test_bare_cancel_without_a_booking_is_an_opt_out(
    ai: HeuristicProvider, text: str
) -> None:
    result = await ai.detect_sms_intent(text, NO_BOOKING)
    assert result.intent is SmsIntent.OPT_OUT


async def test_quoted_reminder_boilerplate_is_not_an_opt_out(ai: HeuristicProvider) -> None:
    text = "Yes see you then\n> Reminder: scan tomorrow 9am. Reply Y to confirm or STOP to opt out"
    result = await ai.detect_sms_intent(text, REMINDER)
    assert result.intent is SmsIntent.CONFIRM


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Yes 👍", SmsIntent.CONFIRM),
        ("no worries, see you tomorrow", SmsIntent.CONFIRM),
        ("cant make it sorry", SmsIntent.CANCEL),
        ("Can we move it to Friday?", SmsIntent.RESCHEDULE),
        ("Do I need to fast?", SmsIntent.QUESTION),
        ("Thanks!", SmsIntent.OTHER),
    ],
)
async def test_classifies_common_replies(
    ai: HeuristicProvider, text: str, intent: SmsIntent
) -> None:
    assert (await ai.detect_sms_intent(text, REMINDER)).intent is intent


async def test_reschedule_proposes_the_named_day_and_time_in_the_clinic_timezone(
    ai: HeuristicProvider,
) -> None:
    result = await ai.detect_sms_intent("Can't make it, could we do Thursday at 3pm?", REMINDER)
    assert result.intent is SmsIntent.RESCHEDULE
    assert result.proposed_time == datetime(2026, 3, 12, 15, 0, tzinfo=SYD)


async def test_reschedule_resolves_tomorrow_relative_to_local_date(ai: HeuristicProvider) -> None:
    # 23:30 UTC on the 10th is already the 11th in Sydney: "tomorrow" is the 12th.
    late = SmsContext(
        received_at=datetime(2026, 3, 10, 23, 30, tzinfo=UTC),
        timezone="Australia/Sydney",
        has_upcoming_booking=True,
    )
    result = await ai.detect_sms_intent("can I change to tomorrow at 2?", late)
    assert result.proposed_time == datetime(2026, 3, 12, 14, 0, tzinfo=SYD)


async def test_reschedule_across_dst_end_keeps_the_wall_clock_time(ai: HeuristicProvider) -> None:
    # Sydney leaves daylight saving at 03:00 on Sun 5 Apr 2026 (+11 → +10).
    context = SmsContext(
        received_at=datetime(2026, 4, 4, 1, 0, tzinfo=UTC), timezone="Australia/Sydney"
    )
    result = await ai.detect_sms_intent("Can I reschedule to tomorrow at 10am?", context)
    assert result.proposed_time is not None
    assert result.proposed_time.utcoffset() == timedelta(hours=10)
    assert result.proposed_time.astimezone(UTC) == datetime(2026, 4, 5, 0, 0, tzinfo=UTC)


async def test_reschedule_into_a_dst_gap_moves_forward(ai: HeuristicProvider) -> None:
    # New York skips 02:00–03:00 on Sun 8 Mar 2026.
    context = SmsContext(
        received_at=datetime(2026, 3, 7, 15, 0, tzinfo=UTC), timezone="America/New_York"
    )
    result = await ai.detect_sms_intent("could we move it to tomorrow at 2:30am", context)
    assert result.proposed_time is not None
    assert result.proposed_time.astimezone(UTC) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


async def test_reschedule_without_a_time_proposes_none(ai: HeuristicProvider) -> None:
    result = await ai.detect_sms_intent("I need to reschedule", REMINDER)
    assert result.intent is SmsIntent.RESCHEDULE
    assert result.proposed_time is None


# Issue 10: replies the rules around the word "stop" used to get wrong.


@pytest.mark.parametrize(
    "text",
    [
        "STOP\nAT",  # a keyword line, then a word that once read as "stop at (a place)"
        "STOP at once",
        "Stop in future pls",
        "S T O P",
        "s.t.o.p",
        "S\u200bT\u200bO\u200bP",  # zero-width spaces between the letters
        "cancel my subscription to these texts",
        "STOP\nI'll stop by the clinic on Friday",  # another "stop" must not excuse the first
    ],
)
@pytest.mark.parametrize("context", [REMINDER, NO_BOOKING], ids=["reminder", "no-booking"])
def test_issue_10_opt_outs_are_recognised(text: str, context: SmsContext) -> None:
    guess = classify(text, context)
    assert guess.intent is SmsIntent.OPT_OUT, guess
    assert guess.confidence >= 0.85


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("stop worrying, I'll be there", SmsIntent.CONFIRM),
        ("stop, I'll be there", SmsIntent.CONFIRM),
        ("please stop my appointment", SmsIntent.CANCEL),
        # Still opt-outs: the exceptions above are narrow.
        ("stop reminding me, I'll be there", SmsIntent.OPT_OUT),
        ("stop my appointment reminders", SmsIntent.OPT_OUT),
        ("Stop. I'll be there", SmsIntent.OPT_OUT),
        ("Stop, yes please", SmsIntent.OPT_OUT),
        # Still not opt-outs: "stop" as a verb of visiting, with someone doing it.
        ("I'll stop by the clinic after work", SmsIntent.OTHER),
        ("yes, will stop in at reception first", SmsIntent.CONFIRM),
    ],
)
def test_issue_10_stop_in_another_sense(text: str, intent: SmsIntent) -> None:
    guess = classify(text, REMINDER)
    assert guess.intent is intent, guess


def test_stop_read_in_another_sense_is_flagged_for_review() -> None:
    # A confirmation that contains "stop" is a judgement call: lower confidence, and the
    # rule says why, so a person can look at it.
    guess = classify("stop, I'll be there", REMINDER)
    assert guess.confidence < 0.8
    assert "stop" in guess.rule


# --- warmness ---------------------------------------------------------------------


def _profile(**kw: object) -> LeadProfile:
    base: dict[str, object] = {
        "source": "website",
        "status": "new",
        "service_interest": "mri",
        "has_email": True,
        "has_phone": True,
        "email_opt_in": True,
        "sms_opt_in": True,
        "created_at": NOW - timedelta(days=3),
    }
    base.update(kw)
    return LeadProfile(**base)


async def test_recent_engagement_scores_higher_than_old(ai: HeuristicProvider) -> None:
    def with_form(days: int) -> LeadProfile:
        return _profile(
            created_at=NOW - timedelta(days=60),
            touchpoints=(
                TouchpointFact(
                    kind=TouchpointKind.FORM_SUBMIT, occurred_at=NOW - timedelta(days=days)
                ),
                TouchpointFact(
                    kind=TouchpointKind.CALL_INBOUND, occurred_at=NOW - timedelta(days=days)
                ),
            ),
        )

    fresh = await ai.analyze_warmness(with_form(1), NOW)
    stale = await ai.analyze_warmness(with_form(45), NOW)
    assert fresh.score > stale.score + 15
    assert "recently called the clinic" in fresh.reasons


async def test_upcoming_booking_is_hot_with_a_booking_action(ai: HeuristicProvider) -> None:
    result = await ai.analyze_warmness(
        _profile(status="booked", booking_statuses=(BookingStatus.CONFIRMED,)), NOW
    )
    assert result.band is WarmnessBand.HOT
    assert "has an upcoming booking" in result.reasons
    assert "booking" in result.next_best_action


async def test_lost_lead_is_cold(ai: HeuristicProvider) -> None:
    result = await ai.analyze_warmness(_profile(status="lost"), NOW)
    assert result.band is WarmnessBand.COLD
    assert 0 <= result.score < 40


async def test_warmness_band_follows_score_thresholds(ai: HeuristicProvider) -> None:
    for days in range(0, 60, 3):
        profile = _profile(
            touchpoints=(
                TouchpointFact(
                    kind=TouchpointKind.FORM_SUBMIT, occurred_at=NOW - timedelta(days=days)
                ),
            )
        )
        result = await ai.analyze_warmness(profile, NOW)
        expected = "cold" if result.score < 40 else "warm" if result.score < 70 else "hot"
        assert result.band.value == expected
        assert 0 <= result.score <= 100


# --- enrichment -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cased"),
    [
        ("o'brien", "O'Brien"),
        ("MCDONALD", "McDonald"),
        ("smith-jones", "Smith-Jones"),
        ("mary ann", "Mary Ann"),
        ("ludwig van beethoven", "Ludwig van Beethoven"),
        ("DeShawn", "DeShawn"),  # typed in mixed case: kept
        ("  jane   ", "Jane"),
    ],
)
async def test_name_casing(ai: HeuristicProvider, raw: str, cased: str) -> None:
    result = await ai.enrich_contact(ContactDraft(first_name=raw))
    assert result.first_name == cased


async def test_phone_email_and_source_are_normalised(ai: HeuristicProvider) -> None:
    result = await ai.enrich_contact(
        ContactDraft(
            first_name="JANE",
            last_name="o'neill",
            email=" Jane.Citizen@GMIAL.com ",
            phone="0412 345 678",
            utm_source="facebook",
        )
    )
    assert (result.first_name, result.last_name) == ("Jane", "O'Neill")
    assert result.phone == "+61412345678"
    assert result.email == "jane.citizen@gmail.com"
    assert result.source == "meta_ad"
    assert any("gmail.com" in note for note in result.notes)


@pytest.mark.parametrize(
    ("draft", "source"),
    [
        (ContactDraft(referrer="https://www.google.com/search?q=mri"), "website"),
        (ContactDraft(referrer="https://clinic.example/?gclid=abc"), "google_ad"),
        (ContactDraft(referrer="https://l.facebook.com/x"), "meta_ad"),
        (ContactDraft(utm_source="google"), "google_ad"),
        (ContactDraft(source="referral", utm_source="facebook"), "referral"),
        (ContactDraft(), "other"),
    ],
)
async def test_source_inference(ai: HeuristicProvider, draft: ContactDraft, source: str) -> None:
    assert (await ai.enrich_contact(draft)).source == source


async def test_invalid_phone_and_email_are_dropped_with_notes(ai: HeuristicProvider) -> None:
    result = await ai.enrich_contact(ContactDraft(phone="12", email="not-an-email"))
    assert result.phone is None
    assert result.email is None
    assert len(result.notes) == 2


async def test_us_region_setting_reads_national_numbers() -> None:
    ai = HeuristicProvider(phone_region="US")
    result = await ai.enrich_contact(ContactDraft(phone="(201) 555-0123"))
    assert result.phone == "+12015550123"


# --- schedule -----------------------------------------------------------------------

WEEKDAYS_9_TO_5 = tuple((d, "09:00", "17:00") for d in range(5))


async def test_slots_respect_hours_bookings_and_buffer(ai: HeuristicProvider) -> None:
    day = datetime(2026, 3, 11, tzinfo=SYD)  # a Wednesday
    busy = ((day.replace(hour=10), day.replace(hour=10, minute=30)),)
    slots = await ai.optimize_schedule(
        ScheduleRequest(
            window_start=day,
            window_end=day + timedelta(days=1),
            duration_minutes=30,
            timezone="Australia/Sydney",
            opening_hours=WEEKDAYS_9_TO_5,
            buffer_minutes=15,
            busy=busy,
            max_results=50,
        )
    )
    assert slots
    starts = {s.start.astimezone(SYD).strftime("%H:%M") for s in slots}
    assert "09:00" in starts
    assert "09:15" in starts  # ends 09:45, exactly at the buffer
    assert not starts & {"09:30", "09:45", "10:00", "10:15", "10:30"}
    assert "10:45" in starts
    for slot in slots:
        local = slot.start.astimezone(SYD)
        assert local.hour >= 9
        assert slot.end.astimezone(SYD) <= day.replace(hour=17)
        assert slot.end - slot.start == timedelta(minutes=30)
    assert [s.score for s in slots] == sorted((s.score for s in slots), reverse=True)


async def test_slots_closest_to_preferred_time_rank_first(ai: HeuristicProvider) -> None:
    day = datetime(2026, 3, 11, tzinfo=SYD)
    slots = await ai.optimize_schedule(
        ScheduleRequest(
            window_start=day,
            window_end=day + timedelta(days=2),
            duration_minutes=60,
            timezone="Australia/Sydney",
            opening_hours=WEEKDAYS_9_TO_5,
            buffer_minutes=0,
            busy=(),
            preferred_time=day.replace(hour=14),
            max_results=3,
        )
    )
    assert slots[0].start == day.replace(hour=14)
    assert len(slots) == 3


async def test_slots_skip_the_missing_hour_on_dst_start(ai: HeuristicProvider) -> None:
    ny = ZoneInfo("America/New_York")
    day = datetime(2026, 3, 8, tzinfo=ny)  # Sunday; 02:00-03:00 does not exist
    slots = await ai.optimize_schedule(
        ScheduleRequest(
            window_start=day,
            window_end=day + timedelta(days=1),
            duration_minutes=30,
            timezone="America/New_York",
            opening_hours=((6, "01:00", "05:00"),),
            buffer_minutes=0,
            busy=(),
            max_results=100,
        )
    )
    walls = sorted(s.start.astimezone(ny).strftime("%H:%M") for s in slots)
    assert "01:30" in walls
    assert "03:00" in walls
    assert not any(w.startswith("02:") for w in walls)
    # Durations are real time: 01:45 EST + 30 min is 03:15 EDT.
    assert all(
        s.end.astimezone(UTC) - s.start.astimezone(UTC) == timedelta(minutes=30) for s in slots
    )
    assert "01:45" in walls


# --- campaign, insights, report query, task priority --------------------------------------


async def test_campaign_html_is_escaped_and_text_is_plain(ai: HeuristicProvider) -> None:
    result = await ai.generate_campaign(
        CampaignBrief(
            goal="Win back lapsed patients",
            audience_description="patients not seen for 12 months",
            service_type="Ultrasound & Doppler <script>alert(1)</script>",
            clinic_name="Avatar Imaging",
        )
    )
    assert "<script>" not in result.html
    assert "&lt;script&gt;" in result.html
    assert "Ultrasound &amp; Doppler" in result.html
    assert "Ultrasound & Doppler" in result.text
    assert "Avatar Imaging" in result.subject
    assert "{{ unsubscribe_url }}" in result.html and "{{ first_name }}" in result.text
    # The staff-facing brief chooses the template but is not copied into the email.
    assert "lapsed" not in result.text and "12 months" not in result.html
    assert "been a while" in result.text


@pytest.mark.parametrize(
    ("goal", "phrase"),
    [
        ("remind patients due for annual screening", "friendly reminder"),
        ("launch our new 3T MRI", "now available"),
        ("20% discount promo", "special offer"),
        ("say hello", "update"),
    ],
)
async def test_campaign_template_follows_the_goal(
    ai: HeuristicProvider, goal: str, phrase: str
) -> None:
    result = await ai.generate_campaign(
        CampaignBrief(goal=goal, audience_description="all", service_type="MRI", clinic_name="C")
    )
    assert phrase in (result.subject + result.text).lower()


async def test_insights_find_trends_and_outliers(ai: HeuristicProvider) -> None:
    weeks = [f"2026-01-{d:02d}" for d in (5, 12, 19, 26)] + ["2026-02-02", "2026-02-09"]
    no_shows = tuple(
        MetricRow(keys={"week": w}, value=v) for w, v in zip(weeks, [2, 3, 3, 4, 5, 7], strict=True)
    )
    bookings = tuple(
        MetricRow(keys={"location": loc}, value=v)
        for loc, v in [("BNE", 40), ("SYD", 42), ("MEL", 41), ("PER", 39), ("ADL", 40), ("HBA", 5)]
    )
    result = await ai.generate_insights({"no_shows": no_shows, "bookings": bookings}, None)
    text = " ".join(result.findings)
    assert "No-shows are rising" in text
    assert "unusually low for HBA" in text
    assert any("reminder" in r.lower() for r in result.recommendations)
    assert "24 no-shows" in result.summary


@pytest.mark.parametrize(
    ("question", "metric", "dims", "start", "end"),
    [
        (
            "no-shows by location last month",
            Metric.NO_SHOWS,
            (Dimension.LOCATION,),
            datetime(2026, 2, 1, tzinfo=SYD),
            datetime(2026, 3, 1, tzinfo=SYD),
        ),
        (
            "bookings per week this quarter",
            Metric.BOOKINGS,
            (Dimension.WEEK,),
            datetime(2026, 1, 1, tzinfo=SYD),
            datetime(2026, 4, 1, tzinfo=SYD),
        ),
        (
            "average warmness by source in the last 30 days",
            Metric.AVG_WARMNESS,
            (Dimension.SOURCE,),
            NOW - timedelta(days=30),
            NOW,
        ),
        (
            "How many new leads did we get each month this year?",
            Metric.NEW_CONTACTS,
            (Dimension.MONTH,),
            datetime(2026, 1, 1, tzinfo=SYD),
            datetime(2027, 1, 1, tzinfo=SYD),
        ),
        (
            "cancellations by service and location last week",
            Metric.CANCELLATIONS,
            (Dimension.SERVICE_TYPE, Dimension.LOCATION),
            datetime(2026, 3, 2, tzinfo=SYD),
            datetime(2026, 3, 9, tzinfo=SYD),
        ),
        (
            "daily inbound SMS yesterday",
            Metric.SMS_INBOUND,
            (Dimension.DAY,),
            datetime(2026, 3, 9, tzinfo=SYD),
            datetime(2026, 3, 10, tzinfo=SYD),
        ),
    ],
)
async def test_report_questions_become_metric_queries(
    ai: HeuristicProvider,
    question: str,
    metric: Metric,
    dims: tuple[Dimension, ...],
    start: datetime,
    end: datetime,
) -> None:
    result = await ai.parse_report_query(question, NOW, "Australia/Sydney")
    assert len(result.queries) == 1
    query = result.queries[0]
    assert (query.metric, query.dimensions) == (metric, dims)
    assert (query.start, query.end) == (start, end)
    assert query.timezone == "Australia/Sydney"
    assert result.understood_as


async def test_report_query_names_locations_and_several_metrics(ai: HeuristicProvider) -> None:
    result = await ai.parse_report_query(
        "bookings and no-shows at BNE in March 2025", NOW, "Australia/Sydney"
    )
    assert [q.metric for q in result.queries] == [Metric.NO_SHOWS, Metric.BOOKINGS]
    assert result.locations == ("BNE",)
    assert result.queries[0].start == datetime(2025, 3, 1, tzinfo=SYD)
    assert result.queries[0].end == datetime(2025, 4, 1, tzinfo=SYD)


async def test_report_query_drops_groupings_a_metric_cannot_have(ai: HeuristicProvider) -> None:
    result = await ai.parse_report_query("open tasks by service this month", NOW, "UTC")
    assert result.queries[0].metric is Metric.TASKS_OPEN
    assert result.queries[0].dimensions == ()
    assert "cannot group" in result.understood_as


@pytest.mark.parametrize(
    ("title", "profile", "priority"),
    [
        ("Patient complaint about billing", None, TaskPriority.URGENT),
        ("Call back re no-show", None, TaskPriority.HIGH),
        ("Send newsletter draft", None, TaskPriority.LOW),
        (
            "Follow up",
            _profile(status="booked", booking_statuses=(BookingStatus.CONFIRMED,)),
            TaskPriority.HIGH,
        ),
        ("Follow up", _profile(status="lost"), TaskPriority.LOW),
        ("Follow up", None, TaskPriority.NORMAL),
    ],
)
async def test_task_priority(
    ai: HeuristicProvider, title: str, profile: LeadProfile | None, priority: TaskPriority
) -> None:
    result = await ai.prioritize_task(title, profile)
    assert result.priority is priority
    assert result.reason


# --- arbitrary input ----------------------------------------------------------------------


#: Raise locally to hunt for rare failures: CRM_TEST_HYPOTHESIS_EXAMPLES=20000 pytest ...
_EXAMPLES = int(os.environ.get("CRM_TEST_HYPOTHESIS_EXAMPLES", "300"))


@settings(max_examples=_EXAMPLES, deadline=None)
@example(text="AT", booked=False)  # issue 10: "STOP\nAT" read as "stop at (a place)"
@example(text="by the clinic", booked=True)
@given(text=st.text(max_size=200), booked=st.booleans())
def test_intent_rules_never_raise_and_keywords_always_opt_out(text: str, booked: bool) -> None:
    context = SmsContext(received_at=NOW, timezone="Australia/Sydney", has_upcoming_booking=booked)
    guess = classify(text, context)
    assert isinstance(guess.intent, SmsIntent)
    assert 0.0 <= guess.confidence <= 1.0
    when = proposed_time(text, context)
    assert when is None or when.tzinfo is not None
    # Whatever else is in the message, a leading STOP line is an opt-out.
    assert classify("STOP\n" + text, context).intent is SmsIntent.OPT_OUT


_LINE_BREAKS = st.sampled_from(["\n", "\r\n", "\r", "\u2028", "\x0b", "\n\n", " \n "])
_KEYWORD_LINES = st.builds(
    lambda before, keyword, case, filler, after: f"{before}{case(keyword)}{filler}{after}",
    st.sampled_from(["", " ", "  ", "*", "(", '"']),
    st.sampled_from(sorted(OPT_OUT_KEYWORDS)),
    st.sampled_from([str.upper, str.lower, str.title, str.swapcase]),
    st.sampled_from(["", " please", " PLS", " now", " thanks", " all"]),
    st.sampled_from(["", ".", "!", "!!!", " 🛑", " 🙄", ")", '"', "?"]),
)


@settings(max_examples=_EXAMPLES, deadline=None)
@example(before="", keyword_line="STOP", after="AT", where="first", brk="\n", booked=False)
@example(before="I'll stop by", keyword_line="stop", after="", where="last", brk="\n", booked=True)
@given(
    before=st.text(max_size=120),
    keyword_line=_KEYWORD_LINES,
    after=st.text(max_size=120),
    where=st.sampled_from(["first", "middle", "last"]),
    brk=_LINE_BREAKS,
    booked=st.booleans(),
)
def test_a_line_that_is_only_a_carrier_keyword_is_always_an_opt_out(
    before: str, keyword_line: str, after: str, where: str, brk: str, booked: bool
) -> None:
    # Carriers treat a message that is a keyword as binding; a keyword alone on its line is
    # as clear, whatever the other lines say.  Only the quoted part of a reply (from an
    # "On ... wrote:" header down) is not the patient's own words.
    parts = {
        "first": [keyword_line, before + after],
        "middle": [before, keyword_line, after],
        "last": [before + after, keyword_line],
    }[where]
    ahead = parts[: parts.index(keyword_line)]
    assume("wrote:" not in normalise(brk.join(ahead)))
    text = brk.join(parts)
    context = SmsContext(received_at=NOW, timezone="Australia/Sydney", has_upcoming_booking=booked)
    guess = classify(text, context)
    assert guess.intent is SmsIntent.OPT_OUT, (text, guess)


@pytest.mark.parametrize(
    ("question", "metrics", "dims", "start", "end", "locations"),
    [
        (
            "How many bookings did BNE have last quarter?",
            [Metric.BOOKINGS],
            (),
            datetime(2025, 10, 1, tzinfo=SYD),
            datetime(2026, 1, 1, tzinfo=SYD),
            ("BNE",),
        ),
        (
            "completed scans per month in 2025",
            [Metric.COMPLETED],
            (Dimension.MONTH,),
            datetime(2025, 1, 1, tzinfo=SYD),
            datetime(2026, 1, 1, tzinfo=SYD),
            (),
        ),
        (
            "SMS sent vs received yesterday",
            [Metric.SMS_INBOUND, Metric.SMS_OUTBOUND],
            (),
            datetime(2026, 3, 9, tzinfo=SYD),
            datetime(2026, 3, 10, tzinfo=SYD),
            (),
        ),
        (
            "new patients from Facebook last week",
            [Metric.NEW_CONTACTS],
            (),  # Facebook is a filter on the source (meta_ad), not a grouping
            datetime(2026, 3, 2, tzinfo=SYD),
            datetime(2026, 3, 9, tzinfo=SYD),
            (),
        ),
        (
            "Compare no-shows across clinics for Q4",
            [Metric.NO_SHOWS],
            (Dimension.LOCATION,),
            datetime(2025, 10, 1, tzinfo=SYD),
            datetime(2026, 1, 1, tzinfo=SYD),
            (),
        ),
        (
            "weekly bookings at SYD and MEL in January",
            [Metric.BOOKINGS],
            (Dimension.WEEK,),
            datetime(2026, 1, 1, tzinfo=SYD),
            datetime(2026, 2, 1, tzinfo=SYD),
            ("SYD", "MEL"),
        ),
        (
            "BOOKINGS LAST MONTH",
            [Metric.BOOKINGS],
            (),
            datetime(2026, 2, 1, tzinfo=SYD),
            datetime(2026, 3, 1, tzinfo=SYD),
            (),
        ),
    ],
)
async def test_more_report_phrasing(
    ai: HeuristicProvider,
    question: str,
    metrics: list[Metric],
    dims: tuple[Dimension, ...],
    start: datetime,
    end: datetime,
    locations: tuple[str, ...],
) -> None:
    result = await ai.parse_report_query(question, NOW, "Australia/Sydney")
    assert [q.metric for q in result.queries] == metrics
    assert all(q.dimensions == dims for q in result.queries)
    assert all((q.start, q.end) == (start, end) for q in result.queries)
    assert result.locations == locations
