"""Email campaigns: drafting, audience, life cycle, and the worker's exactly-once sending.

Wired on the in-memory gateway with the in-library :class:`RecordingMailer`;
assertions are on end state (rows, outbox, audit chain, what the mailer got).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from crm_domain.bootstrap import bootstrap
from crm_domain.entities import (
    AudienceFilter,
    CampaignStatus,
    DeliveryStatus,
    OutboxMessage,
    Role,
    TouchpointKind,
)
from crm_domain.errors import Conflict, NotFound, PermissionDenied, Unavailable, ValidationError
from crm_domain.memory import RecordingMailer
from crm_domain.ports.messaging import OutgoingEmail, SendResult
from crm_domain.queries import CampaignQuery, DeliveryQuery, TouchpointQuery
from crm_domain.services import (
    CampaignChanges,
    CampaignDraft,
    CreateContact,
    UpdateContact,
)
from crm_domain.services.campaigns import IN_DOUBT, NO_CONSENT

pytestmark = pytest.mark.anyio

DRAFT = CampaignDraft(
    name="Spring check-ups",
    subject="Hello {{ first_name }}",
    body_html="<p>Dear {{ first_name }},</p><script>alert(1)</script><p>Book now.</p>",
)


class Campaigns:
    """The world wired with a mailer, contacts, and the worker's step."""

    def __init__(self, world: Any, mailer: Any) -> None:
        self.world = world
        self.mailer = mailer
        world.services = bootstrap(world.gateway, clock=world.clock, ids=world.ids, mailer=mailer)
        self.services = world.services
        assert self.services.campaigns is not None
        self.campaigns = self.services.campaigns

    async def contact(
        self, name: str, *, opt_in: bool = True, email: str | None = None, tags: Any = ()
    ) -> str:
        created = await self.services.contacts.create(
            self.world.ctx(),
            CreateContact(
                first_name=name,
                email=email or f"{name.lower()}@example.org",
                email_opt_in=opt_in,
                tags=tags,
            ),
        )
        return created.id

    async def run_worker(self) -> list[Exception]:
        """Hand every committed ``CampaignSending`` event to its handlers, as the relay does."""
        failures: list[Exception] = []
        for event in await self.world.events("CampaignSending"):
            message = OutboxMessage(event=event, available_at=self.world.clock.now())
            for handler in self.services.event_handlers().get(event.name, ()):
                try:
                    await handler(message)
                except Exception as exc:  # the relay records it and retries later
                    failures.append(exc)
        return failures

    async def deliveries(self, campaign_id: str) -> list[Any]:
        async with self.world.gateway.unit_of_work(self.world.sydney.id) as uow:
            page = await uow.deliveries.list(DeliveryQuery(campaign_id=campaign_id, limit=200))
        return list(page.items)


@pytest.fixture
def campaigns(world: Any) -> Campaigns:
    return Campaigns(world, RecordingMailer("smtp"))


async def test_a_draft_is_sanitised_given_a_text_part_audited_and_evented(
    campaigns: Campaigns,
) -> None:
    world = campaigns.world
    created = await campaigns.campaigns.create(world.ctx(), DRAFT)
    assert created.status is CampaignStatus.DRAFT
    assert "<script>" not in created.body_html and "alert" not in created.body_html
    assert "{{ first_name }}" in created.body_html
    assert created.body_text == "Dear {{ first_name }},\nBook now."
    assert [e.name for e in await world.events("CampaignCreated")] == ["CampaignCreated"]
    entries = [e for e in await world.audit() if e.resource_type == "campaign"]
    assert [(e.action, e.resource_id) for e in entries] == [("CREATE", created.id)]


