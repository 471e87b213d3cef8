"""A remote AI call never runs while the unit of work holds SQLite's write lock.

A model across the network can take seconds; a unit of work that has written
holds the file's write lock until it ends, so every other writer (the read
audit's group commit included) would wait behind the model.  The provider
below is a real :class:`~crm_domain.ports.ai.AIProvider` as far as the service
can tell; while it "thinks" it tries to take the write lock from a second
connection, without waiting.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import attrs
import pytest
from crm_domain.bootstrap import bootstrap
from crm_domain.context import Context
from crm_domain.memory import RuleOfThumbAI
from crm_domain.ports.ai import (
    LeadProfile,
    SmsContext,
    SmsIntentResult,
    TaskPriorityResult,
    WarmnessAssessment,
)
from crm_domain.queries import TaskQuery
from crm_domain.testing._world import World

from crm_gateway_sql.gateway import SqlGateway, create_gateway

pytestmark = pytest.mark.anyio


class LockProbingAI(RuleOfThumbAI):
    """Answers like the rule-of-thumb AI, noting whether the database was writable meanwhile."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self.writable_during_call: list[tuple[str, bool]] = []

    def _probe(self, call: str) -> None:
        probe = sqlite3.connect(self._path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            self.writable_during_call.append((call, True))
        except sqlite3.OperationalError:  # "database is locked": someone holds the writer
            self.writable_during_call.append((call, False))
        finally:
            probe.close()

    async def detect_sms_intent(self, text: str, context: SmsContext) -> SmsIntentResult:
        self._probe("intent")
        return await super().detect_sms_intent(text, context)

    async def prioritize_task(self, title: str, profile: LeadProfile | None) -> TaskPriorityResult:
        self._probe("priority")
        return await super().prioritize_task(title, profile)

    async def analyze_warmness(self, profile: LeadProfile, now: datetime) -> WarmnessAssessment:
        self._probe("warmness")
        assessment = await super().analyze_warmness(profile, now)
        # Other reasons than the stored ones, so the service has something to write.
        return attrs.evolve(assessment, reasons=("probe",), provider="probe")


async def test_rescoring_asks_the_provider_before_taking_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    gateway: SqlGateway = create_gateway(f"sqlite+aiosqlite:///{path}")
    try:
        await gateway.migrate()
        world = await World(gateway).setup()
        contact = world.contact(world.a.id)
        await world.save(world.a.id, contact)
        ai = LockProbingAI(path)
        services = bootstrap(gateway, ai=ai)
        ctx = Context.system(world.a.id)

        updated = await services.contacts.rescore_warmness(ctx, contact.id, event_id="evt-1")
        # The same event again (an at-least-once consumer): nothing changes.
        again = await services.contacts.rescore_warmness(ctx, contact.id, event_id="evt-1")

        assert updated.warmness_reasons == ("probe",)
        assert again == updated
        assert ai.writable_during_call == [("warmness", True), ("warmness", True)]
        async with gateway.unit_of_work(world.a.id) as uow:
            stored = await uow.contacts.get(contact.id)
        assert stored.warmness == updated.warmness
    finally:
        await gateway.close()


async def test_an_inbound_sms_is_understood_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    gateway: SqlGateway = create_gateway(f"sqlite+aiosqlite:///{path}")
    try:
        await gateway.migrate()
        world = await World(gateway).setup()
        contact = world.contact(world.a.id, phone="+61412345678", sms_opt_in=True)
        await world.save(world.a.id, contact)
        ai = LockProbingAI(path)
        services = bootstrap(gateway, ai=ai)
        ctx = Context.system(world.a.id)

        message = await services.sms.receive_inbound(
            ctx, "+61412345678", "+61292000000", "Can I bring my own music?", "clicksend", "m-1"
        )
        duplicate = await services.sms.receive_inbound(
            ctx, "+61412345678", "+61292000000", "Can I bring my own music?", "clicksend", "m-1"
        )

        # The intent and the reception task's priority were asked while nothing was held;
        # the duplicate delivery was recognised before asking anything.
        assert ai.writable_during_call == [("intent", True), ("priority", True)]
        assert duplicate.id == message.id
        async with gateway.unit_of_work(world.a.id) as uow:
            tasks = (await uow.tasks.list(TaskQuery(contact_id=contact.id))).items
        assert len(tasks) == 1
    finally:
        await gateway.close()
