"""Queries: declarative filters, reference matching and opaque cursors."""

from __future__ import annotations

import enum
import typing
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_domain import entities
from crm_domain.entities import (
    AuditOutcome,
    BookingStatus,
    CampaignStatus,
    Contact,
    ContactSource,
    ContactStatus,
    DeliveryStatus,
    Role,
    SmsDirection,
    SmsIntent,
    SmsStatus,
    TaskPriority,
    TaskStatus,
    TouchpointKind,
)
from crm_domain.errors import ValidationError
from crm_domain.pagination import page_from_rows
from crm_domain.queries import (
    MAX_FILTER_LENGTH,
    MAX_LIMIT,
    AuditQuery,
    BookingQuery,
    CampaignQuery,
    ContactQuery,
    DeliveryQuery,
    ListQuery,
    MembershipQuery,
    Op,
    SmsQuery,
    TaskQuery,
    TouchpointQuery,
    active_filters,
    decode_cursor,
    encode_cursor,
    matches,
)

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def make(i: int, **changes: object) -> Contact:
    fields: dict[str, Any] = {
        "id": f"c{i:03d}",
        "tenant_id": "t",
        "first_name": f"Name{i}",
        "email": f"p{i}@example.com",
        "warmness": i % 101,
        "tags": ["mri"] if i % 2 else ["ct"],
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(changes)
    return Contact(**fields)


def test_active_filters_lists_only_set_fields() -> None:
    q = ContactQuery(tag="mri", warmness_min=50, search="ann")
    got = {name: (spec.op, spec.columns, value) for name, spec, value in active_filters(q)}
    assert got == {
        "tag": (Op.HAS, ("tags",), "mri"),
        "warmness_min": (Op.GTE, ("warmness",), 50),
        "search": (Op.SEARCH, ("first_name", "last_name", "email", "phone"), "ann"),
    }


def test_matches_reference_semantics() -> None:
    c = make(7, last_name="O'Brien")
    assert matches(ContactQuery(tag="mri"), c)
    assert not matches(ContactQuery(tag="ct"), c)
    assert matches(ContactQuery(warmness_min=7, warmness_max=8), c)
    assert not matches(ContactQuery(warmness_max=7), c)  # exclusive upper bound
    assert matches(ContactQuery(search="o'bri"), c)
    assert matches(ContactQuery(search="P7@EXAMPLE"), c)
    assert matches(ContactQuery(status="new"), c)
    assert not matches(ContactQuery(status="lost"), c)


@given(st.text(min_size=1, max_size=64).filter(lambda s: "\x00" not in s))
def test_cursor_round_trip(last_id: str) -> None:
    assert decode_cursor(encode_cursor(last_id)) == last_id


@pytest.mark.parametrize("bad", ["%%%", "!", "\udcff"])
def test_bad_cursor_is_a_validation_error(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        ContactQuery(cursor=bad)
    assert info.value.field == "cursor"


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1, True])
def test_limit_bounds(limit: int) -> None:
    with pytest.raises(ValidationError) as info:
        ContactQuery(limit=limit)
    assert info.value.field == "limit"


def test_page_from_overfetched_rows() -> None:
    rows = [make(i) for i in range(5, 0, -1)]
    page = page_from_rows(rows, 4)
    assert [c.id for c in page.items] == ["c005", "c004", "c003", "c002"]
    assert page.next_cursor is not None
    assert ContactQuery(cursor=page.next_cursor).after_id == "c002"
    assert page_from_rows(rows, 5).next_cursor is None


def _filters_of(kind: str) -> list[tuple[type[ListQuery], str]]:
    """``(query class, field)`` of every filter of every query class whose type names ``kind``."""
    found = []
    for query in sorted(_query_classes(ListQuery), key=lambda q: q.__name__):
        for field in attrs.fields(query):
            if "filter" in field.metadata and kind in str(field.type):
                found.append((query, field.name))
    return found


def _query_classes(base: type[ListQuery]) -> set[type[ListQuery]]:
    subclasses = set(base.__subclasses__())
    return subclasses.union(*(_query_classes(s) for s in subclasses))


