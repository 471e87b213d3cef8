"""The staff console: server-rendered pages under ``/console`` behind the API's pipeline.

Reception and managers sign in (Google, or one click per demo user in the
demo) and get a session cookie holding the same signed session token the API
takes.  Each page declares its permission like an API route, reads and writes
through the domain services, and renders refusals as HTML pages.  Forms carry
Litestar's CSRF token; the JSON API and the webhooks are outside its scope.
"""

from __future__ import annotations

import functools
import hashlib
import re

from crm_domain.errors import NotFound
from litestar import Response, Router, get
from litestar.config.csrf import CSRFConfig
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template import TemplateConfig

from crm_http_litestar.console import auth, manager, reception
from crm_http_litestar.console._web import (
    CONTENT_SECURITY_POLICY,
    STATIC,
    console_exception_handler,
    environment,
    error_page,
    with_security_headers,
)
from crm_http_litestar.pipeline import CONSOLE_COOKIE, CONSOLE_PATH

#: The CSRF cookie of the console's forms (double-submit, signed with the server's key).
CSRF_COOKIE = "crm_console_csrf"
#: The console's static files and their media types; nothing else is served.
_STATIC = {"console.css": "text/css"}


@functools.cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@get(
    "/static/{name:str}",
    opt={"public": True, "no_rate_limit": True},
    include_in_schema=False,
    sync_to_thread=False,
)
def static_file(name: FromPath[str]) -> Response[bytes]:
    """The console's stylesheet (no script: the pages need none)."""
    media_type = _STATIC.get(name)
    if media_type is None:
        raise NotFound(f"no console file {name!r}")
    return Response(
        _static(name),
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


def console_router() -> Router:
    """Every console route: cookie sessions, HTML refusals, security headers."""
    return Router(
        path=CONSOLE_PATH,
        route_handlers=[*auth.ROUTES, *reception.ROUTES, *manager.ROUTES, static_file],
        opt={"console": True, "error_response": error_page},
        after_request=with_security_headers,
        exception_handlers={
            Exception: console_exception_handler,
            HTTPException: console_exception_handler,
        },
        include_in_schema=False,
    )


def console_csrf_config(secret: str, *, secure: bool = False) -> CSRFConfig:
    """CSRF protection for the console's forms only (bearer-token API and webhooks excluded).

    ``secure``: the console is served over https (``CRM_PUBLIC_URL``), so the cookie is too.
    """
    return CSRFConfig(
        secret=hashlib.sha256(b"console-csrf:" + secret.encode()).hexdigest(),
        cookie_name=CSRF_COOKIE,
        cookie_path=CONSOLE_PATH,
        cookie_secure=secure,
        cookie_httponly=True,
        cookie_samesite="strict",
        # Everything outside /console: the API authenticates with a header a browser
        # never adds by itself, the webhooks with their senders' signatures.  (The
        # ``.`` keeps a bare "/" in scope, so Litestar sees the pattern is not greedy.)
        exclude=[f"^/(?!{re.escape(CONSOLE_PATH.lstrip('/'))}(/|$))."],
    )


def console_template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """The console's Jinja templates (autoescaped), shipped in the package."""
    return TemplateConfig(
        instance=JinjaTemplateEngine.from_environment(environment()),
    )


__all__ = [
    "CONSOLE_COOKIE",
    "CONTENT_SECURITY_POLICY",
    "CSRF_COOKIE",
    "console_csrf_config",
    "console_router",
    "console_template_config",
]
