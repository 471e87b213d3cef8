"""``/campaigns/unsubscribe/{token}``: the link in every campaign email (no login);
``/campaigns/open/{token}`` and ``/campaigns/click/{token}``: its open pixel and
click links.

``GET`` only shows a confirmation page with a button (mail scanners follow
links; they must not unsubscribe anyone); ``POST`` unsubscribes — it is also
the RFC 8058 one-click target of ``List-Unsubscribe-Post``.  The token is
signed (HMAC) and names only the location and the delivery; the pages name
nobody.  An unknown or forged token is a 404 either way.

The open pixel always answers the same 1×1 GIF (a forged token records
nothing and learns nothing).  A click link redirects (302) only to the
campaign's own link at the token's position, so it is no open redirect.
"""

from __future__ import annotations

import base64
import html

from crm_domain.context import Context
from crm_domain.errors import NotFound
from litestar import MediaType, Response, Router, get, post
from litestar.params import FromPath
from litestar.response import Redirect

from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes._docs import PublicOperation, responses

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title></head><body style="font-family:sans-serif;max-width:32em;margin:3em auto">
<h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str) -> Response[str]:
    return Response(
        _PAGE.format(title=html.escape(title), body=body),
        media_type=MediaType.HTML,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@get(
    "/{token:str}",
    opt={"public": True},
    summary="Unsubscribe page (confirms; changes nothing)",
    description="Public. A page with a button that POSTs to the same URL; 404 for a bad link.",
    responses=responses(404, 429),
    operation_class=PublicOperation,
    include_in_schema=True,
)
async def unsubscribe_page(crm: CrmDep, token: FromPath[str]) -> Response[str]:
    """Show the confirmation button."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    campaigns.check_unsubscribe(token)
    return _page(
        "Unsubscribe",
        '<p>Stop receiving marketing email from us?</p><form method="post">'
        '<button type="submit">Unsubscribe</button></form>',
    )


@post(
    "/{token:str}",
    opt={"public": True, "audit_action": "UPDATE", "audit_resource": "contact"},
    summary="Unsubscribe (one click, RFC 8058)",
    description="Public. Withdraws the recipient's email consent; repeating it is harmless.",
    responses=responses(404, 429),
    operation_class=PublicOperation,
    status_code=200,
)
async def unsubscribe(crm: CrmDep, token: FromPath[str]) -> Response[str]:
    """Withdraw the recipient's email consent."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    tenant_id = campaigns.check_unsubscribe(token)
    await crm.pipeline.use_case(campaigns.unsubscribe(_system(crm, tenant_id), token))
    return _page("Unsubscribed", "<p>You will receive no more marketing email from us.</p>")


#: A transparent 1×1 GIF.
_PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _system(crm: CrmDep, tenant_id: str) -> Context:
    state = crm.pipeline
    state.tenant_id = tenant_id
    return Context.system(
        tenant_id,
        request_id=state.request_id,
        request_method=state.method,
        request_path=state.path,
    )


@get(
    "/open/{token:str}",
    opt={"public": True},
    summary="Open pixel of a campaign email",
    description="Public. Always the same 1×1 GIF; a genuine token counts the first open.",
    responses=responses(429),
    media_type="image/gif",
    operation_class=PublicOperation,
    include_in_schema=True,
)
async def open_pixel(crm: CrmDep, token: FromPath[str]) -> Response[bytes]:
    """Count the open (first one only) and answer the pixel."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    try:
        tenant_id = campaigns.check_open(token)
    except NotFound:
        tenant_id = None
    if tenant_id is not None:
        await crm.pipeline.use_case(campaigns.record_open(_system(crm, tenant_id), token))
    return Response(
        _PIXEL,
        media_type="image/gif",
        headers={"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"},
    )


@get(
    "/click/{token:str}",
    opt={"public": True},
    summary="Click link of a campaign email",
    description="Public. Redirects (302) to the campaign's own link; 404 for a bad link.",
    responses=responses(404, 429),
    status_code=302,
    operation_class=PublicOperation,
    include_in_schema=True,
)
async def click(crm: CrmDep, token: FromPath[str]) -> Redirect:
    """Count the click (first one only) and send the reader on."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    tenant_id = campaigns.check_click(token)
    target = await crm.pipeline.use_case(campaigns.record_click(_system(crm, tenant_id), token))
    return Redirect(
        target,
        status_code=302,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def campaign_links_router() -> Router:
    """Public routes under ``/campaigns`` reached from campaign emails."""
    return Router(
        path="/campaigns",
        route_handlers=[
            Router(path="/unsubscribe", route_handlers=[unsubscribe_page, unsubscribe]),
            open_pixel,
            click,
        ],
        tags=["campaigns"],
    )


__all__ = ["campaign_links_router"]
