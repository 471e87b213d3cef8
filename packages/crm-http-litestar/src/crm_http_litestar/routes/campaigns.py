"""``/api/campaigns``: draft, preview, test, send or schedule, pause, cancel, follow."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from crm_domain.entities import (
    AudienceFilter,
    CampaignStatus,
    ContactSource,
    ContactStatus,
    EmailCampaign,
)
from crm_domain.queries import DEFAULT_LIMIT, CampaignQuery
from crm_domain.services import CampaignChanges, CampaignDraft, CampaignProgress
from crm_domain.values import parse_email
from litestar import Request, Response, Router, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import UNSET, UnsetType

from crm_http_litestar.routes._common import (
    IDEMPOTENCY_NOTE,
    before_service,
    idempotent,
    refuse_other_location,
)
from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes._docs import (
    LIST_ERRORS,
    READ_ONE_ERRORS,
    WRITE_ERRORS,
    permission_doc,
    responses,
)
from crm_http_litestar.routes._query import Cursor, Limit, Text, strict_query
from crm_http_litestar.schemas import Body, Listing, documented, name_text, one_of

Warmness = Annotated[int, msgspec.Meta(ge=0, le=100)]


class AudienceIO(Body):
    """Who a campaign goes to — always only contacts with email consent and an address.

    Every field narrows the audience; all omitted: every consenting contact.
    """

    source: Annotated[str | None, one_of(ContactSource, nullable=True)] = None
    status: Annotated[str | None, one_of(ContactStatus, nullable=True)] = None
    tag: Annotated[str | None, documented(maxLength=50)] = None
    #: Warmness at least this (inclusive).
    warmness_min: Warmness | None = None
    #: Warmness at most this (inclusive).
    warmness_max: Warmness | None = None


class CampaignOut(msgspec.Struct):
    """A campaign; ``progress`` counts its deliveries by status (``GET /{id}`` only)."""

    id: str
    tenant_id: str
    name: str
    subject: str
    body_html: str
    body_text: str
    audience: AudienceIO
    status: str
    scheduled_at: datetime | None
    sent_count: int
    opened_count: int
    clicked_count: int
    created_at: datetime
    updated_at: datetime
    progress: dict[str, int] | None = None


class CampaignIn(Body):
    """A new draft. ``{{ first_name }}``, ``{{ last_name }}``, ``{{ clinic_name }}`` merge."""

    name: Annotated[str, name_text(200)]
    subject: Annotated[str, name_text(300)]
    body_html: Annotated[str, documented(minLength=1, maxLength=500_000)]
    #: Omitted: derived from the HTML.
    body_text: Annotated[str, documented(maxLength=500_000)] = ""
    audience: AudienceIO = msgspec.field(default_factory=AudienceIO)
    tenant_id: str | None = None


class CampaignPatch(Body):
    """Fields of a draft to change."""

    name: Annotated[str | UnsetType, name_text(200)] = UNSET
    subject: Annotated[str | UnsetType, name_text(300)] = UNSET
    body_html: Annotated[str | UnsetType, documented(minLength=1, maxLength=500_000)] = UNSET
    body_text: Annotated[str | UnsetType, documented(maxLength=500_000)] = UNSET
    audience: AudienceIO | UnsetType = UNSET
    tenant_id: str | None = None


class SendIn(Body):
    """Send now (no ``scheduled_at``, or one in the past) or at ``scheduled_at``."""

    scheduled_at: datetime | None = None


class TestSendIn(Body):
    """A staff address to send one test copy to."""

    to: Annotated[str, documented(minLength=3, maxLength=320)]


class RecipientOut(msgspec.Struct):
    """One contact of a preview's sample."""

    id: str
    first_name: str
    last_name: str
    email: str | None


class PreviewOut(msgspec.Struct):
    """How many contacts the campaign would reach now, and a few of them."""

    count: int
    sample: list[RecipientOut]


class StatsOut(msgspec.Struct):
    """A campaign's counts: deliveries by status, and what the campaign has counted."""

    status: str
    sent_count: int
    opened_count: int
    clicked_count: int
    deliveries: dict[str, int]


def _audience(data: AudienceIO) -> AudienceFilter:
    return AudienceFilter(
        source=data.source,
        status=data.status,
        tag=data.tag,
        warmness_min=data.warmness_min,
        warmness_max=data.warmness_max,
    )


