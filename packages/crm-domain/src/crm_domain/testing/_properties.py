"""Hypothesis properties: random contacts and random queries against the reference semantics.

Each example works in a location of its own, so examples never see each
other's rows although they share the gateway of one test.  Names mix ASCII
letters with caseless scripts (Hebrew, CJK, emoji): case-insensitive search is
only specified for ASCII case, which every SQL engine folds the same way.
"""

from __future__ import annotations

import string
from datetime import UTC, timedelta, timezone
from typing import Any

import attrs
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from crm_domain.entities import Contact, ContactSource, ContactStatus
from crm_domain.queries import ContactQuery, matches
from crm_domain.testing._base import GatewayKit, assert_same
from crm_domain.testing._world import BASE_TIME, World

_NAME_ALPHABET = string.ascii_letters + " -'" + "שלום中文🦄"
_EMAILS = ["ann@kit.example", "bo@kit.example", "cy@kit.example"]
_PHONES = ["+61412345001", "+61412345002", "+14155550100"]
_TAGS = ["mri", "ct", "vip", "x-ray"]
_OFFSETS = [UTC, timezone(timedelta(hours=10)), timezone(-timedelta(hours=7, minutes=30))]

_names = st.text(_NAME_ALPHABET, min_size=1, max_size=16).filter(lambda s: s.strip() != "")
_instants = st.builds(
    lambda minutes, micros, tz: (
        BASE_TIME + timedelta(minutes=minutes, microseconds=micros)
    ).astimezone(tz),
    st.integers(-5000, 5000),
    st.integers(0, 999_999),
    st.sampled_from(_OFFSETS),
)


@st.composite
def _contact_fields(draw: st.DrawFn) -> dict[str, Any]:
    email = draw(st.none() | st.sampled_from(_EMAILS))
    phone = draw(
        st.sampled_from(_PHONES) if email is None else st.none() | st.sampled_from(_PHONES)
    )
    created = draw(_instants)
    return {
        "first_name": draw(_names),
        "last_name": draw(st.text(_NAME_ALPHABET, max_size=16)),
        "email": email,
        "phone": phone,
        "source": draw(st.sampled_from(list(ContactSource)[:4])),
        "status": draw(st.sampled_from(list(ContactStatus)[:4])),
        "warmness": draw(st.integers(0, 100)),
        "tags": draw(st.lists(st.sampled_from(_TAGS), max_size=3)),
        "email_opt_in": draw(st.booleans()),
        "sms_opt_in": draw(st.booleans()),
        "created_at": created,
        "updated_at": created,
    }


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Mostly unset (one in five set), so a query combines a few filters and still
    # matches several rows often enough to need more than one page.
    return st.one_of(st.none(), st.none(), st.none(), st.none(), strategy)


_queries = st.builds(
    ContactQuery,
    limit=st.integers(1, 3),
    status=_maybe(st.sampled_from([s.value for s in list(ContactStatus)[:4]])),
    source=_maybe(st.sampled_from([s.value for s in list(ContactSource)[:4]])),
    tag=_maybe(st.sampled_from(_TAGS)),
    warmness_min=_maybe(st.integers(0, 100)),
    warmness_max=_maybe(st.integers(0, 101)),
    created_from=_maybe(_instants),
    created_to=_maybe(_instants),
    email=_maybe(st.sampled_from(_EMAILS)),
    phone=_maybe(st.sampled_from(_PHONES)),
    email_opt_in=_maybe(st.booleans()),
    sms_opt_in=_maybe(st.booleans()),
    search=_maybe(st.text(string.ascii_letters + "של中🦄", min_size=1, max_size=2)),
)


class PropertyConformance(GatewayKit):
    """Random data and queries: listing and counting agree with :func:`matches`."""

    # Everything is drawn up front, never inside the coroutine: Hypothesis stops
    # an example with a BaseException that would tear down anyio's test runner.
    @given(fields=st.lists(_contact_fields(), max_size=8), query=_queries)
    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        # No shrinking: on a gateway with a network round trip per statement it
        # would take hours, and eight contacts are readable as drawn.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    async def test_random_contacts_list_like_the_reference(
        self, world: World, fields: list[dict[str, Any]], query: ContactQuery
    ) -> None:
        location = world.location()
        await world.save(None, location)
        tenant = location.id
        contacts = [world.contact(tenant, **f) for f in fields]
        await world.save_all(tenant, contacts)

        expected = sorted((c for c in contacts if matches(query, c)), key=lambda c: c.id)
        expected.reverse()
        got: list[Contact] = []
        page_query = query
        async with world.gateway.unit_of_work(tenant) as uow:
            for _ in range(len(contacts) + 2):
                page = await uow.contacts.list(page_query)
                assert len(page.items) <= query.limit
                got.extend(page.items)
                if page.next_cursor is None:
                    break
                page_query = attrs.evolve(page_query, cursor=page.next_cursor)
            else:
                raise AssertionError("the cursor never ends (pages repeat rows?)")
            counted = await uow.contacts.count(query)
        assert [c.id for c in got] == [c.id for c in expected]
        assert counted == len(expected)
        for stored, original in zip(got, expected, strict=True):
            assert_same(stored, original)


__all__ = ["PropertyConformance"]
