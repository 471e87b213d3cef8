"""What every console page shares: templates, security headers, refusals as HTML, permissions.

The console is server-rendered HTML behind the API's own pipeline.  Its pages
hold no script at all, so the Content-Security-Policy can be strict
(``default-src 'self'``, no inline anything) and every page reads without
JavaScript.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from crm_domain.policies import is_allowed
from crm_domain.values import warmness_band
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response
from litestar.response import Template

from crm_http_litestar.pipeline import STATE_KEY, RequestState
from crm_http_litestar.problems import Unauthenticated, problem_for
from crm_http_litestar.routes._deps import Crm

#: Where the console's templates and static files live (shipped inside the wheel).
HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

#: No script, no inline style, nothing from another origin; images may be data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages carry patient data: never kept by a shared browser's cache.
    "Cache-Control": "no-store",
}

#: What reception does next with a lead of each warmness band (the heuristic provider's advice).
NEXT_BEST_ACTION = {
    "hot": "call today to book",
    "warm": "send a follow-up",
    "cold": "add to nurture emails",
}


def when(value: datetime | None, timezone: str, fmt: str = "%a %d %b %Y, %H:%M") -> str:
    """A stored (UTC) instant in the location's local time."""
    if value is None:
        return "—"
    return value.astimezone(ZoneInfo(timezone)).strftime(fmt)


def band(score: int) -> str:
    """The warmness band a receptionist reads (cold, warm, hot)."""
    return warmness_band(score)


@functools.cache
def environment() -> Environment:
    """The console's Jinja environment: autoescaped HTML, the helpers the templates use."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["band"] = band
    env.globals["next_best_action"] = NEXT_BEST_ACTION
    return env


def with_security_headers(response: Response[Any]) -> Response[Any]:
    """Litestar ``after_request`` hook: the console's headers on every page it answers."""
    for name, value in SECURITY_HEADERS.items():
        if name == "Cache-Control" and name in response.headers:
            continue  # the stylesheet may be cached; pages carry patient data and may not
        response.headers[name] = value
    return response


@functools.cache
def _error_template() -> Any:
    return environment().get_template("error.html")


def error_page(exc: BaseException, request_id: str | None) -> Response[str]:
    """A refusal or failure as an HTML page with the API's status (401, 403, 404, 409, 422, …).

    Another location's record is a plain 404 page: it says nothing of whether
    the id exists.  A 401 explains how to sign in.
    """
    problem, headers = problem_for(exc)
    headers.pop("WWW-Authenticate", None)
    status = problem.status
    titles = {
        401: "Please sign in",
        403: "Not allowed",
        404: "Not found",
        409: "Could not do that",
        422: "Check the form",
        429: "Too many requests",
        503: "Try again shortly",
    }
    detail = problem.detail
    if status == 404:
        detail = "There is nothing here, or it belongs to another location."
    elif status == 401 and isinstance(exc, Unauthenticated):
        detail = "Your session has ended or you have not signed in yet."
    html = _error_template().render(
        title=titles.get(status, "Something went wrong"),
        status=status,
        detail=detail,
        request_id=request_id,
    )
    return Response(
        html,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={**headers, **SECURITY_HEADERS},
    )


def console_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    """The console router's exception handler: everything becomes an HTML page."""
    state = request.scope.get("state", {}).get(STATE_KEY)
    return error_page(exc, getattr(state, "request_id", None))


class Permissions:
    """``can["contacts:update"]`` in templates: what the signed-in user's roles grant."""

    def __init__(self, state: RequestState, grants: Any) -> None:
        self._state = state
        self._grants = grants

    def __getitem__(self, permission: str) -> bool:
        ctx = self._state.context
        if ctx is None:
            return False
        resource, _, action = permission.partition(":")
        return is_allowed(ctx.roles, ctx.custom_permissions, resource, action, self._grants)


async def permissions(crm: Crm) -> Permissions:
    """The caller's grants at this location (the same policy the guard and services apply)."""
    return Permissions(crm.pipeline, await crm.runtime.grants.grants())


async def page(
    crm: Crm, template: str, *, title: str, status_code: int = 200, **context: Any
) -> Template:
    """Render a signed-in page: the layout needs the user's location, roles and grants."""
    location = await crm.services.access.find_location(crm.ctx.tenant_id)
    return Template(
        template_name=template,
        context={
            "title": title,
            "location": location,
            "tz": location.timezone,
            "roles": sorted(r.value for r in crm.pipeline.roles),
            "can": await permissions(crm),
            "demo": crm.runtime.settings.demo,
            **context,
        },
        status_code=status_code,
    )


__all__ = [
    "CONTENT_SECURITY_POLICY",
    "NEXT_BEST_ACTION",
    "SECURITY_HEADERS",
    "STATIC",
    "TEMPLATES",
    "Permissions",
    "band",
    "console_exception_handler",
    "environment",
    "error_page",
    "page",
    "permissions",
    "when",
    "with_security_headers",
]
