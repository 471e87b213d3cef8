"""ContactService on the in-memory gateway: end state of rows, outbox and audit chain."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from crm_domain.audit import DirectAuditRecorder
from crm_domain.bootstrap import bootstrap
from crm_domain.context import Context
from crm_domain.entities import AuditEntry, AuditOutcome, Role, TaskPriority, TouchpointKind
from crm_domain.errors import Conflict, NotFound, PermissionDenied, Unavailable, ValidationError
from crm_domain.memory import RuleOfThumbAI
from crm_domain.policies import Authorizer, StaticGrants
from crm_domain.ports.ai import (
    CampaignBrief,
    CampaignDraftResult,
    ContactDraft,
    Enrichment,
    Insights,
    LeadProfile,
    ReportRequest,
    ScheduleRequest,
    Slot,
    SmsContext,
    SmsIntentResult,
    TaskPriorityResult,
    WarmnessAssessment,
    WarmnessBand,
)
from crm_domain.ports.analytics import MetricRow
from crm_domain.queries import ContactQuery
from crm_domain.services import (
    AddTouchpoint,
    ContactService,
    CreateBooking,
    CreateContact,
    UpdateContact,
)

pytestmark = pytest.mark.anyio


async def test_create_normalises_stores_emits_and_audits(world: Any) -> None:
    ctx = world.ctx(Role.RECEPTIONIST)
    contact = await world.services.contacts.create(
        ctx,
        CreateContact(
            first_name="Zoë",
            last_name="Ng",
            email=" Zoe.Ng@Example.COM ",
            phone="0412 345 678",
            source="website",
            tags=("MRI", " knee "),
            sms_opt_in=True,
        ),
    )
    assert contact.email == "zoe.ng@example.com"
    assert contact.phone == "+61412345678"
    assert contact.tags == ("knee", "mri")
    assert contact.consent_updated_at == world.clock.now()

    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert await uow.contacts.get(contact.id) == contact

    [event] = await world.events("ContactCreated")
    assert event.tenant_id == world.sydney.id
    assert event.aggregate_id == contact.id
    assert event.payload["source"] == "website"
    # Payloads carry ids and facts only: no name, email or phone.
    flat = repr(event.payload)
    assert "Zo" not in flat
    assert "example.com" not in flat
    assert "412345678" not in flat

    entry = (await world.audit())[-1]
    assert (entry.action, entry.resource_type, entry.resource_id) == (
        "CREATE",
        "contact",
        contact.id,
    )
    assert entry.outcome is AuditOutcome.SUCCESS
    assert entry.user_id == ctx.user_id
    assert (entry.ip_address, entry.user_agent, entry.request_id) == (
        "127.0.0.1",
        "pytest",
        ctx.request_id,
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"first_name": "A", "email": "not-an-email"}, "email"),
        ({"first_name": "A", "phone": "12"}, "phone"),
        ({"first_name": "A"}, "email"),
        ({"first_name": "", "phone": "+61412345678"}, "first_name"),
        ({"first_name": "A", "phone": "+61412345678", "warmness": 101}, "warmness"),
        ({"first_name": "A", "phone": "+61412345678", "source": "fax"}, "source"),
    ],
)
async def test_invalid_input_names_the_field_and_stores_nothing(
    world: Any, fields: dict[str, Any], field: str
) -> None:
    before_events = await world.events()
    before_audit = await world.audit()
    with pytest.raises(ValidationError) as caught:
        await world.services.contacts.create(world.ctx(), CreateContact(**fields))
    assert caught.value.field == field
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert await uow.contacts.count(ContactQuery()) == 0
    assert await world.events() == before_events
    # The failed call is audited once, without echoing the input.
    after = await world.audit()
    assert len(after) == len(before_audit) + 1
    assert after[-1].outcome is AuditOutcome.FAILED
    assert after[-1].detail == f"ValidationError: {field}"


async def test_duplicate_email_is_a_conflict_unless_allowed(world: Any) -> None:
    contacts = world.services.contacts
    first = await contacts.create(world.ctx(), CreateContact(first_name="A", email="a@example.com"))
    with pytest.raises(Conflict) as caught:
        await contacts.create(world.ctx(), CreateContact(first_name="B", email="A@Example.com"))
    assert first.id in caught.value.detail
    second = await contacts.create(
        world.ctx(),
        CreateContact(first_name="B", email="a@example.com", allow_duplicate_email=True),
    )
    assert second.id != first.id
    # Another location may hold the same person.
    await contacts.create(
        world.ctx(location=world.melbourne), CreateContact(first_name="A", email="a@example.com")
    )


async def test_get_is_audited_before_returning(world: Any) -> None:
    contact_id = await world.new_contact()
    ctx = world.ctx(Role.READONLY)
    contact = await world.services.contacts.get(ctx, contact_id)
    assert contact.id == contact_id
    entry = (await world.audit())[-1]
    assert (entry.action, entry.resource_id, entry.outcome) == ("READ", contact_id, "success")


class _DownRecorder:
    """An audit store that is down: nothing can be made durable."""

    def __init__(self) -> None:
        self.attempts: list[AuditEntry] = []

    async def record(self, entry: AuditEntry) -> None:
        self.attempts.append(entry)
        raise Unavailable("audit store is down")


async def test_a_read_that_cannot_be_audited_returns_no_data(world: Any) -> None:
    contact_id = await world.new_contact()
    recorder = _DownRecorder()
    service = ContactService(
        world.gateway, Authorizer(StaticGrants()), recorder, world.clock, world.ids
    )
    with pytest.raises(Unavailable):
        await service.get(world.ctx(), contact_id)
    assert [e.action for e in recorder.attempts] == ["READ"]


async def test_another_locations_contact_is_not_found_and_audited(world: Any) -> None:
    melbourne_contact = await world.new_contact(world.melbourne)
    ctx = world.ctx(Role.ADMIN)
    with pytest.raises(NotFound):
        await world.services.contacts.get(ctx, melbourne_contact)
    with pytest.raises(NotFound):
        await world.services.contacts.update(
            ctx, UpdateContact(contact_id=melbourne_contact, first_name="X")
        )
    with pytest.raises(NotFound):
        await world.services.contacts.delete(ctx, melbourne_contact)
    failed = [e for e in await world.audit() if e.resource_id == melbourne_contact]
    assert [(e.action, e.outcome) for e in failed] == [
        ("READ", "failed"),
        ("UPDATE", "failed"),
        ("DELETE", "failed"),
    ]
    # Melbourne's data and chain are untouched.
    async with world.gateway.unit_of_work(world.melbourne.id) as uow:
        assert (await uow.contacts.get(melbourne_contact)).first_name == "Ada"
    assert [e.action for e in await world.audit(world.melbourne)] == ["CREATE", "CREATE"]


async def test_permission_denied_is_audited_and_changes_nothing(world: Any) -> None:
    contact_id = await world.new_contact()
    with pytest.raises(PermissionDenied) as caught:
        await world.services.contacts.delete(world.ctx(Role.RECEPTIONIST), contact_id)
    assert "contacts:delete" in caught.value.detail
    entry = (await world.audit())[-1]
    assert (entry.action, entry.resource_id, entry.outcome) == ("DELETE", contact_id, "denied")
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        await uow.contacts.get(contact_id)
    assert "ContactDeleted" not in await world.event_names()


async def test_list_filters_and_pages_without_gaps(world: Any) -> None:
    ids = [await world.new_contact(first_name=f"P{i}", status="qualified") for i in range(5)]
    await world.new_contact(first_name="Other", status="lost")
    contacts = world.services.contacts
    seen: list[str] = []
    query = ContactQuery(status="qualified", limit=2)
    while True:
        page = await contacts.list(world.ctx(Role.READONLY), query)
        seen.extend(c.id for c in page.items)
        if page.next_cursor is None:
            break
        query = ContactQuery(status="qualified", limit=2, cursor=page.next_cursor)
    assert seen == sorted(ids, reverse=True)
    lists = [e for e in await world.audit() if e.action == "LIST"]
    assert [e.detail for e in lists] == ["2 returned", "2 returned", "1 returned"]


async def test_update_is_partial_and_stamps_consent(world: Any) -> None:
    contact_id = await world.new_contact(email="old@example.com")
    world.clock.advance(timedelta(hours=1))
    contacts = world.services.contacts
    updated = await contacts.update(
        world.ctx(Role.DOCTOR),
        UpdateContact(contact_id=contact_id, email="New@Example.com", sms_opt_in=True),
    )
    assert updated.email == "new@example.com"
    assert updated.first_name == "Ada"
    assert updated.phone == "+61412345678"
    assert updated.sms_opt_in is True
    assert updated.consent_updated_at == world.clock.now()
    assert updated.updated_at == world.clock.now()
    [event] = await world.events("ContactUpdated")
    assert event.payload["changed"] == ["email", "sms_opt_in"]

    # Clearing the email keeps the contact reachable by phone; clearing both is refused.
    cleared = await contacts.update(world.ctx(), UpdateContact(contact_id=contact_id, email=None))
    assert cleared.email is None
    with pytest.raises(ValidationError) as caught:
        await contacts.update(world.ctx(), UpdateContact(contact_id=contact_id, phone=None))
    assert caught.value.field == "email"
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert (await uow.contacts.get(contact_id)).phone == "+61412345678"


async def test_update_without_change_emits_nothing(world: Any) -> None:
    contact_id = await world.new_contact()
    before = await world.event_names()
    audit_before = len(await world.audit())
    same = await world.services.contacts.update(
        world.ctx(), UpdateContact(contact_id=contact_id, first_name="Ada")
    )
    assert same.first_name == "Ada"
    assert await world.event_names() == before
    assert len(await world.audit()) == audit_before + 1


async def test_delete_removes_contact_and_touchpoints(world: Any) -> None:
    contact_id = await world.new_contact()
    await world.services.contacts.add_touchpoint(
        world.ctx(), AddTouchpoint(contact_id=contact_id, kind="note", channel="phone")
    )
    await world.services.contacts.delete(world.ctx(), contact_id)
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        with pytest.raises(NotFound):
            await uow.contacts.get(contact_id)
        assert (await uow.touchpoints.list(_touchpoints_of(contact_id))).items == ()
    assert (await world.event_names())[-1] == "ContactDeleted"


def _touchpoints_of(contact_id: str) -> Any:
    from crm_domain.queries import TouchpointQuery

    return TouchpointQuery(contact_id=contact_id)


async def test_a_contact_with_bookings_cannot_be_deleted(world: Any) -> None:
    contact_id = await world.new_contact()
    start = world.clock.now() + timedelta(days=1)
    await world.services.bookings.create(
        world.ctx(),
        CreateBooking(
            contact_id=contact_id,
            service_type="MRI",
            starts_at=start,
            ends_at=start + timedelta(minutes=30),
        ),
    )
    with pytest.raises(Conflict):
        await world.services.contacts.delete(world.ctx(), contact_id)


async def test_touchpoints(world: Any) -> None:
    contact_id = await world.new_contact()
    contacts = world.services.contacts
    when = world.clock.now() - timedelta(days=1)
    first = await contacts.add_touchpoint(
        world.ctx(Role.RECEPTIONIST),
        AddTouchpoint(
            contact_id=contact_id,
            kind="ad_click",
            channel="web",
            occurred_at=when,
            metadata={"utm_source": "meta"},
        ),
    )
    second = await contacts.add_touchpoint(
        world.ctx(Role.RECEPTIONIST), AddTouchpoint(contact_id=contact_id, kind="call_inbound")
    )
    assert first.occurred_at == when
    assert second.occurred_at == world.clock.now()
    page = await contacts.list_touchpoints(world.ctx(Role.READONLY), contact_id)
    assert [t.id for t in page.items] == [second.id, first.id]
    assert page.items[1].kind is TouchpointKind.AD_CLICK
    [event, _] = await world.events("TouchpointAdded")
    assert event.payload == {
        "contact_id": contact_id,
        "touchpoint_id": first.id,
        "kind": "ad_click",
        "channel": "web",
        "actor_user_id": "user-receptionist",
        "request_id": event.payload["request_id"],
    }
    with pytest.raises(NotFound):
        await contacts.list_touchpoints(world.ctx(), "no-such-contact")
    with pytest.raises(NotFound):
        await contacts.add_touchpoint(world.ctx(), AddTouchpoint(contact_id="nope", kind="note"))
    with pytest.raises(ValidationError) as caught:
        await contacts.add_touchpoint(world.ctx(), AddTouchpoint(contact_id=contact_id, kind="x"))
    assert caught.value.field == "kind"


async def _campaign(world: Any, location: Any) -> str:
    """A draft email campaign of ``location``, stored through the gateway (no service yet)."""
    from crm_domain.entities import EmailCampaign

    now = world.clock.now()
    campaign = EmailCampaign(
        id=world.ids.new_id(),
        tenant_id=location.id,
        name="Spring",
        subject="Hello",
        body_html="<p>Hi</p>",
        body_text="Hi",
        created_at=now,
        updated_at=now,
    )
    async with world.gateway.unit_of_work(location.id) as uow:
        await uow.campaigns.add(campaign)
        await uow.commit()
    return campaign.id


async def test_touchpoint_campaign_must_be_this_locations(world: Any) -> None:
    contact_id = await world.new_contact()
    contacts = world.services.contacts
    ours = await _campaign(world, world.sydney)
    theirs = await _campaign(world, world.melbourne)
    tagged = await contacts.add_touchpoint(
        world.ctx(), AddTouchpoint(contact_id=contact_id, kind="email_opened", campaign_id=ours)
    )
    assert tagged.campaign_id == ours
    audit_before = len(await world.audit())
    details = []
    for campaign_id in (theirs, "01JZZZZZZZZZZZZZZZZZZZZZZZ"):
        with pytest.raises(NotFound) as caught:
            await contacts.add_touchpoint(
                world.ctx(),
                AddTouchpoint(contact_id=contact_id, kind="email_opened", campaign_id=campaign_id),
            )
        assert caught.value.field == "campaign_id"
        details.append(caught.value.detail.replace(campaign_id, "<id>"))
    assert details == ["campaign_id: campaign '<id>' not found"] * 2
    page = await contacts.list_touchpoints(world.ctx(), contact_id)
    assert [t.id for t in page.items] == [tagged.id]
    failures = (await world.audit())[audit_before:]
    assert [(e.resource_type, e.outcome.value) for e in failures[:2]] == [
        ("touchpoint", "failed")
    ] * 2


class _ScoringAI:
    """A deterministic AI provider: scores 77 and title-cases names."""

    name = "scoring"

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.profiles: list[LeadProfile] = []
        self.drafts: list[ContactDraft] = []

    async def analyze_warmness(self, profile: LeadProfile, now: datetime) -> WarmnessAssessment:
        self.profiles.append(profile)
        if self.down:
            raise Unavailable("ai down")
        return WarmnessAssessment(
            score=77,
            band=WarmnessBand.HOT,
            reasons=("came from the website",),
            next_best_action="call",
            provider=self.name,
        )

    async def enrich_contact(self, draft: ContactDraft) -> Enrichment:
        self.drafts.append(draft)
        return Enrichment(
            first_name=(draft.first_name or "").title(),
            last_name=(draft.last_name or "").title() or None,
            email=None,
            phone=None,
            source="referral",
            service_interest="ct",
        )

    async def detect_sms_intent(self, text: str, context: SmsContext) -> SmsIntentResult:
        raise Unavailable("not used")

    async def optimize_schedule(self, request: ScheduleRequest) -> tuple[Slot, ...]:
        raise Unavailable("not used")

    async def generate_campaign(self, brief: CampaignBrief) -> CampaignDraftResult:
        raise Unavailable("not used")

    async def generate_insights(
        self, rows: dict[str, tuple[MetricRow, ...]], focus: str | None
    ) -> Insights:
        raise Unavailable("not used")

    async def parse_report_query(
        self, question: str, now: datetime, timezone: str
    ) -> ReportRequest:
        raise Unavailable("not used")

    async def prioritize_task(self, title: str, profile: LeadProfile | None) -> TaskPriorityResult:
        return TaskPriorityResult(priority=TaskPriority.NORMAL, reason="", provider=self.name)


def _service_with(world: Any, ai: _ScoringAI) -> ContactService:
    return ContactService(
        world.gateway,
        world.services.authorizer,
        DirectAuditRecorder(world.gateway),
        world.clock,
        world.ids,
        ai=ai,
    )


async def test_ai_scores_from_a_phi_free_profile(world: Any) -> None:
    ai = _ScoringAI()
    service = _service_with(world, ai)
    contact = await service.create(
        world.ctx(), CreateContact(first_name="jane", email="jane@example.com", source="website")
    )
    assert contact.warmness == 77
    assert contact.warmness_reasons == ("came from the website",)
    assert contact.first_name == "jane"  # no enrichment: the location has no BAA
    assert ai.drafts == []
    [profile] = ai.profiles
    assert profile.has_email and not profile.has_phone
    # Given warmness is kept and not re-scored.
    kept = await service.create(
        world.ctx(), CreateContact(first_name="K", phone="+61412345678", warmness=5)
    )
    assert kept.warmness == 5
    assert len(ai.profiles) == 1


async def test_ai_enriches_only_with_phi_allowed_and_failure_is_harmless(world: Any) -> None:
    from crm_domain.entities import LocationSettings
    from crm_domain.services import UpdateLocation

    await world.services.access.update_location(
        world.ctx(), UpdateLocation(settings=LocationSettings(ai_phi_allowed=True))
    )
    ai = _ScoringAI(down=True)
    service = _service_with(world, ai)
    contact = await service.create(
        world.ctx(), CreateContact(first_name="jane", last_name="doe", phone="0412345678")
    )
    assert (contact.first_name, contact.last_name) == ("Jane", "Doe")
    assert contact.source.value == "referral"
    assert contact.service_interest == "ct"
    assert contact.warmness == 0  # scoring was down: the default stands


class _ConsentWithdrawnMeanwhile(RuleOfThumbAI):
    """A provider during whose (slow) scoring the patient texts STOP: the race to lose."""

    def __init__(self, world: Any) -> None:
        super().__init__()
        self.world = world
        self.contact_id = ""

    async def analyze_warmness(self, profile: Any, now: Any) -> Any:
        if self.contact_id:
            contact_id, self.contact_id = self.contact_id, ""
            await self.world.services.contacts.update(
                self.world.ctx(), UpdateContact(contact_id=contact_id, sms_opt_in=False)
            )
        return await super().analyze_warmness(profile, now)


async def test_a_consent_withdrawn_while_warmness_is_computed_is_not_written_back(
    world: Any,
) -> None:
    ai = _ConsentWithdrawnMeanwhile(world)
    world.services = bootstrap(world.gateway, clock=world.clock, ids=world.ids, ai=ai)
    contacts = world.services.contacts
    created = await contacts.create(
        world.ctx(), CreateContact(first_name="Ada", phone="0412 345 678", sms_opt_in=True)
    )
    ai.contact_id = created.id
    # Engagement since the last score, so the new score differs and is written.
    for kind in ("form_submit", "ad_click"):
        await contacts.add_touchpoint(
            world.ctx(), AddTouchpoint(contact_id=created.id, kind=kind, channel="web")
        )
    with pytest.raises(Conflict):
        await contacts.rescore_warmness(Context.system(world.sydney.id), created.id, event_id="e1")
    assert (await contacts.get(world.ctx(), created.id)).sms_opt_in is False
    # The outbox's retry scores the fresh contact (the receipt was rolled back too).
    rescored = await contacts.rescore_warmness(
        Context.system(world.sydney.id), created.id, event_id="e1"
    )
    assert rescored.sms_opt_in is False and rescored.warmness != created.warmness
    stored = await contacts.get(world.ctx(), created.id)
    assert (stored.sms_opt_in, stored.warmness) == (False, rescored.warmness)