TIME_FILTERS = _filters_of("datetime")
ENUM_FILTERS = {
    (ContactQuery, "status"): ContactStatus,
    (ContactQuery, "source"): ContactSource,
    (TouchpointQuery, "kind"): TouchpointKind,
    (BookingQuery, "status"): BookingStatus,
    (TaskQuery, "status"): TaskStatus,
    (TaskQuery, "priority"): TaskPriority,
    (SmsQuery, "direction"): SmsDirection,
    (SmsQuery, "status"): SmsStatus,
    (SmsQuery, "intent"): SmsIntent,
    (CampaignQuery, "status"): CampaignStatus,
    (DeliveryQuery, "status"): DeliveryStatus,
    (AuditQuery, "outcome"): AuditOutcome,
    (MembershipQuery, "role"): Role,
}


def test_every_time_filter_is_known() -> None:
    # Nine bounds today; a new one is covered by the tests below without listing it.
    assert len(TIME_FILTERS) == 9
    assert (AuditQuery, "occurred_from") in TIME_FILTERS


@pytest.mark.parametrize(("query", "name"), TIME_FILTERS, ids=lambda v: getattr(v, "__name__", v))
def test_a_naive_time_filter_is_a_validation_error_naming_it(
    query: type[ListQuery], name: str
) -> None:
    with pytest.raises(ValidationError) as info:
        query(**{name: datetime(2026, 12, 1)})  # naive on purpose
    assert info.value.field == name
    assert "UTC offset" in info.value.detail
    with pytest.raises(ValidationError) as info:
        query(**{name: "2026-12-01T00:00:00Z"})
    assert info.value.field == name
    aware = query(**{name: datetime(2026, 12, 1, tzinfo=UTC)})
    assert getattr(aware, name) == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "name"), list(ENUM_FILTERS), ids=lambda v: getattr(v, "__name__", v)
)
def test_an_enum_filter_takes_only_the_enums_values(query: type[ListQuery], name: str) -> None:
    choices = ENUM_FILTERS[(query, name)]
    for member in choices:
        assert getattr(query(**{name: member.value}), name) == member.value
        assert getattr(query(**{name: member}), name) is member
    for bad in ("bogus", "", member.value.upper() + "X", 3):
        with pytest.raises(ValidationError) as info:
            query(**{name: bad})
        assert info.value.field == name
        assert "must be one of" in info.value.detail


def test_every_filter_on_an_enum_attribute_is_checked() -> None:
    # Each equality filter on an enum attribute of the listed entity must be in
    # ENUM_FILTERS, so a new one cannot silently accept typos.
    listed = {
        ContactQuery: entities.Contact,
        TouchpointQuery: entities.Touchpoint,
        BookingQuery: entities.Booking,
        TaskQuery: entities.Task,
        SmsQuery: entities.SmsMessage,
        CampaignQuery: entities.EmailCampaign,
        DeliveryQuery: entities.CampaignDelivery,
        AuditQuery: entities.AuditEntry,
        MembershipQuery: entities.Membership,
    }
    unchecked = []
    for query in _query_classes(ListQuery):
        annotations = typing.get_type_hints(listed[query]) if query in listed else {}
        for field in attrs.fields(query):
            spec = field.metadata.get("filter")
            if spec is None or spec.op is not Op.EQ:
                continue
            kind = annotations.get((spec.columns or (field.name,))[0])
            is_enum = isinstance(kind, type) and issubclass(kind, enum.Enum)
            if is_enum and (query, field.name) not in ENUM_FILTERS:
                unchecked.append(f"{query.__name__}.{field.name}")
    assert not unchecked
    assert len(ENUM_FILTERS) == 13


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"search": "a\x00b"}, "search"),
        ({"email": "x" * (MAX_FILTER_LENGTH + 1)}, "email"),
        ({"tag": 5}, "tag"),
        ({"warmness_min": "10"}, "warmness_min"),
        ({"warmness_max": True}, "warmness_max"),
        ({"email_opt_in": "yes"}, "email_opt_in"),
    ],
)
def test_other_bad_filter_values_are_validation_errors(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        ContactQuery(**changes)  # type: ignore[arg-type]
    assert info.value.field == field
