"""Queries: declarative filters, reference matching and opaque cursors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_domain.entities import Contact
from crm_domain.errors import ValidationError
from crm_domain.pagination import page_from_rows
from crm_domain.queries import (
    MAX_LIMIT,
    ContactQuery,
    Op,
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
