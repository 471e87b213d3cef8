"""Email campaigns: from draft to delivered, each recipient exactly once.

Life cycle: ``draft → scheduled → sending → completed``, plus ``paused``
(from ``sending``; resuming sends the rest) and ``cancelled`` (from any state
but ``completed``).  Only a draft can be edited.

**Exactly once.**  Starting a send (now, or when a schedule falls due) writes
one :class:`~crm_domain.entities.CampaignDelivery` per recipient — unique per
(campaign, contact) in every store — in the same unit of work as the status
change and the ``CampaignSending`` outbox event.  The worker's handler
(:meth:`EmailMarketingService.deliver`) then walks the ``pending`` deliveries
one at a time: it commits the delivery as ``sending``, hands the message to the
mailer, and commits it as ``sent`` with the touchpoint and the campaign's
count.  A crash or restart resumes from the rows, so nobody is sent twice by a
replay and nobody is skipped.

The one window no store can close is a crash *after* the SMTP server accepted
the message and *before* ``sent`` was committed (a few milliseconds per
message).  Such a delivery is found still ``sending`` on resume; it is *not*
sent again (at most once wins over at least once for marketing mail) and is
recorded ``failed`` with the error :data:`IN_DOUBT`, so the count of in-doubt
messages is visible rather than silently doubled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import (
    Action,
    AudienceFilter,
    CampaignDelivery,
    CampaignStatus,
    Channel,
    Contact,
    DeliveryStatus,
    EmailCampaign,
    Resource,
    SuppressionChannel,
    SuppressionReason,
    Touchpoint,
    TouchpointKind,
)
from crm_domain.errors import Conflict, NotFound, Unavailable, ValidationError
from crm_domain.pagination import Page
from crm_domain.policies.rbac import Authorizer
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.ports.messaging import Mailer, OutgoingEmail
from crm_domain.queries import MAX_LIMIT, CampaignQuery, ContactQuery, DeliveryQuery
from crm_domain.services._base import Call, ServiceBase
from crm_domain.services._touchpoints import add_touchpoint
from crm_domain.services.campaign_rendering import (
    Tracking,
    check_template,
    render_email,
    sanitise_html,
    text_from_html,
    tracked_links,
)
from crm_domain.services.contacts import _facts as _contact_facts
from crm_domain.services.events import EventName
from crm_domain.services.suppressions import email_suppression, suppress, suppressed_emails

#: The error on a delivery found ``sending`` after a crash (see the module docstring).
IN_DOUBT = "in doubt: the worker stopped after handing it to the mailer; not resent"
#: The error on a delivery whose contact withdrew consent (or their email) before it went.
NO_CONSENT = "no email consent at send time"
#: The error on a delivery whose address was put on the suppression list before it went.
SUPPRESSED = "address on the location's suppression list at send time"
#: How many recipients a preview shows.
PREVIEW_SAMPLE = 5

_EDITABLE = frozenset({CampaignStatus.DRAFT})
_STARTABLE = frozenset({CampaignStatus.DRAFT, CampaignStatus.SCHEDULED})
_FINISHED = frozenset({CampaignStatus.COMPLETED, CampaignStatus.CANCELLED})


@attrs.frozen(slots=True, kw_only=True)
class CampaignDraft:
    """Create a campaign (``body_text`` derived from the HTML when empty)."""

    name: str
    subject: str
    body_html: str
    body_text: str = ""
    audience: AudienceFilter = attrs.field(factory=AudienceFilter)


@attrs.frozen(slots=True, kw_only=True)
class CampaignChanges:
    """Change a draft: ``None`` leaves a field as it is."""

    name: str | None = None
    subject: str | None = None
    body_html: str | None = None
    body_text: str | None = None
    audience: AudienceFilter | None = None


@attrs.frozen(slots=True, kw_only=True)
class AudiencePreview:
    """How many contacts a campaign would reach now, and a few of them."""

    count: int
    sample: tuple[Contact, ...]


@attrs.frozen(slots=True, kw_only=True)
class CampaignProgress:
    """Where a campaign's sending is: deliveries by status."""

    campaign: EmailCampaign
    by_status: dict[str, int]


