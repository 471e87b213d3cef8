"""A page of a list and the cursor to the next one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

import attrs

from crm_domain.queries import encode_cursor

T = TypeVar("T")


class HasId(Protocol):
    """Anything with a string ``id``."""

    @property
    def id(self) -> str: ...


E = TypeVar("E", bound=HasId)


@attrs.frozen(slots=True)
class Page(Generic[T]):
    """Items of one page, newest first, and the cursor of the next page (``None`` at the end)."""

    items: tuple[T, ...]
    next_cursor: str | None = None


def page_from_rows(rows: Sequence[E], limit: int) -> Page[E]:
    """Build a page from up to ``limit + 1`` rows: an extra row proves a next page exists."""
    if len(rows) > limit:
        items = tuple(rows[:limit])
        return Page(items, encode_cursor(items[-1].id))
    return Page(tuple(rows), None)


__all__ = ["HasId", "Page", "page_from_rows"]
