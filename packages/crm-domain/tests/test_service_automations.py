"""Automation rules: validation, CRUD and RBAC, the engine on the outbox, depth limit."""

from __future__ import annotations

from typing import Any

import pytest

from crm_domain.entities import Role
from crm_domain.errors import NotFound, PermissionDenied, ValidationError
from crm_domain.memory import RecordingSmsSender
from crm_domain.queries import ContactQuery, TaskQuery
from crm_domain.services import CreateContact, CreateTask, RuleSpec
from crm_domain.services.automations import MAX_AUTOMATION_DEPTH

pytestmark = pytest.mark.anyio

CLINIC = "+61292000000"


class Engine:
    """The world with SMS wired, and a relay step handing committed events to the handlers."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.sender = RecordingSmsSender("clicksend")
        self.services = world.wire_sms(self.sender, {"sydney": CLINIC})
        self.automations = world.services.automations
        assert self.automations is not None

    async def relay(self, *, redeliver: bool = False) -> int:
        """Relay until the outbox is empty; return how many messages were handled."""
        return len(await self.world.relay(deliveries=2 if redeliver else 1))

    async def tasks(self) -> list[Any]:
        page = await self.services.tasks.list(self.world.ctx(), TaskQuery(limit=100))
        return list(page.items)


@pytest.fixture
def engine(world: Any) -> Engine:
    return Engine(world)


def _welcome(**overrides: Any) -> RuleSpec:
    fields: dict[str, Any] = {
        "name": "Welcome web leads",
        "trigger": "ContactCreated",
        "conditions": [{"field": "source", "op": "eq", "value": "website"}],
        "actions": [
            {"kind": "create_task", "params": {"title": "Call the new lead", "priority": "high"}},
            {"kind": "add_tag", "params": {"tag": "welcomed"}},
            {"kind": "send_sms", "params": {"body": "Welcome to the clinic"}},
        ],
    }
    fields.update(overrides)
    return RuleSpec(**fields)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"trigger": "DROP TABLE"}, "trigger"),
        ({"name": " "}, "name"),
        ({"conditions": [{"field": "phone", "op": "eq", "value": "x"}]}, "conditions[0].field"),
        ({"conditions": [{"field": "status", "op": "like", "value": "x"}]}, "conditions[0].op"),
        (
            {"conditions": [{"field": "warmness", "op": "gt", "value": "hot"}]},
            "conditions[0].value",
        ),
        ({"conditions": [{"field": "status", "op": "eq", "sql": "1=1"}]}, "conditions[0]"),
        ({"actions": []}, "actions"),
        ({"actions": [{"kind": "run_code", "params": {}}]}, "actions[0].kind"),
        ({"actions": [{"kind": "create_task", "params": {}}]}, "actions[0].params.title"),
        ({"actions": [{"kind": "add_tag", "params": {"tag": "a b"}}]}, "actions[0].params.tag"),
        (
            {"actions": [{"kind": "set_status", "params": {"status": "x"}}]},
            "actions[0].params.status",
        ),
    ],
)
async def test_a_bad_rule_is_refused_naming_the_field_and_nothing_is_stored(
    engine: Engine, overrides: dict[str, Any], field: str
) -> None:
    assert engine.automations is not None
    with pytest.raises(ValidationError) as refused:
        await engine.automations.create(engine.world.ctx(), _welcome(**overrides))
    assert refused.value.field == field
    assert (await engine.automations.list(engine.world.ctx())).items == ()


async def test_only_admins_manage_rules_and_other_locations_cannot_see_them(
    engine: Engine,
) -> None:
    assert engine.automations is not None
    with pytest.raises(PermissionDenied):
        await engine.automations.create(engine.world.ctx(Role.RECEPTIONIST), _welcome())
    rule = await engine.automations.create(engine.world.ctx(), _welcome())
    with pytest.raises(NotFound):
        await engine.automations.get(engine.world.ctx(location=engine.world.melbourne), rule.id)


async def test_a_matching_event_runs_every_action_once_and_audits_the_rule(
    engine: Engine,
) -> None:
    automations = engine.automations
    assert automations is not None
    ctx = engine.world.ctx()
    rule = await automations.create(ctx, _welcome())
    web = await engine.services.contacts.create(
        ctx,
        CreateContact(first_name="Ada", phone="0412 345 678", sms_opt_in=True, source="website"),
    )
    walk_in = await engine.services.contacts.create(
        ctx, CreateContact(first_name="Bo", email="bo@example.com", source="walk_in")
    )
    await engine.relay(redeliver=True)  # every message handed over twice
    tasks = await engine.tasks()
    assert [(t.title, t.contact_id) for t in tasks] == [("Call the new lead", web.id)]
    stored = await engine.services.contacts.get(ctx, web.id)
    assert stored.tags == ("welcomed",)
    assert (await engine.services.contacts.get(ctx, walk_in.id)).tags == ()
    assert [m.body for m in engine.sender.sent] == ["Welcome to the clinic"]
    entries = [
        e for e in await engine.world.audit() if e.resource_type == "automation" and e.detail
    ]
    ran = [e for e in entries if e.detail and e.detail.startswith(f"rule {rule.id} on")]
    assert len(ran) == 1 and ran[0].user_id is None
    assert "task" in (ran[0].detail or "") and "tag welcomed" in (ran[0].detail or "")


async def test_a_disabled_rule_does_nothing(engine: Engine) -> None:
    automations = engine.automations
    assert automations is not None
    ctx = engine.world.ctx()
    rule = await automations.create(ctx, _welcome())
    await automations.set_enabled(ctx, rule.id, False)
    await engine.services.contacts.create(
        ctx, CreateContact(first_name="Ada", email="ada@example.com", source="website")
    )
    await engine.relay()
    assert await engine.tasks() == []


async def test_a_rule_triggering_itself_stops_at_the_depth_limit(engine: Engine) -> None:
    automations = engine.automations
    assert automations is not None
    ctx = engine.world.ctx()
    await automations.create(
        ctx,
        RuleSpec(
            name="Echo",
            trigger="TaskCreated",
            actions=[{"kind": "create_task", "params": {"title": "echo"}}],
        ),
    )
    await engine.services.tasks.create(ctx, CreateTask(title="seed"))
    await engine.relay()
    titles = sorted(t.title for t in await engine.tasks())
    assert titles == ["echo"] * MAX_AUTOMATION_DEPTH + ["seed"]


async def test_dry_run_says_what_would_happen_and_writes_nothing(engine: Engine) -> None:
    automations = engine.automations
    assert automations is not None
    ctx = engine.world.ctx()
    yes = await automations.dry_run(ctx, _welcome(), {"source": "website"})
    no = await automations.dry_run(ctx, _welcome(), {"source": "walk_in"})
    assert yes.matched and len(yes.actions) == 3
    assert not no.matched and no.failed_conditions == ("source eq 'website'",)
    assert (await automations.list(ctx)).items == ()
    page = await engine.services.contacts.list(ctx, ContactQuery())
    assert page.items == ()