def audience_query(audience: AudienceFilter, *, limit: int = MAX_LIMIT) -> ContactQuery:
    """The contact query of an audience: always only contacts with ``email_opt_in``."""
    for name in ("warmness_min", "warmness_max"):
        value = getattr(audience, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100
        ):
            raise ValidationError(f"audience.{name}", "must be an integer from 0 to 100")
    if (
        audience.warmness_min is not None
        and audience.warmness_max is not None
        and audience.warmness_min > audience.warmness_max
    ):
        raise ValidationError("audience.warmness_max", "must not be below warmness_min")
    return ContactQuery(
        limit=limit,
        source=None if audience.source is None else audience.source.value,
        status=None if audience.status is None else audience.status.value,
        tag=audience.tag,
        warmness_min=audience.warmness_min,
        # The filter is inclusive ("warmness ≤"); the query's bound is exclusive.
        warmness_max=None if audience.warmness_max is None else audience.warmness_max + 1,
        email_opt_in=True,
    )


class UnsubscribeLinks:
    """Signed, login-free links of campaign email: unsubscribe, open pixel and clicks.

    ``base_url`` is the unsubscribe prefix (``<public>/campaigns/unsubscribe``);
    the open pixel and click links live beside it (``<public>/campaigns/open/…``,
    ``…/click/…``).  A token names the location, the delivery and (clicks) the
    link's position in the campaign, with an HMAC-SHA256 over those and the
    link's purpose, so one kind of token is never accepted as another; it
    reveals nothing about the contact.
    """

    def __init__(self, base_url: str, key: bytes | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._root = self._base.rsplit("/", 1)[0]
        # Without a configured key, links are valid only for this process's life.
        self._key = key or secrets.token_bytes(32)

    def _token(self, purpose: str, *parts: str) -> str:
        body = ".".join(parts)
        # Unsubscribe links sign the bare body (as links already sent do); the others
        # prefix their purpose, so no token of one kind verifies as another.
        signed = body if purpose == "unsubscribe" else f"{purpose}:{body}"
        mac = hmac.new(self._key, signed.encode(), hashlib.sha256).digest()[:16]
        return f"{body}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    def _check(self, purpose: str, token: str, parts: int) -> list[str]:
        pieces = token.split(".")
        if len(pieces) != parts + 1 or not hmac.compare_digest(
            self._token(purpose, *pieces[:-1]), token
        ):
            raise NotFound(f"unknown {purpose} link")
        return pieces[:-1]

    def token(self, tenant_id: str, delivery_id: str) -> str:
        """The unsubscribe token of one delivery."""
        return self._token("unsubscribe", tenant_id, delivery_id)

    def url(self, tenant_id: str, delivery_id: str) -> str:
        """The link a recipient follows to unsubscribe."""
        return f"{self._base}/{self.token(tenant_id, delivery_id)}"

    def verify(self, token: str) -> tuple[str, str]:
        """``(tenant_id, delivery_id)`` of a genuine unsubscribe token; ``NotFound`` otherwise."""
        tenant_id, delivery_id = self._check("unsubscribe", token, 2)
        return tenant_id, delivery_id

    def tracking(self, tenant_id: str, delivery_id: str) -> Tracking:
        """The open pixel and click links of one delivery."""
        return Tracking(
            open_url=f"{self._root}/open/{self._token('open', tenant_id, delivery_id)}",
            click_url=lambda index: (
                f"{self._root}/click/{self._token('click', tenant_id, delivery_id, str(index))}"
            ),
        )

    def verify_open(self, token: str) -> tuple[str, str]:
        """``(tenant_id, delivery_id)`` of a genuine open-pixel token; ``NotFound`` otherwise."""
        tenant_id, delivery_id = self._check("open", token, 2)
        return tenant_id, delivery_id

    def verify_click(self, token: str) -> tuple[str, str, int]:
        """``(tenant_id, delivery_id, link index)`` of a genuine click token."""
        tenant_id, delivery_id, index = self._check("click", token, 3)
        if not index.isdigit():
            raise NotFound("unknown click link")
        return tenant_id, delivery_id, int(index)


def _facts(campaign: EmailCampaign) -> dict[str, Any]:
    """Non-PHI facts about a campaign for events."""
    return {"campaign_id": campaign.id, "status": campaign.status.value}


class EmailMarketingService:
    """Use cases on email campaigns (CONTRACT ``campaigns: create read update send``).

    ``campaigns:create`` to draft, ``campaigns:update`` to edit a draft, pause
    or cancel, ``campaigns:send`` to send, schedule or test-send, and
    ``campaigns:read`` to read, preview and follow progress.  Every use case is
    audited; a preview's sample is PHI, so it is an audited read.
    """

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
        *,
        mailer: Mailer | None = None,
        unsubscribe: UnsubscribeLinks | None = None,
        from_address: str | None = None,
        batch_size: int = 100,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)
        self._mailer = mailer
        self._links = unsubscribe or UnsubscribeLinks("http://localhost:8000/campaigns/unsubscribe")
        self._from = from_address
        self._batch = batch_size

    @property
    def links(self) -> UnsubscribeLinks:
        """The unsubscribe links this service puts in messages."""
        return self._links

    # -- drafting -------------------------------------------------------------

    async def create(self, ctx: Context, draft: CampaignDraft) -> EmailCampaign:
        """Store a new ``draft``; HTML sanitised, templates and audience checked."""
        base = self._base
        async with base.use_case(
            ctx,
            Resource.CAMPAIGNS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="campaign",
            write=True,
        ) as call:
            now = base.clock.now()
            campaign = _checked(
                EmailCampaign(
                    id=base.ids.new_id(),
                    tenant_id=ctx.tenant_id,
                    name=draft.name,
                    subject=draft.subject,
                    body_html=draft.body_html,
                    body_text=draft.body_text or "-",
                    audience=draft.audience,
                    created_at=now,
                    updated_at=now,
                ),
                derive_text=not draft.body_text.strip(),
            )
            call.resource_id = campaign.id
            await call.uow.campaigns.add(campaign)
            await call.emit(EventName.CAMPAIGN_CREATED, "campaign", campaign.id, _facts(campaign))
            return campaign

    async def update(
        self, ctx: Context, campaign_id: str, changes: CampaignChanges
    ) -> EmailCampaign:
        """Edit a draft; ``Conflict`` once it is scheduled or sent."""
        base = self._base
        async with self._case(
            ctx, campaign_id, Action.UPDATE, AuditAction.UPDATE, write=True
        ) as call:
            campaign = await call.uow.campaigns.get(campaign_id)
            if campaign.status not in _EDITABLE:
                raise Conflict(f"a {campaign.status.value} campaign cannot be edited")
            given = attrs.asdict(changes, recurse=False).items()
            values = {k: v for k, v in given if v is not None}
            derive = "body_html" in values and not values.get("body_text", "").strip()
            if "body_text" in values and not values["body_text"].strip():
                values["body_text"] = "-"
            updated = _checked(
                attrs.evolve(campaign, **values, updated_at=base.clock.now()), derive_text=derive
            )
            await call.uow.campaigns.update(updated)
            await call.emit(EventName.CAMPAIGN_UPDATED, "campaign", updated.id, _facts(updated))
            return updated

    async def get(self, ctx: Context, campaign_id: str) -> EmailCampaign:
        """One campaign of the location (``NotFound`` for another location's)."""
        async with self._case(ctx, campaign_id, Action.READ, AuditAction.READ, write=False) as call:
            return await call.uow.campaigns.get(campaign_id)

    async def list(self, ctx: Context, query: CampaignQuery) -> Page[EmailCampaign]:
        """The location's campaigns, newest first."""
        async with self._base.use_case(
            ctx,
            Resource.CAMPAIGNS,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="campaign",
            write=False,
        ) as call:
            page = await call.uow.campaigns.list(query)
            call.detail = f"{len(page.items)} campaigns"
            return page

    async def preview(self, ctx: Context, campaign_id: str) -> AudiencePreview:
        """How many contacts the audience reaches now (with consent and an email), and a sample."""
        async with self._case(ctx, campaign_id, Action.READ, AuditAction.READ, write=False) as call:
            campaign = await call.uow.campaigns.get(campaign_id)
            recipients = await _audience(call.uow, campaign.audience)
            call.detail = f"preview: {len(recipients)} recipients"
            return AudiencePreview(count=len(recipients), sample=tuple(recipients[:PREVIEW_SAMPLE]))

    async def progress(self, ctx: Context, campaign_id: str) -> CampaignProgress:
        """The campaign and its deliveries counted by status."""
        async with self._case(ctx, campaign_id, Action.READ, AuditAction.READ, write=False) as call:
            campaign = await call.uow.campaigns.get(campaign_id)
            counts = {
                status.value: await call.uow.deliveries.count(
                    DeliveryQuery(campaign_id=campaign_id, status=status.value)
                )
                for status in DeliveryStatus
            }
            return CampaignProgress(campaign=campaign, by_status=counts)

    # -- sending --------------------------------------------------------------

    async def send(
        self, ctx: Context, campaign_id: str, *, at: datetime | None = None
    ) -> EmailCampaign:
        """Send now (``at`` ``None`` or past) or schedule for ``at``; also resumes a paused one.

        Sending now writes every recipient's delivery row with the status change
        and the ``CampaignSending`` event; the worker sends them.  ``Unavailable``
        without a mailer (nothing changes).
        """
        base = self._base
        async with self._case(ctx, campaign_id, Action.SEND, AuditAction.SEND, write=True) as call:
            campaign = await call.uow.campaigns.get(campaign_id)
            now = base.clock.now()
            # After the lookup: an unknown campaign is a 404 whatever is configured.
            if self._mailer is None:
                raise Unavailable("no mailer is configured (CRM_MAIL_PROVIDER)")
            if campaign.status is CampaignStatus.PAUSED:
                if at is not None:
                    raise ValidationError("scheduled_at", "a paused campaign resumes now")
                resumed = attrs.evolve(campaign, status=CampaignStatus.SENDING, updated_at=now)
                await call.uow.campaigns.update(resumed)
                await call.emit(
                    EventName.CAMPAIGN_SENDING, "campaign", campaign.id, _facts(resumed)
                )
                call.detail = "resumed"
                return resumed
            if campaign.status not in _STARTABLE:
                raise Conflict(f"a {campaign.status.value} campaign cannot be sent")
            if at is not None and at > now:
                scheduled = attrs.evolve(
                    campaign, status=CampaignStatus.SCHEDULED, scheduled_at=at, updated_at=now
                )
                await call.uow.campaigns.update(scheduled)
                await call.emit(
                    EventName.CAMPAIGN_SCHEDULED, "campaign", campaign.id, _facts(scheduled)
                )
                # The start itself: the outbox holds this event until ``at``, when the
                # worker's handler calls :meth:`start_if_due`.  A campaign rescheduled,
                # paused or cancelled since makes the old event a no-op, so it needs no
                # deleting.
                await call.emit(
                    EventName.CAMPAIGN_DUE,
                    "campaign",
                    campaign.id,
                    {"scheduled_at": at.isoformat()},
                    at=at,
                )
                call.detail = "scheduled"
                return scheduled
            started = await self._start(call, campaign, now)
            call.detail = f"sending to {started[1]} recipients"
            return started[0]

    async def start_if_due(self, ctx: Context, campaign_id: str) -> bool:
        """Start one scheduled campaign if its time has come (the ``CampaignDue`` handler).

        ``False`` (and nothing changes) when it is no longer scheduled or was moved
        later: the event of an earlier schedule arriving after a change.
        """
        async with self._worker_case(ctx, campaign_id) as call:
            campaign = await call.uow.campaigns.get(campaign_id)
            now = self._base.clock.now()
            due = campaign.scheduled_at is not None and campaign.scheduled_at <= now
            if campaign.status is not CampaignStatus.SCHEDULED or not due:
                call.detail = f"not due ({campaign.status.value})"
                return False
            recipients = (await self._start(call, campaign, now))[1]
            call.detail = f"scheduled start: sending to {recipients} recipients"
            return True

    async def start_due(self, ctx: Context) -> Sequence[str]:
        """Start every scheduled campaign of the location whose time has come (a sweep).

        The worker starts each campaign from its own ``CampaignDue`` event; this
        sweep is for an operator (or a store restored from before the events).
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.CAMPAIGNS,
            Action.SEND,
            audit=AuditAction.SEND,
            resource_type="campaign",
            write=True,
        ) as call:
            now = base.clock.now()
            page = await call.uow.campaigns.list(
                CampaignQuery(status=CampaignStatus.SCHEDULED.value, limit=MAX_LIMIT)
            )
            started: list[str] = []
            for campaign in page.items:
                if campaign.scheduled_at is not None and campaign.scheduled_at <= now:
                    await self._start(call, campaign, now)
                    started.append(campaign.id)
            call.detail = f"started {len(started)} scheduled campaigns"
            return started

    async def pause(self, ctx: Context, campaign_id: str) -> EmailCampaign:
        """Stop a sending campaign after the message in flight; ``send`` resumes it."""
        return await self._move(
            ctx, campaign_id, CampaignStatus.PAUSED, {CampaignStatus.SENDING}, "paused"
        )

    async def cancel(self, ctx: Context, campaign_id: str) -> EmailCampaign:
        """Cancel a campaign that is not finished; nothing more is sent."""
        allowed = set(CampaignStatus) - _FINISHED
        return await self._move(ctx, campaign_id, CampaignStatus.CANCELLED, allowed, "cancelled")

    async def test_send(self, ctx: Context, campaign_id: str, to: str) -> None:
        """Send the campaign once to a staff address, rendered for a sample contact ``Test``."""
        base = self._base
        async with self._case(ctx, campaign_id, Action.SEND, AuditAction.SEND, write=False) as call:
            campaign = await call.uow.campaigns.get(campaign_id)
            location = await call.uow.locations.get(ctx.tenant_id)
            if self._mailer is None:
                raise Unavailable("no mailer is configured (CRM_MAIL_PROVIDER)")
            now = base.clock.now()
            sample = Contact(
                id="test",
                tenant_id=ctx.tenant_id,
                first_name="Test",
                last_name="Recipient",
                email=to,
                created_at=now,
                updated_at=now,
            )
            call.detail = "test send"
        message = render_email(
            campaign,
            sample,
            location,
            to=to,
            unsubscribe_url=self._links.url(ctx.tenant_id, "test"),
            from_address=self._from,
        )
        await self._mailer.send(attrs.evolve(message, subject=f"[TEST] {message.subject}"))

    async def deliver(self, ctx: Context, campaign_id: str) -> int:
        """Send the campaign's pending deliveries (the worker's ``CampaignSending`` handler).

        Returns how many messages the mailer accepted in this run.  Stops when the
        campaign is no longer ``sending`` (paused, cancelled); completes it when
        nothing is left.  Safe to run again at any point (module docstring).
        A mailer outage re-raises after returning the delivery to ``pending``,
        so the outbox retries the event with back-off.
        """
        if self._mailer is None:
            raise Unavailable("no mailer is configured (CRM_MAIL_PROVIDER)")
        accepted = 0
        await self._settle_in_doubt(ctx, campaign_id)
        while True:
            batch = await self._next_batch(ctx, campaign_id)
            if batch is None:
                return accepted
            if not batch:
                await self._complete(ctx, campaign_id)
                return accepted
            for delivery_id in batch:
                claimed = await self._claim(ctx, campaign_id, delivery_id)
                if claimed is None:
                    continue
                message = claimed
                try:
                    result = await self._mailer.send(message)
                except Exception as exc:
                    await self._record(
                        ctx, campaign_id, delivery_id, DeliveryStatus.PENDING, error=repr(exc)
                    )
                    raise
                if result.accepted:
                    accepted += 1
                    await self._record(
                        ctx,
                        campaign_id,
                        delivery_id,
                        DeliveryStatus.SENT,
                        provider_message_id=result.provider_message_id,
                    )
                else:
                    await self._record(
                        ctx,
                        campaign_id,
                        delivery_id,
                        DeliveryStatus.FAILED,
                        error=result.error or "refused by the mailer",
                    )

    # -- recipients -------------------------------------------------------------

    def check_unsubscribe(self, token: str) -> str:
        """The location of a genuine unsubscribe token (``NotFound`` otherwise); reads nothing."""
        return self._links.verify(token)[0]

    async def unsubscribe(self, ctx: Context, token: str) -> None:
        """Withdraw the email consent of the recipient of a genuine token (idempotent).

        ``ctx`` is the token's location's system user (the link needs no login).
        The contact is not named in the link or the answer; the change is audited
        and emits ``ContactUpdated``.
        """
        tenant_id, delivery_id = self._links.verify(token)
        if tenant_id != ctx.tenant_id:
            raise NotFound("unknown unsubscribe link")
        base = self._base
        async with base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.UPDATE,
            audit=AuditAction.UPDATE,
            resource_type="contact",
            write=True,
        ) as call:
            delivery = await call.uow.deliveries.get(delivery_id)
            contact = await call.uow.contacts.get(delivery.contact_id)
            call.resource_id = contact.id
            if contact.email is not None:
                # The list keeps the opt-out when the contact is merged, erased or created again.
                await suppress(
                    base,
                    call,
                    contact.tenant_id,
                    SuppressionChannel.EMAIL,
                    contact.email,
                    SuppressionReason.OPT_OUT,
                )
            if not contact.email_opt_in:
                call.detail = "unsubscribe link: already unsubscribed"
                return
            now = base.clock.now()
            updated = attrs.evolve(
                contact, email_opt_in=False, consent_updated_at=now, updated_at=now
            )
            await call.uow.contacts.update(updated)
            await call.emit(
                EventName.CONTACT_UPDATED,
                "contact",
                contact.id,
                {**_contact_facts(updated), "changed": ["email_opt_in"]},
            )
            call.detail = f"unsubscribed by link (campaign {delivery.campaign_id})"

    # -- engagement (open pixel, click links) -----------------------------------

    def check_open(self, token: str) -> str:
        """The location of a genuine open-pixel token (``NotFound`` otherwise); reads nothing."""
        return self._links.verify_open(token)[0]

    def check_click(self, token: str) -> str:
        """The location of a genuine click token (``NotFound`` otherwise); reads nothing."""
        return self._links.verify_click(token)[0]

    async def record_open(self, ctx: Context, token: str) -> None:
        """Count the first open of a delivery (pixel loaded); later loads change nothing.

        The first open sets ``opened_at``, counts on the campaign and adds an
        ``email_opened`` touchpoint (so the worker rescores the contact's warmness).
        """
        tenant_id, delivery_id = self._links.verify_open(token)
        if tenant_id != ctx.tenant_id:
            raise NotFound("unknown open link")
        async with self._engagement(ctx) as call:
            await self._engage(call, delivery_id, click=None)

    async def record_click(self, ctx: Context, token: str) -> str:
        """The URL a genuine click link leads to; the first click is counted (and opens).

        The URL is the campaign's own link at the token's position, never one
        the request carries, so the route is no open redirect.
        """
        tenant_id, delivery_id, index = self._links.verify_click(token)
        if tenant_id != ctx.tenant_id:
            raise NotFound("unknown click link")
        async with self._engagement(ctx) as call:
            return await self._engage(call, delivery_id, click=index)

    def _engagement(self, ctx: Context) -> AbstractAsyncContextManager[Call]:
        return self._base.use_case(
            ctx,
            Resource.CAMPAIGNS,
            Action.SEND,
            audit=AuditAction.UPDATE,
            resource_type="campaign_delivery",
            write=True,
        )

    async def _engage(self, call: Call, delivery_id: str, *, click: int | None) -> str:
        uow = call.uow
        delivery = await uow.deliveries.get(delivery_id)
        call.resource_id = delivery.id
        campaign = await uow.campaigns.get(delivery.campaign_id)
        target = ""
        if click is not None:
            links = tracked_links(campaign.body_html)
            if click >= len(links):
                raise NotFound("unknown click link")
            target = links[click]
        now = self._base.clock.now()
        first_open = delivery.opened_at is None
        first_click = click is not None and delivery.clicked_at is None
        if not (first_open or first_click):
            call.detail = "clicked again" if click is not None else "opened again"
            return target
        status = delivery.status
        if status in (DeliveryStatus.SENT, DeliveryStatus.OPENED):
            status = DeliveryStatus.CLICKED if click is not None else DeliveryStatus.OPENED
        await uow.deliveries.update(
            attrs.evolve(
                delivery,
                status=status,
                opened_at=delivery.opened_at or now,
                clicked_at=delivery.clicked_at or (now if click is not None else None),
            )
        )
        await uow.campaigns.update(
            attrs.evolve(
                campaign,
                opened_count=campaign.opened_count + int(first_open),
                clicked_count=campaign.clicked_count + int(first_click),
                updated_at=now,
            )
        )
        kind = TouchpointKind.EMAIL_CLICKED if first_click else TouchpointKind.EMAIL_OPENED
        await add_touchpoint(
            call,
            Touchpoint(
                id=self._base.ids.new_id(),
                tenant_id=delivery.tenant_id,
                contact_id=delivery.contact_id,
                kind=kind,
                channel=Channel.EMAIL,
                occurred_at=now,
                campaign_id=campaign.id,
                metadata={"delivery_id": delivery.id}
                if click is None
                else {"delivery_id": delivery.id, "link": click},
                created_at=now,
            ),
        )
        call.detail = f"{kind.value} (campaign {campaign.id})"
        return target

    # -- steps ------------------------------------------------------------------

    async def _start(
        self, call: Call, campaign: EmailCampaign, now: datetime
    ) -> tuple[EmailCampaign, int]:
        recipients = await _audience(call.uow, campaign.audience)
        for contact in recipients:
            assert contact.email is not None  # the audience has an email
            await call.uow.deliveries.add(
                CampaignDelivery(
                    id=self._base.ids.new_id(),
                    tenant_id=campaign.tenant_id,
                    campaign_id=campaign.id,
                    contact_id=contact.id,
                    email=contact.email,
                    created_at=now,
                )
            )
        started = attrs.evolve(campaign, status=CampaignStatus.SENDING, updated_at=now)
        await call.uow.campaigns.update(started)
        await call.emit(
            EventName.CAMPAIGN_SENDING,
            "campaign",
            campaign.id,
            {**_facts(started), "recipients": len(recipients)},
        )
        return started, len(recipients)

    async def _move(
        self,
        ctx: Context,
        campaign_id: str,
        target: CampaignStatus,
        allowed: set[CampaignStatus] | frozenset[CampaignStatus],
        event: str,
    ) -> EmailCampaign:
        base = self._base
        async with self._case(
            ctx, campaign_id, Action.UPDATE, AuditAction.UPDATE, write=True
        ) as call:
            campaign = await call.uow.campaigns.get(campaign_id)
            if campaign.status not in allowed:
                raise Conflict(f"a {campaign.status.value} campaign cannot be {event}")
            moved = attrs.evolve(campaign, status=target, updated_at=base.clock.now())
            await call.uow.campaigns.update(moved)
            name = (
                EventName.CAMPAIGN_PAUSED
                if target is CampaignStatus.PAUSED
                else EventName.CAMPAIGN_CANCELLED
            )
            await call.emit(name, "campaign", moved.id, _facts(moved))
            call.detail = event
            return moved

    def _case(
        self,
        ctx: Context,
        campaign_id: str,
        action: Action,
        audit: AuditAction,
        *,
        write: bool,
    ) -> AbstractAsyncContextManager[Call]:
        """A use case on one campaign (RBAC, unit of work, audit: see ``ServiceBase``)."""
        return self._base.use_case(
            ctx,
            Resource.CAMPAIGNS,
            action,
            audit=audit,
            resource_type="campaign",
            resource_id=campaign_id,
            write=write,
        )

    def _worker_case(
        self, ctx: Context, campaign_id: str, *, write: bool = True
    ) -> AbstractAsyncContextManager[Call]:
        return self._case(ctx, campaign_id, Action.SEND, AuditAction.SEND, write=write)

    async def _settle_in_doubt(self, ctx: Context, campaign_id: str) -> None:
        async with self._worker_case(ctx, campaign_id) as call:
            stuck = await _all_deliveries(call.uow, campaign_id, DeliveryStatus.SENDING)
            for delivery in stuck:
                await call.uow.deliveries.update(
                    attrs.evolve(delivery, status=DeliveryStatus.FAILED, error=IN_DOUBT)
                )
            call.detail = f"{len(stuck)} deliveries in doubt"

    async def _next_batch(self, ctx: Context, campaign_id: str) -> Sequence[str] | None:
        async with self._worker_case(ctx, campaign_id, write=False) as call:
            campaign = await call.uow.campaigns.get(campaign_id)
            if campaign.status is not CampaignStatus.SENDING:
                call.detail = f"not sending: {campaign.status.value}"
                return None
            page = await call.uow.deliveries.list(
                DeliveryQuery(
                    campaign_id=campaign_id,
                    status=DeliveryStatus.PENDING.value,
                    limit=min(self._batch, MAX_LIMIT),
                )
            )
            call.detail = f"batch of {len(page.items)}"
            return [d.id for d in page.items]

    async def _claim(
        self, ctx: Context, campaign_id: str, delivery_id: str
    ) -> OutgoingEmail | None:
        """Mark one delivery ``sending`` and render it; ``None``: skip it (recorded why)."""
        async with self._worker_case(ctx, campaign_id) as call:
            uow = call.uow
            campaign = await uow.campaigns.get(campaign_id)
            delivery = await uow.deliveries.get(delivery_id)
            if campaign.status is not CampaignStatus.SENDING or (
                delivery.status is not DeliveryStatus.PENDING
            ):
                call.detail = "skipped"
                return None
            try:
                contact: Contact | None = await uow.contacts.get(delivery.contact_id)
            except NotFound:
                contact = None
            if contact is None or not contact.email_opt_in or contact.email is None:
                # Consent is checked when the message goes, not only when the audience was drawn.
                await uow.deliveries.update(
                    attrs.evolve(delivery, status=DeliveryStatus.FAILED, error=NO_CONSENT)
                )
                call.detail = "no consent"
                return None
            if await email_suppression(uow, contact.email) is not None:
                # So is the suppression list: an address added after the start is skipped.
                await uow.deliveries.update(
                    attrs.evolve(delivery, status=DeliveryStatus.FAILED, error=SUPPRESSED)
                )
                call.detail = "suppressed"
                return None
            location = await uow.locations.get(ctx.tenant_id)
            # Conditional: of several workers holding the same event (a lease that ran
            # out mid-campaign), only the one whose claim lands sends this delivery.
            claimed = attrs.evolve(delivery, status=DeliveryStatus.SENDING)
            if not await uow.deliveries.replace_if_unchanged(delivery, claimed):
                call.detail = "claimed by another worker"
                return None
            call.detail = "sending"
        return render_email(
            campaign,
            contact,
            location,
            to=contact.email,
            unsubscribe_url=self._links.url(ctx.tenant_id, delivery_id),
            from_address=self._from,
            tracking=self._links.tracking(ctx.tenant_id, delivery_id),
        )

    async def _record(
        self,
        ctx: Context,
        campaign_id: str,
        delivery_id: str,
        status: DeliveryStatus,
        *,
        provider_message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        base = self._base
        async with self._worker_case(ctx, campaign_id) as call:
            uow = call.uow
            now = base.clock.now()
            delivery = await uow.deliveries.get(delivery_id)
            sent = status is DeliveryStatus.SENT
            await uow.deliveries.update(
                attrs.evolve(
                    delivery,
                    status=status,
                    provider_message_id=provider_message_id,
                    error=None if error is None else error[:2000],
                    sent_at=now if sent else None,
                )
            )
            call.detail = f"delivery {status.value}"
            if not sent:
                return
            campaign = await uow.campaigns.get(campaign_id)
            await uow.campaigns.update(
                attrs.evolve(campaign, sent_count=campaign.sent_count + 1, updated_at=now)
            )
            await add_touchpoint(
                call,
                Touchpoint(
                    id=base.ids.new_id(),
                    tenant_id=ctx.tenant_id,
                    contact_id=delivery.contact_id,
                    kind=TouchpointKind.EMAIL_SENT,
                    channel=Channel.EMAIL,
                    occurred_at=now,
                    campaign_id=campaign_id,
                    metadata={"delivery_id": delivery_id},
                    created_at=now,
                ),
            )

    async def _complete(self, ctx: Context, campaign_id: str) -> None:
        async with self._worker_case(ctx, campaign_id) as call:
            campaign = await call.uow.campaigns.get(campaign_id)
            if campaign.status is not CampaignStatus.SENDING:
                return
            done = attrs.evolve(
                campaign, status=CampaignStatus.COMPLETED, updated_at=self._base.clock.now()
            )
            await call.uow.campaigns.update(done)
            await call.emit(EventName.CAMPAIGN_COMPLETED, "campaign", campaign_id, _facts(done))
            call.detail = "completed"


def _checked(campaign: EmailCampaign, *, derive_text: bool) -> EmailCampaign:
    """The campaign with sanitised HTML (and derived text), templates and audience validated."""
    body_html = sanitise_html(campaign.body_html)
    if not body_html.strip():
        raise ValidationError("body_html", "must not be empty")
    body_text = (text_from_html(body_html) or "-") if derive_text else campaign.body_text
    sources = {"subject": campaign.subject, "body_html": body_html, "body_text": body_text}
    for field, source in sources.items():
        check_template(field, source)
    audience_query(campaign.audience)
    return attrs.evolve(campaign, body_html=body_html, body_text=body_text)


async def _audience(uow: UnitOfWork, audience: AudienceFilter) -> list[Contact]:
    """Every contact of the audience with consent and an email address not on the location's
    suppression list, newest first."""
    query = audience_query(audience)
    suppressed = await suppressed_emails(uow)
    found: list[Contact] = []
    while True:
        page = await uow.contacts.list(query)
        found.extend(
            c
            for c in page.items
            if c.email is not None and c.email_opt_in and c.email.lower() not in suppressed
        )
        if page.next_cursor is None:
            return found
        query = attrs.evolve(query, cursor=page.next_cursor)


async def _all_deliveries(
    uow: UnitOfWork, campaign_id: str, status: DeliveryStatus
) -> list[CampaignDelivery]:
    query = DeliveryQuery(campaign_id=campaign_id, status=status.value, limit=MAX_LIMIT)
    found: list[CampaignDelivery] = []
    while True:
        page = await uow.deliveries.list(query)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        query = attrs.evolve(query, cursor=page.next_cursor)


__all__ = [
    "IN_DOUBT",
    "NO_CONSENT",
    "SUPPRESSED",
    "AudiencePreview",
    "CampaignChanges",
    "CampaignDraft",
    "CampaignProgress",
    "EmailMarketingService",
    "UnsubscribeLinks",
    "audience_query",
]
