"""Entities ⇄ JSON bytes for the object store (one cattrs converter, at this edge only)."""

from __future__ import annotations

import enum
import json
from datetime import date, datetime
from typing import Any, TypeVar

import cattrs

T = TypeVar("T")


def make_objectstore_converter() -> cattrs.Converter:
    """JSON-ready data: ISO 8601 datetimes (offset kept), ISO dates, enums by value."""
    conv = cattrs.Converter()
    conv.register_unstructure_hook(datetime, datetime.isoformat)
    conv.register_structure_hook(datetime, lambda v, _t: datetime.fromisoformat(v))
    conv.register_unstructure_hook(date, date.isoformat)
    conv.register_structure_hook(date, lambda v, _t: date.fromisoformat(v))
    conv.register_unstructure_hook(enum.Enum, lambda v: v.value)
    conv.register_unstructure_hook(enum.StrEnum, lambda v: v.value)
    # Rule condition values are any JSON scalar: keep them as stored.
    conv.register_structure_hook(str | int | float | bool | None, lambda v, _t: v)
    return conv


_converter = make_objectstore_converter()


def encode(entity: Any) -> bytes:
    """The stored bytes of an entity."""
    data = _converter.unstructure(entity)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def decode(cls: type[T], value: bytes) -> T:
    """The entity of ``cls`` stored in ``value``."""
    return _converter.structure(json.loads(value), cls)
