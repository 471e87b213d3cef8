"""``/campaigns/unsubscribe/{token}``: the link in every campaign email (no login).

``GET`` only shows a confirmation page with a button (mail scanners follow
links; they must not unsubscribe anyone); ``POST`` unsubscribes — it is also
the RFC 8058 one-click target of ``List-Unsubscribe-Post``.  The token is
signed (HMAC) and names only the location and the delivery; the pages name
nobody.  An unknown or forged token is a 404 either way.
"""

from __future__ import annotations

import html

from crm_domain.context import Context
from litestar import MediaType, Response, Router, get, post
from litestar.params import FromPath

from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes._docs import responses

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
    status_code=200,
)
async def unsubscribe(crm: CrmDep, token: FromPath[str]) -> Response[str]:
    """Withdraw the recipient's email consent."""
    campaigns = crm.services.campaigns
    assert campaigns is not None
    state = crm.pipeline
    tenant_id = campaigns.check_unsubscribe(token)
    state.tenant_id = tenant_id
    ctx = Context.system(
        tenant_id,
        request_id=state.request_id,
        request_method=state.method,
        request_path=state.path,
    )
    await state.use_case(campaigns.unsubscribe(ctx, token))
    return _page("Unsubscribed", "<p>You will receive no more marketing email from us.</p>")


def campaign_links_router() -> Router:
    """Public routes under ``/campaigns`` reached from campaign emails."""
    return Router(
        path="/campaigns/unsubscribe",
        route_handlers=[unsubscribe_page, unsubscribe],
        tags=["campaigns"],
    )


__all__ = ["campaign_links_router"]
