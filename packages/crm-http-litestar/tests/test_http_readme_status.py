"""The README's "What works today" section says what the server really serves.

It lists built routes and routes that are not built yet; this test reads both
tables and checks them against the app, so the README cannot promise what
answers 404, nor hide what ships.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crm_http_litestar.testing import World

README = Path(__file__).resolve().parents[3] / "README.md"
_ROUTE = re.compile(r"`(/[^`…]*)`")
_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def _section() -> tuple[set[str], set[str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## What works today")
    end = text.index("\n## ", start + 1)
    built_part, _, coming_part = text[start:end].partition("**Not built yet**")
    return set(_ROUTE.findall(built_part)), set(_ROUTE.findall(coming_part))


def _served(world: World) -> set[str]:
    return {_PARAM.sub(r"{\1}", route.path) for route in world.app.routes}


def test_readme_lists_routes_in_both_tables() -> None:
    built, coming = _section()
    assert "/api/contacts" in built
    assert "/webhooks/wix" in built
    assert not built & coming


@pytest.mark.anyio
async def test_routes_the_readme_calls_built_are_served(world: World) -> None:
    built, _ = _section()
    missing = sorted(route for route in built if route not in _served(world))
    assert not missing, f"README lists as built but the app does not serve: {missing}"


@pytest.mark.anyio
async def test_routes_the_readme_calls_not_built_answer_404(world: World) -> None:
    _, coming = _section()
    served = _served(world)
    now_served = sorted(route for route in coming if route in served)
    assert not now_served, f"served now: move them to the README's built table: {now_served}"
    headers = await world.headers("owner")
    for route in sorted(coming):
        response = await world.client.get(route.replace("{id}", "01ABC"), headers=headers)
        assert response.status_code == 404, route
