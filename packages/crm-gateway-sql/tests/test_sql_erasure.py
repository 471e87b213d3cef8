"""Erasure and retention on real SQLite, with a Hypothesis property.

Property: after erasing a contact, no text column of any table holds its PHI
(names, email, phone, notes, booking and task text), another contact's data
is intact, and every audit chain still verifies — the erasure is one more
entry, never an edit.
"""

from __future__ import annotations

import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from crm_domain.bootstrap import Services, bootstrap
from crm_domain.clock import FixedClock, UlidFactory
from crm_domain.context import Context
from crm_domain.entities import Location
from crm_domain.errors import Conflict, NotFound
from crm_domain.services import (
    LEGAL_HOLD_TAG,
    AddTouchpoint,
    CreateBooking,
    CreateContact,
    CreateLocation,
    CreateTask,
    LifecycleService,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_gateway_sql import create_gateway, verify_all

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# Letters only, long enough that a chance match in an id or a hash is impossible.
names = st.text(alphabet="ABCDEFGHJKLMNPQRSTVWXYZ", min_size=12, max_size=16)


def lifecycle(services: Services) -> LifecycleService:
    return LifecycleService.of(services)


async def world(path: Path, clock: FixedClock) -> tuple[Services, Location]:
    gateway = create_gateway(f"sqlite+aiosqlite:///{path}")
    await gateway.migrate()
    services = bootstrap(gateway, clock=clock, ids=UlidFactory())
    place = await services.access.create_location(
        Context.system(""), CreateLocation(code="perth", name="Perth", timezone="Australia/Perth")
    )
    return services, place


async def patient(
    services: Services, ctx: Context, marker: str, n: int, *, tags: tuple[str, ...] = ()
) -> str:
    """A contact whose PHI carries ``marker`` (fields, touchpoint, booking notes, task)."""
    contact = await services.contacts.create(
        ctx,
        CreateContact(
            first_name=f"{marker}first",
            last_name=f"{marker}last",
            email=f"{marker.lower()}@example.com",
            phone=f"+6141{n:07d}",
            notes=f"allergic, says {marker}",
            service_interest=f"{marker} MRI",
            tags=tags,
        ),
    )
    await services.contacts.add_touchpoint(
        ctx, AddTouchpoint(contact_id=contact.id, kind="note", metadata={"said": marker})
    )
    start = NOW + timedelta(days=3, hours=n % 8)
    await services.bookings.create(
        ctx,
        CreateBooking(
            contact_id=contact.id,
            # A catalogue value, not the patient's: booking events carry it (see the report).
            service_type="MRI knee",
            starts_at=start,
            ends_at=start + timedelta(minutes=30),
            notes=f"{marker} claustrophobic",
        ),
    )
    await services.tasks.create(
        ctx, CreateTask(title=f"Call {marker}", contact_id=contact.id, description=marker)
    )
    return contact.id


def text_columns_holding(path: Path, needles: list[str]) -> list[str]:
    """``table.column`` of every text cell that contains one of ``needles``."""
    found: list[str] = []
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for _, column, kind, *_ in conn.execute(f'PRAGMA table_info("{table}")'):
                if kind.upper() in ("INTEGER", "BOOLEAN", "FLOAT", "REAL", "NUMERIC"):
                    continue
                for needle in needles:
                    hit = conn.execute(
                        f'SELECT 1 FROM "{table}" WHERE instr(lower(CAST("{column}" AS TEXT)), ?)',
                        (needle.lower(),),
                    ).fetchone()
                    if hit:
                        found.append(f"{table}.{column}")
    return found


@settings(max_examples=6, deadline=None)
@given(erased=names, kept=names)
def test_erasure_leaves_no_phi_anywhere_and_the_audit_verifies(erased: str, kept: str) -> None:
    if erased.lower() in kept.lower() or kept.lower() in erased.lower():
        return

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "crm.db"
            services, place = await world(path, FixedClock(NOW))
            try:
                ctx = Context.system(place.id, request_method="TEST", request_path="erasure")
                gone = await patient(services, ctx, erased, 1)
                stays = await patient(services, ctx, kept, 2)
                assert text_columns_holding(path, [erased]) != []

                erasure = await lifecycle(services).erase(ctx, gone)

                assert (erasure.touchpoints, erasure.bookings, erasure.tasks) == (1, 1, 1)
                assert text_columns_holding(path, [erased, "+61410000001"]) == []
                assert len(text_columns_holding(path, [kept])) >= 5
                assert (await services.contacts.get(ctx, stays)).first_name == f"{kept}first"
                with pytest.raises(NotFound):
                    await services.contacts.get(ctx, gone)
                assert await verify_all(services.gateway) is None
                with sqlite3.connect(path) as conn:
                    marker = conn.execute(
                        "SELECT outcome, detail FROM hipaa_audit_log "
                        "WHERE resource_id = ? AND action = 'DELETE'",
                        (gone,),
                    ).fetchall()
                assert marker == [("success", "erased on request: 1 touchpoints, 1 bookings, "
                                   "1 tasks, 0 messages")]  # fmt: skip
            finally:
                await services.gateway.close()

    anyio.run(run)


def test_legal_hold_refuses_erasure_and_purge_erases_only_what_retention_allows(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        clock = FixedClock(NOW)
        services, place = await world(tmp_path / "crm.db", clock)
        try:
            ctx = Context.system(place.id)
            held = await patient(services, ctx, "HOLDHOLDHOLD", 3, tags=(LEGAL_HOLD_TAG,))
            old = await patient(services, ctx, "OLDOLDOLDOLD", 4)
            with pytest.raises(Conflict):
                await lifecycle(services).erase(ctx, held)
            # Seven years and a bit later a new patient arrives; the old ones are due.
            clock.advance(timedelta(days=2555 + 30))
            recent = await patient(services, ctx, "NEWNEWNEWNEW", 5)
            report = await lifecycle(services).purge(ctx)
            assert report.erased == (old,)
            assert report.held == 1
            assert (await services.contacts.get(ctx, held)).id == held
            assert (await services.contacts.get(ctx, recent)).id == recent
            with pytest.raises(NotFound):
                await services.contacts.get(ctx, old)
            assert await verify_all(services.gateway) is None
        finally:
            await services.gateway.close()

    anyio.run(run)