def _out(campaign: EmailCampaign, progress: CampaignProgress | None = None) -> CampaignOut:
    audience = campaign.audience
    return CampaignOut(
        id=campaign.id,
        tenant_id=campaign.tenant_id,
        name=campaign.name,
        subject=campaign.subject,
        body_html=campaign.body_html,
        body_text=campaign.body_text,
        audience=AudienceIO(
            source=None if audience.source is None else audience.source.value,
            status=None if audience.status is None else audience.status.value,
            tag=audience.tag,
            warmness_min=audience.warmness_min,
            warmness_max=audience.warmness_max,
        ),
        status=campaign.status.value,
        scheduled_at=campaign.scheduled_at,
        sent_count=campaign.sent_count,
        opened_count=campaign.opened_count,
        clicked_count=campaign.clicked_count,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
        progress=None if progress is None else progress.by_status,
    )


def _value(value: Any) -> Any:
    return None if value is UNSET else value


_CREATE_NOTE = (
    "Stores a `draft`. The HTML is sanitised (scripts, event handlers and unsafe URLs"
    " removed); templates are checked (a 422 names `subject`, `body_html` or `body_text`)."
    " Merge fields are values, never template code: a contact's name is escaped in the"
    f" HTML. {IDEMPOTENCY_NOTE}"
)


@post(
    "/",
    opt={"permission": "campaigns:create"},
    summary="Draft an email campaign",
    description=permission_doc("campaigns:create", _CREATE_NOTE),
    responses=responses(*WRITE_ERRORS),
)
async def create_campaign(
    crm: CrmDep, data: JSONBody[CampaignIn], request: Request[Any, Any, Any]
) -> Response[CampaignOut]:
    """Create a draft campaign."""
    ctx = crm.ctx
    pipeline = crm.pipeline
    refuse_other_location(pipeline, data.tenant_id)
    campaigns = crm.services.campaigns
    assert campaigns is not None  # bootstrap always builds it
    draft = before_service(
        pipeline,
        lambda: CampaignDraft(
            name=data.name,
            subject=data.subject,
            body_html=data.body_html,
            body_text=data.body_text,
            audience=_audience(data.audience),
        ),
    )

    async def produce() -> CampaignOut:
        return _out(await pipeline.use_case(campaigns.create(ctx, draft)))

    return await idempotent(request, pipeline, crm.runtime, produce)


@get(
    "/",
    opt={"permission": "campaigns:read"},
    summary="List campaigns",
    description=permission_doc("campaigns:read", "Newest first."),
    responses=responses(*LIST_ERRORS),
)
async def list_campaigns(
    crm: CrmDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: FromQuery[CampaignStatus | None] = None,
    tenant_id: Text = None,
) -> Listing[CampaignOut]:
    """One page of the location's campaigns."""
    pipeline = crm.pipeline
    refuse_other_location(pipeline, tenant_id)
    cursors = crm.cursors
    campaigns = crm.services.campaigns
    assert campaigns is not None
    query = before_service(
        pipeline,
        lambda: CampaignQuery(limit=limit, cursor=cursors.open(cursor), status=status),
    )
    page = await pipeline.use_case(campaigns.list(crm.ctx, query))
    return Listing(items=[_out(c) for c in page.items], next_cursor=cursors.seal(page.next_cursor))


@get(
    "/{id:str}",
    opt={"permission": "campaigns:read"},
    summary="Read a campaign and its sending progress",
    description=permission_doc(
        "campaigns:read", "`progress`: deliveries by status. Another location's id is a 404."
    ),
    responses=responses(*READ_ONE_ERRORS),
)
async def get_campaign(crm: CrmDep, id: FromPath[str]) -> CampaignOut:
    """One campaign with its progress."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    progress = await crm.pipeline.use_case(campaigns.progress(crm.ctx, id))
    return _out(progress.campaign, progress)


@patch(
    "/{id:str}",
    opt={"permission": "campaigns:update"},
    summary="Change a draft",
    description=permission_doc(
        "campaigns:update", "Only a `draft` changes (otherwise a 409); only the fields sent."
    ),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
)
async def update_campaign(
    crm: CrmDep, id: FromPath[str], data: JSONBody[CampaignPatch]
) -> CampaignOut:
    """Change some fields of a draft."""
    pipeline = crm.pipeline
    refuse_other_location(pipeline, data.tenant_id)
    campaigns = crm.services.campaigns
    assert campaigns is not None
    audience = _value(data.audience)
    changes = before_service(
        pipeline,
        lambda: CampaignChanges(
            name=_value(data.name),
            subject=_value(data.subject),
            body_html=_value(data.body_html),
            body_text=_value(data.body_text),
            audience=None if audience is None else _audience(audience),
        ),
    )
    return _out(await pipeline.use_case(campaigns.update(crm.ctx, id, changes)))


@get(
    "/{id:str}/preview",
    opt={"permission": "campaigns:read"},
    summary="Preview a campaign's audience",
    description=permission_doc(
        "campaigns:read", "How many contacts it reaches now (consent and an email) and five."
    ),
    responses=responses(*READ_ONE_ERRORS),
)
async def preview_campaign(crm: CrmDep, id: FromPath[str]) -> PreviewOut:
    """The audience's size and a sample."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    preview = await crm.pipeline.use_case(campaigns.preview(crm.ctx, id))
    return PreviewOut(
        count=preview.count,
        sample=[
            RecipientOut(id=c.id, first_name=c.first_name, last_name=c.last_name, email=c.email)
            for c in preview.sample
        ],
    )


