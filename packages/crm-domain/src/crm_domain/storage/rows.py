"""Helpers for stores that filter and page rows themselves (memory, object stores).

A SQL store pushes the same work down into ``WHERE … ORDER BY id DESC
LIMIT``; these give the reference semantics for a store that holds its rows
as entities.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crm_domain.pagination import Page, page_from_rows
from crm_domain.queries import ListQuery, matches


def matching(rows: Iterable[Any], tenant: str | None, query: ListQuery) -> list[Any]:
    """The rows of ``tenant`` (any when ``None``) that ``query``'s filters match."""
    return [r for r in rows if (tenant is None or r.tenant_id == tenant) and matches(query, r)]


def page_of(rows: list[Any], query: ListQuery) -> Page[Any]:
    """Order ``rows`` by id descending, skip to the cursor and cut one page."""
    rows.sort(key=lambda r: r.id, reverse=True)
    after = query.after_id
    if after is not None:
        rows = [r for r in rows if r.id < after]
    return page_from_rows(rows[: query.limit + 1], query.limit)


__all__ = ["matching", "page_of"]
