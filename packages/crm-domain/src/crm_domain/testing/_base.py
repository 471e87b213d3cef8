"""The base class of every conformance class, and the comparison helper."""

from __future__ import annotations

import enum
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

import attrs
import pytest

from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.testing._world import World


class GatewayKit:
    """Base of the conformance classes.

    Subclasses (the adapter author's ``Test…`` class) provide an async
    ``gateway`` fixture yielding a fresh, empty, migrated gateway.  The kit runs
    on asyncio; override ``anyio_backend`` to run it on another backend.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    @pytest.fixture
    def anyio_backend(self) -> str:
        """Run the kit on asyncio."""
        return "asyncio"

    @pytest.fixture
    async def world(self, gateway: DatabaseGateway) -> World:
        """Two stored locations in the gateway under test, and entity factories."""
        return await World(gateway).setup()


#: More pages than any kit data set needs: a cursor that never ends fails instead of hanging.
MAX_PAGES = 200


def _same(path: str, actual: Any, expected: Any, problems: list[str]) -> None:
    if attrs.has(type(expected)):
        if type(actual) is not type(expected):
            problems.append(f"{path}: {type(actual).__name__} is not {type(expected).__name__}")
            return
        for field in attrs.fields(type(expected)):
            _same(
                f"{path}.{field.name}",
                getattr(actual, field.name),
                getattr(expected, field.name),
                problems,
            )
        return
    if isinstance(expected, datetime):
        if not isinstance(actual, datetime) or actual.utcoffset() is None:
            problems.append(f"{path}: {actual!r} is not an aware datetime")
        elif actual.utcoffset() != timedelta(0):
            # The library's one timezone rule: every time it returns is UTC.
            problems.append(f"{path}: {actual.isoformat()} is not in UTC")
        elif actual != expected:
            problems.append(
                f"{path}: {actual.isoformat()} is not the instant {expected.isoformat()}"
            )
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(actual) != set(expected):
            problems.append(f"{path}: {actual!r} != {expected!r}")
            return
        for key in expected:
            _same(f"{path}[{key!r}]", actual[key], expected[key], problems)
        return
    if isinstance(expected, tuple | list):
        if not isinstance(actual, tuple | list) or len(actual) != len(expected):
            problems.append(f"{path}: {actual!r} != {expected!r}")
            return
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _same(f"{path}[{i}]", a, e, problems)
        return
    # bool is an int and an enum member equals its value: compare the kinds too.
    kind_differs = isinstance(expected, bool) != isinstance(actual, bool) or (
        isinstance(expected, enum.Enum) and not isinstance(actual, type(expected))
    )
    if isinstance(expected, date) and type(actual) is not type(expected):
        kind_differs = True
    if kind_differs or actual != expected:
        problems.append(f"{path}: {actual!r} != {expected!r}")


def assert_same(actual: Any, expected: Any) -> None:
    """Assert two entities are equal field by field, naming differences.

    Datetimes compare as instants, and ``actual``'s must be in UTC (the
    library's timezone rule: entities normalise every time to UTC).
    """
    problems: list[str] = []
    _same(type(expected).__name__, actual, expected, problems)
    assert not problems, "stored entity differs:\n  " + "\n  ".join(problems)


__all__ = ["MAX_PAGES", "GatewayKit", "assert_same"]