@pytest.mark.parametrize(
    ("draft", "field"),
    [
        (attrs.evolve(DRAFT, subject="Hi {{ first_name"), "subject"),
        (attrs.evolve(DRAFT, body_html="<p>{% for %}</p>"), "body_html"),
        (attrs.evolve(DRAFT, audience=AudienceFilter(warmness_min=101)), "audience.warmness_min"),
        (
            attrs.evolve(DRAFT, audience=AudienceFilter(warmness_min=60, warmness_max=40)),
            "audience.warmness_max",
        ),
        (attrs.evolve(DRAFT, body_html="<script>x</script>"), "body_html"),
    ],
)
async def test_bad_drafts_name_the_field_and_store_nothing(
    campaigns: Campaigns, draft: CampaignDraft, field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        await campaigns.campaigns.create(campaigns.world.ctx(), draft)
    assert raised.value.field == field
    async with campaigns.world.gateway.unit_of_work(campaigns.world.sydney.id) as uow:
        assert await uow.campaigns.count(CampaignQuery()) == 0


async def test_permissions_and_locations(campaigns: Campaigns) -> None:
    world = campaigns.world
    with pytest.raises(PermissionDenied):
        await campaigns.campaigns.create(world.ctx(Role.RECEPTIONIST), DRAFT)
    created = await campaigns.campaigns.create(world.ctx(), DRAFT)
    # A receptionist reads; only an admin sends; another location sees nothing.
    assert (
        await campaigns.campaigns.get(world.ctx(Role.RECEPTIONIST), created.id)
    ).id == created.id
    with pytest.raises(PermissionDenied):
        await campaigns.campaigns.send(world.ctx(Role.RECEPTIONIST), created.id)
    with pytest.raises(NotFound):
        await campaigns.campaigns.get(world.ctx(location=world.melbourne), created.id)
    with pytest.raises(NotFound):
        await campaigns.campaigns.send(world.ctx(location=world.melbourne), created.id)


async def test_preview_counts_only_the_audience_with_consent_and_email(
    campaigns: Campaigns,
) -> None:
    world = campaigns.world
    await campaigns.contact("Ada", tags=["mri"])
    await campaigns.contact("Bob", tags=["mri"], opt_in=False)
    await campaigns.contact("Cy")
    await world.new_contact(first_name="Dee", email=None)
    created = await campaigns.campaigns.create(
        world.ctx(), attrs.evolve(DRAFT, audience=AudienceFilter(tag="mri"))
    )
    preview = await campaigns.campaigns.preview(world.ctx(), created.id)
    assert preview.count == 1
    assert [c.first_name for c in preview.sample] == ["Ada"]
    everyone = await campaigns.campaigns.update(
        world.ctx(), created.id, CampaignChanges(audience=AudienceFilter())
    )
    assert (await campaigns.campaigns.preview(world.ctx(), everyone.id)).count == 2


async def test_send_delivers_each_recipient_once_with_touchpoints_and_counts(
    campaigns: Campaigns,
) -> None:
    world = campaigns.world
    ids = [await campaigns.contact(name) for name in ("Ada", "Bob", "Cy")]
    await campaigns.contact("Nope", opt_in=False)
    created = await campaigns.campaigns.create(world.ctx(), DRAFT)
    sending = await campaigns.campaigns.send(world.ctx(), created.id)
    assert sending.status is CampaignStatus.SENDING
    assert campaigns.mailer.sent == []  # the worker sends, not the request
    with pytest.raises(Conflict):
        await campaigns.campaigns.update(world.ctx(), created.id, CampaignChanges(name="x"))

    assert await campaigns.run_worker() == []
    assert await campaigns.run_worker() == []  # at-least-once events: nothing twice
    sent: list[OutgoingEmail] = campaigns.mailer.sent
    assert sorted(m.to for m in sent) == ["ada@example.org", "bob@example.org", "cy@example.org"]
    ada = next(m for m in sent if m.to == "ada@example.org")
    assert ada.subject == "Hello Ada"
    assert "Dear Ada," in ada.html and "Dear Ada," in ada.text
    assert "Sydney" in ada.text and "Unsubscribe: http" in ada.text
    assert ada.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert ada.headers["List-Unsubscribe"].startswith("<http")
    progress = await campaigns.campaigns.progress(world.ctx(), created.id)
    assert progress.campaign.status is CampaignStatus.COMPLETED
    assert progress.campaign.sent_count == 3
    assert progress.by_status["sent"] == 3
    for contact_id in ids:
        touchpoints = await campaigns.services.contacts.list_touchpoints(
            world.ctx(), contact_id, TouchpointQuery()
        )
        assert [(t.kind, t.campaign_id) for t in touchpoints.items] == [
            (TouchpointKind.EMAIL_SENT, created.id)
        ]


async def test_consent_is_checked_at_send_time(campaigns: Campaigns) -> None:
    world = campaigns.world
    await campaigns.contact("Ada")
    bob = await campaigns.contact("Bob")
    created = await campaigns.campaigns.create(world.ctx(), DRAFT)
    await campaigns.campaigns.send(world.ctx(), created.id)
    await campaigns.services.contacts.update(
        world.ctx(), UpdateContact(contact_id=bob, email_opt_in=False)
    )
    assert await campaigns.run_worker() == []
    assert [m.to for m in campaigns.mailer.sent] == ["ada@example.org"]
    by_contact = {d.contact_id: d for d in await campaigns.deliveries(created.id)}
    assert (by_contact[bob].status, by_contact[bob].error) == (DeliveryStatus.FAILED, NO_CONSENT)


async def test_a_delivery_left_sending_by_a_crash_is_not_resent(campaigns: Campaigns) -> None:
    world = campaigns.world
    for name in ("Ada", "Bob"):
        await campaigns.contact(name)
    created = await campaigns.campaigns.create(world.ctx(), DRAFT)
    await campaigns.campaigns.send(world.ctx(), created.id)
    # The state a worker killed between the SMTP accept and its record leaves behind.
    [first, _] = await campaigns.deliveries(created.id)
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        await uow.deliveries.update(attrs.evolve(first, status=DeliveryStatus.SENDING))
        await uow.commit()
    assert await campaigns.run_worker() == []
    assert [m.to for m in campaigns.mailer.sent] != [first.email]
    assert first.email not in [m.to for m in campaigns.mailer.sent]
    assert len(campaigns.mailer.sent) == 1
    by_id = {d.id: d for d in await campaigns.deliveries(created.id)}
    assert (by_id[first.id].status, by_id[first.id].error) == (DeliveryStatus.FAILED, IN_DOUBT)
    done = await campaigns.campaigns.get(world.ctx(), created.id)
    assert (done.status, done.sent_count) == (CampaignStatus.COMPLETED, 1)


class PausingMailer(RecordingMailer):
    """Staff press pause while the first message is in flight."""

    def __init__(self) -> None:
        super().__init__("smtp")
        self.pause: Any = None

    async def send(self, message: OutgoingEmail) -> SendResult:
        result = await super().send(message)
        if len(self.sent) == 1:
            await self.pause()
        return result


async def test_pause_stops_after_the_message_in_flight_and_send_resumes() -> None:
    from .conftest import ServiceWorld

    world = await ServiceWorld().setup()
    mailer = PausingMailer()
    campaigns = Campaigns(world, mailer)
    for name in ("Ada", "Bob", "Cy"):
        await campaigns.contact(name)
    created = await campaigns.campaigns.create(world.ctx(), DRAFT)

    async def pause() -> None:
        await campaigns.campaigns.pause(world.ctx(), created.id)

    mailer.pause = pause
    await campaigns.campaigns.send(world.ctx(), created.id)
    assert await campaigns.run_worker() == []
    assert len(mailer.sent) == 1
    paused = await campaigns.campaigns.get(world.ctx(), created.id)
    assert (paused.status, paused.sent_count) == (CampaignStatus.PAUSED, 1)
    mailer.pause = _nothing
    resumed = await campaigns.campaigns.send(world.ctx(), created.id)
    assert resumed.status is CampaignStatus.SENDING
    assert await campaigns.run_worker() == []
    assert sorted(m.to for m in mailer.sent) == [
        "ada@example.org",
        "bob@example.org",
        "cy@example.org",
    ]
    done = await campaigns.campaigns.get(world.ctx(), created.id)
    assert (done.status, done.sent_count) == (CampaignStatus.COMPLETED, 3)
    await world.gateway.close()


async def _nothing() -> None:
    return None


async def test_a_mailer_outage_leaves_the_delivery_pending_for_the_retry(
    campaigns: Campaigns,
) -> None:
    world = campaigns.world
    await campaigns.contact("Ada")
    created = await campaigns.campaigns.create(world.ctx(), DRAFT)
    await campaigns.campaigns.send(world.ctx(), created.id)
    campaigns.mailer.fail(1)
    [failure] = await campaigns.run_worker()
    assert isinstance(failure, Unavailable)
    [delivery] = await campaigns.deliveries(created.id)
    assert delivery.status is DeliveryStatus.PENDING
    assert await campaigns.run_worker() == []
    assert [m.to for m in campaigns.mailer.sent] == ["ada@example.org"]


async def test_cancel_and_schedule(campaigns: Campaigns) -> None:
    world = campaigns.world
    await campaigns.contact("Ada")
    created = await campaigns.campaigns.create(world.ctx(), DRAFT)
    later = world.clock.now() + timedelta(hours=2)
    scheduled = await campaigns.campaigns.send(world.ctx(), created.id, at=later)
    assert (scheduled.status, scheduled.scheduled_at) == (CampaignStatus.SCHEDULED, later)
    assert await campaigns.campaigns.start_due(world.ctx()) == []
    world.clock.advance(timedelta(hours=3))
    assert await campaigns.campaigns.start_due(world.ctx()) == [created.id]
    assert await campaigns.run_worker() == []
    assert [m.to for m in campaigns.mailer.sent] == ["ada@example.org"]
    with pytest.raises(Conflict):
        await campaigns.campaigns.cancel(world.ctx(), created.id)

    other = await campaigns.campaigns.create(world.ctx(), DRAFT)
    cancelled = await campaigns.campaigns.cancel(world.ctx(), other.id)
    assert cancelled.status is CampaignStatus.CANCELLED
    with pytest.raises(Conflict):
        await campaigns.campaigns.send(world.ctx(), other.id)


async def test_without_a_mailer_sending_is_unavailable_and_changes_nothing(world: Any) -> None:
    assert world.services.campaigns is not None
    created = await world.services.campaigns.create(world.ctx(), DRAFT)
    with pytest.raises(Unavailable):
        await world.services.campaigns.send(world.ctx(), created.id)
    assert (await world.services.campaigns.get(world.ctx(), created.id)).status is (
        CampaignStatus.DRAFT
    )


async def _relay_due(campaigns: Campaigns) -> int:
    """One pass of the worker over the outbox: due messages only, as the relay leases them."""
    world = campaigns.world
    handlers = campaigns.services.event_handlers()
    async with world.gateway.unit_of_work() as uow:
        due = await uow.outbox.claim(world.clock.now(), 500, 60.0)
        await uow.commit()
    for message in due:
        for handler in handlers.get(message.event.name, ()):
            await handler(message)
        async with world.gateway.unit_of_work() as uow:
            await uow.outbox.complete([message.event.id])
            await uow.commit()
    return len(due)


async def _relay_all_due(campaigns: Campaigns) -> None:
    """Relay until nothing is due (each pass may queue events its handlers emitted)."""
    for _ in range(20):
        if not await _relay_due(campaigns):
            return
    raise AssertionError("the outbox never ran dry")


async def test_a_scheduled_campaign_is_started_by_the_worker_when_its_time_comes(
    campaigns: Campaigns,
) -> None:
    world = campaigns.world
    await campaigns.contact("Ada")
    created = await campaigns.campaigns.create(world.ctx(), DRAFT)
    moved = await campaigns.campaigns.create(world.ctx(), DRAFT)
    first = world.clock.now() + timedelta(hours=2)
    await campaigns.campaigns.send(world.ctx(), created.id, at=first)
    # Scheduled for 2 h, then moved to 5 h: its first CampaignDue event must do nothing.
    await campaigns.campaigns.send(world.ctx(), moved.id, at=first)
    await campaigns.campaigns.send(world.ctx(), moved.id, at=first + timedelta(hours=3))

    await _relay_all_due(campaigns)
    assert campaigns.mailer.sent == []
    assert (await campaigns.campaigns.get(world.ctx(), created.id)).status is (
        CampaignStatus.SCHEDULED
    )

    world.clock.advance(timedelta(hours=2, seconds=1))
    await _relay_all_due(campaigns)  # CampaignDue starts it, CampaignSending sends
    assert [m.to for m in campaigns.mailer.sent] == ["ada@example.org"]
    assert (await campaigns.campaigns.get(world.ctx(), created.id)).status is (
        CampaignStatus.COMPLETED
    )
    assert (await campaigns.campaigns.get(world.ctx(), moved.id)).status is (
        CampaignStatus.SCHEDULED
    )

    world.clock.advance(timedelta(hours=3))
    await _relay_all_due(campaigns)
    assert [m.to for m in campaigns.mailer.sent] == ["ada@example.org"] * 2
    # A stale or repeated due event changes nothing once the campaign has started.
    assert await campaigns.campaigns.start_if_due(world.ctx(), moved.id) is False


def test_tracking_links_are_signed_per_purpose_and_only_literal_links_are_tracked() -> None:
    from crm_domain.services.campaign_rendering import tracked_links
    from crm_domain.services.campaigns import UnsubscribeLinks

    links = UnsubscribeLinks("https://crm.example/campaigns/unsubscribe", b"k" * 32)
    tracking = links.tracking("loc", "d1")
    open_token = tracking.open_url.rsplit("/", 1)[1]
    assert tracking.open_url.startswith("https://crm.example/campaigns/open/")
    assert links.verify_open(open_token) == ("loc", "d1")
    with pytest.raises(NotFound):
        links.verify(open_token)  # an open token does not unsubscribe anyone
    with pytest.raises(NotFound):
        links.verify_open(links.token("loc", "d1"))
    click_token = tracking.click_url(3).rsplit("/", 1)[1]
    assert links.verify_click(click_token) == ("loc", "d1", 3)
    with pytest.raises(NotFound):
        links.verify_click(click_token.replace(".3.", ".4.", 1))
    html = (
        '<a href="https://a.example/x?y=1&amp;z=2">a</a>'
        '<a href="https://a.example/{{ first_name }}">b</a><a href="mailto:x@y">c</a>'
    )
    assert tracked_links(html) == ["https://a.example/x?y=1&z=2"]


async def test_an_open_and_a_click_are_counted_once_with_touchpoints(
    campaigns: Campaigns,
) -> None:
    world = campaigns.world
    await campaigns.contact("Ada")
    draft = attrs.evolve(DRAFT, body_html='<p><a href="https://clinic.example/book">Book</a></p>')
    created = await campaigns.campaigns.create(world.ctx(), draft)
    await campaigns.campaigns.send(world.ctx(), created.id)
    assert await campaigns.run_worker() == []
    [message] = campaigns.mailer.sent
    links = campaigns.campaigns.links
    pixel = message.html.split('<img src="', 1)[1].split('"', 1)[0].rsplit("/", 1)[1]
    click = message.html.split('href="', 1)[1].split('"', 1)[0].rsplit("/", 1)[1]
    assert links.verify_click(click)[2] == 0
    system = world.ctx()
    for _ in range(2):
        await campaigns.campaigns.record_open(system, pixel)
    assert await campaigns.campaigns.record_click(system, click) == "https://clinic.example/book"
    assert await campaigns.campaigns.record_click(system, click) == "https://clinic.example/book"
    done = await campaigns.campaigns.get(world.ctx(), created.id)
    assert (done.opened_count, done.clicked_count) == (1, 1)
    [delivery] = await campaigns.deliveries(created.id)
    assert delivery.status is DeliveryStatus.CLICKED and delivery.opened_at is not None
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        kinds = [t.kind for t in (await uow.touchpoints.list(TouchpointQuery(limit=50))).items]
    assert kinds.count(TouchpointKind.EMAIL_OPENED) == 1
    assert kinds.count(TouchpointKind.EMAIL_CLICKED) == 1
    # Each first engagement is a TouchpointAdded event: the worker rescores warmness.
    assert (await world.event_names()).count("TouchpointAdded") >= 3
    with pytest.raises(NotFound):
        await campaigns.campaigns.record_open(world.ctx(location=world.melbourne), pixel)