@post(
    "/{id:str}/test",
    opt={"permission": "campaigns:send"},
    summary="Send one test copy to a staff address",
    description=permission_doc(
        "campaigns:send", "Rendered for a sample recipient `Test`; changes nothing. 503: no mailer."
    ),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
    status_code=202,
)
async def test_send_campaign(crm: CrmDep, id: FromPath[str], data: JSONBody[TestSendIn]) -> None:
    """Send a test copy."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    to = before_service(crm.pipeline, lambda: parse_email(data.to, field="to"))
    await crm.pipeline.use_case(campaigns.test_send(crm.ctx, id, to))


@post(
    "/{id:str}/send",
    opt={"permission": "campaigns:send"},
    summary="Send or schedule a campaign (or resume a paused one)",
    description=permission_doc(
        "campaigns:send",
        "Without `scheduled_at` (or with a past one): `sending`; the worker sends each"
        " recipient exactly once. With a future one: `scheduled`. A paused campaign resumes."
        " 409 from `sending`, `completed` or `cancelled`; 503 without a mailer.",
    ),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
    status_code=202,
)
async def send_campaign(
    crm: CrmDep, id: FromPath[str], data: JSONBody[SendIn | None] = None
) -> CampaignOut:
    """Start or schedule sending."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    at = None if data is None else data.scheduled_at
    return _out(await crm.pipeline.use_case(campaigns.send(crm.ctx, id, at=at)))


@post(
    "/{id:str}/pause",
    opt={"permission": "campaigns:update"},
    summary="Pause a sending campaign",
    description=permission_doc("campaigns:update", "After the message in flight; 409 otherwise."),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
    status_code=200,
)
async def pause_campaign(crm: CrmDep, id: FromPath[str]) -> CampaignOut:
    """Pause sending."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    return _out(await crm.pipeline.use_case(campaigns.pause(crm.ctx, id)))


@post(
    "/{id:str}/cancel",
    opt={"permission": "campaigns:update"},
    summary="Cancel a campaign",
    description=permission_doc("campaigns:update", "Nothing more is sent; 409 once completed."),
    responses=responses(*READ_ONE_ERRORS, *WRITE_ERRORS),
    status_code=200,
)
async def cancel_campaign(crm: CrmDep, id: FromPath[str]) -> CampaignOut:
    """Cancel a campaign."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    return _out(await crm.pipeline.use_case(campaigns.cancel(crm.ctx, id)))


@get(
    "/{id:str}/stats",
    opt={"permission": "campaigns:read"},
    summary="A campaign's counts",
    description=permission_doc("campaigns:read", "Deliveries by status and the campaign counts."),
    responses=responses(*READ_ONE_ERRORS),
)
async def campaign_stats(crm: CrmDep, id: FromPath[str]) -> StatsOut:
    """Counts of one campaign."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    progress = await crm.pipeline.use_case(campaigns.progress(crm.ctx, id))
    campaign = progress.campaign
    return StatsOut(
        status=campaign.status.value,
        sent_count=campaign.sent_count,
        opened_count=campaign.opened_count,
        clicked_count=campaign.clicked_count,
        deliveries=progress.by_status,
    )


def campaigns_router() -> Router:
    """Routes under ``/api/campaigns``."""
    return Router(
        path="/api/campaigns",
        route_handlers=[
            create_campaign,
            list_campaigns,
            get_campaign,
            update_campaign,
            preview_campaign,
            test_send_campaign,
            send_campaign,
            pause_campaign,
            cancel_campaign,
            campaign_stats,
        ],
        tags=["campaigns"],
        before_request=strict_query,
    )


__all__ = ["CampaignIn", "CampaignOut", "CampaignPatch", "campaigns_router"]
