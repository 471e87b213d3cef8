"""An audit entry edited in the database is named in a clear answer, never a 500.

SQLite's append-only triggers are dropped, as someone with database access
could, and one entry's ``outcome`` is set to a value the entity
cannot hold.  Listing the trail then answers 409 naming the entry; with the
edited entry at the head of the chain nothing can be audited, so requests of
that location are refused the same way and nothing they would write is stored.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator

import pytest
from crm_domain.clock import FixedClock
from crm_domain.queries import ContactQuery

from crm_http_litestar import Settings
from crm_http_litestar.testing import World, open_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def tampered_world(settings: Settings, clock: FixedClock) -> AsyncIterator[World]:
    """The demo world on SQLite (the in-process app; PostgreSQL: test_sql_audit_undecodable)."""
    async for world in open_world(settings, clock, contacts_per_location=3):
        yield world


def _edit(settings: Settings, sql: str, *args: str) -> list[tuple[str, int]]:
    """Run an ``UPDATE … RETURNING id, sequence`` on the audit log, past its triggers."""
    path = settings.database_url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(path)) as db:
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'hipaa_audit_log'"
        ).fetchall():
            db.execute(f'DROP TRIGGER "{name}"')
        rows = [(r[0], r[1]) for r in db.execute(sql, args).fetchall()]
        db.commit()
        return rows


def _sequence_sql(which: str) -> str:
    order = "DESC" if which == "head" else "ASC"
    return (
        "UPDATE hipaa_audit_log SET outcome = 'failure' WHERE id = ("
        f"SELECT id FROM hipaa_audit_log WHERE tenant_id = ? ORDER BY sequence {order} "
        "LIMIT 1) RETURNING id, sequence"
    )


async def test_a_tampered_entry_in_the_middle_is_named_by_the_listing(
    tampered_world: World, settings: Settings
) -> None:
    world = tampered_world
    headers = await world.headers("owner")
    [(entry_id, sequence)] = _edit(settings, _sequence_sql("first"), world.locations["sydney"])
    listed = await world.client.get("/api/admin/audit", headers=headers, params={"limit": 200})
    assert listed.status_code == 409, listed.text
    detail = listed.json()["detail"]
    assert entry_id in detail and f"sequence {sequence}" in detail and "failure" in detail
    assert "crm audit verify" in detail
    # The rest of the location still works, and is still audited.
    contacts = await world.client.get("/api/contacts", headers=headers)
    assert contacts.status_code == 200, contacts.text


async def test_a_tampered_head_refuses_the_locations_requests_and_stores_nothing(
    tampered_world: World, settings: Settings
) -> None:
    world = tampered_world
    headers = await world.headers("owner")
    before = (await world.client.get("/api/contacts", headers=headers)).json()["items"]
    [(entry_id, _)] = _edit(settings, _sequence_sql("head"), world.locations["sydney"])
    created = await world.client.post(
        "/api/contacts",
        headers=headers,
        json={"first_name": "Unaudited", "email": "unaudited@example.org"},
    )
    assert created.status_code == 409, created.text
    assert entry_id in created.json()["detail"]
    read = await world.client.get("/api/contacts", headers=headers)
    assert read.status_code == 409 and entry_id in read.json()["detail"]
    # Another location's chain is intact: it keeps working, and shows nothing was stored.
    other = await world.headers("owner", "melbourne")
    assert (await world.client.get("/api/contacts", headers=other)).status_code == 200
    async with world.gateway.unit_of_work(world.locations["sydney"]) as uow:
        stored = await uow.contacts.list(ContactQuery(limit=200))
    assert len(stored.items) == len(before)
    assert all(c.first_name != "Unaudited" for c in stored.items)
