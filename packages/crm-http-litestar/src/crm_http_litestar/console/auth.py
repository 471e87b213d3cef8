"""Signing in to and out of the console: Google, or (demo only) one click per demo user.

The cookie holds the same signed session token the API takes, for a
server-side session (:class:`~crm_http_litestar.sessions.SessionManager`), so
signing out revokes it for good.  It is ``HttpOnly``, ``SameSite=Lax`` (Strict
would drop it on the redirect that ends Google's cross-site form post),
``Path=/console`` and ``Secure`` when the page was served over https.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from crm_domain.errors import NotFound, PermissionDenied, ValidationError
from crm_domain.values import parse_email
from litestar import Request, Response, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from crm_http_litestar.demo import DEMO_USERS
from crm_http_litestar.pipeline import CONSOLE_COOKIE, CONSOLE_PATH
from crm_http_litestar.problems import Unauthenticated
from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes.auth import choose_location, open_google_session
from crm_http_litestar.runtime import CrmRuntime
from crm_http_litestar.sessions import IssuedToken

#: Google's OpenID Connect authorization endpoint (the redirect flow needs no script).
GOOGLE_AUTHORIZE = "https://accounts.google.com/o/oauth2/v2/auth"
#: How long a sign-in started at Google may take to come back.
_NONCE_TTL = 600
_LOCATION_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,49}")
HOME = f"{CONSOLE_PATH}/today"
SIGN_IN = f"{CONSOLE_PATH}/sign-in"


def demo_buttons() -> list[dict[str, str]]:
    """One sign-in button per demo user and location they work at."""
    buttons = []
    for email, (name, roles) in DEMO_USERS.items():
        for code, role in roles.items():
            buttons.append({"email": email, "name": name, "location": code, "role": role.value})
    return buttons


def served_over_https(request: Request[Any, Any, Any], runtime: CrmRuntime) -> bool:
    """Whether the browser reached us over https (directly, or per ``CRM_PUBLIC_URL``).

    Behind a proxy that ends TLS the socket is plain http; the public URL says better.
    """
    public = runtime.settings.adapter_settings.get("CRM_PUBLIC_URL", "").strip().lower()
    return request.url.scheme == "https" or public.startswith("https://")


def session_cookie_response(
    request: Request[Any, Any, Any], runtime: CrmRuntime, issued: IssuedToken, to: str = HOME
) -> Response[Any]:
    """Redirect into the console with the session cookie set."""
    response: Response[Any] = Redirect(to, status_code=303)
    response.set_cookie(
        CONSOLE_COOKIE,
        issued.token,
        path=CONSOLE_PATH,
        httponly=True,
        samesite="lax",
        secure=served_over_https(request, runtime),
    )
    return response


@get("/", opt={"public": True}, include_in_schema=False, sync_to_thread=False)
def console_home() -> Redirect:
    """``/console``: the Today page (which sends a signed-out browser to sign in)."""
    return Redirect(HOME, status_code=303)


@get("/sign-in", opt={"public": True}, include_in_schema=False)
async def sign_in_page(crm: CrmDep) -> Template:
    """The sign-in page: Google, and in the demo a button per demo user."""
    runtime = crm.runtime
    return Template(
        template_name="sign_in.html",
        context={
            "title": "Sign in",
            "google": runtime.google.configured,
            "demo": runtime.settings.demo,
            "buttons": demo_buttons() if runtime.settings.demo else [],
        },
    )


async def _demo_session(runtime: CrmRuntime, email: str, code: str) -> IssuedToken:
    if email not in DEMO_USERS:
        raise PermissionDenied("not a demo user")
    async with runtime.gateway.unit_of_work(None) as uow:
        user = await uow.users.get_by_email(parse_email(email))
    if not user.is_active:
        raise PermissionDenied("this account is deactivated")
    location = await choose_location(runtime, user.id, code)
    return await runtime.sessions.open(user.id, None if location is None else location.id)


@post(
    "/sign-in/demo",
    opt={"public": True, "audit_action": "LOGIN", "audit_resource": "session"},
    include_in_schema=False,
)
async def demo_sign_in(crm: CrmDep, request: Request[Any, Any, Any]) -> Response[Any]:
    """Demo only (``crm serve --demo``): sign in as a demo user with one click."""
    runtime = crm.runtime
    if not runtime.settings.demo:
        crm.pipeline.detail = "demo sign-in outside the demo"
        raise NotFound("no such page")
    form = await request.form()
    email = str(form.get("email") or "")
    code = str(form.get("location") or "")
    issued = await _demo_session(runtime, email, code)
    crm.pipeline.user_id = issued.session.user_id
    crm.pipeline.tenant_id = issued.session.location_id
    crm.pipeline.detail = "console demo sign-in"
    return session_cookie_response(request, crm.runtime, issued)


def _sign(runtime: CrmRuntime, message: str) -> str:
    key = hashlib.sha256(b"console-google-nonce:" + runtime.settings.require_secret().encode())
    digest = hmac.new(key.digest(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _new_nonce(runtime: CrmRuntime, location: str) -> str:
    """A signed, timestamped nonce that also carries the location asked for ("" for none)."""
    message = f"{int(time.time())}.{secrets.token_urlsafe(16)}.{location}"
    return f"{message}.{_sign(runtime, message)}"


def _nonce_location(runtime: CrmRuntime, nonce: str) -> str | None:
    """The location code of a nonce we signed in the last few minutes; ``None`` if not ours.

    ``""`` means no location was asked for.
    """
    message, _, signature = nonce.rpartition(".")
    issued, _, rest = message.partition(".")
    _random, _, location = rest.partition(".")
    if not issued.isdigit() or not hmac.compare_digest(signature, _sign(runtime, message)):
        return None
    if not 0 <= time.time() - int(issued) <= _NONCE_TTL:
        return None
    return location


def _redirect_uri(request: Request[Any, Any, Any]) -> str:
    return str(request.url.with_replacements(path=f"{SIGN_IN}/google", query=""))


@get("/sign-in/google", opt={"public": True}, include_in_schema=False)
async def google_start(
    crm: CrmDep, request: Request[Any, Any, Any], location: FromQuery[str] = ""
) -> Redirect:
    """Send the browser to Google; it comes back with an ID token posted to us.

    ``location``: the location code to work at, for staff of several locations.
    """
    runtime = crm.runtime
    if not runtime.google.configured:
        raise NotFound("Google sign-in is not enabled on this server")
    code = location.strip().lower()
    if code and not _LOCATION_CODE.fullmatch(code):
        raise ValidationError("location", "a location code is letters, digits and dashes")
    nonce = _new_nonce(runtime, code)
    query = urlencode(
        {
            "client_id": runtime.settings.google_client_id,
            "redirect_uri": _redirect_uri(request),
            "response_type": "id_token",
            "response_mode": "form_post",
            "scope": "openid email",
            "nonce": nonce,
            "state": nonce,
            "prompt": "select_account",
        }
    )
    return Redirect(f"{GOOGLE_AUTHORIZE}?{query}", status_code=303)


@post(
    "/sign-in/google",
    # Google posts this form cross-site, so it cannot carry our CSRF token; the signed,
    # short-lived nonce that must come back inside Google's signed ID token stands in.
    opt={
        "public": True,
        "exclude_from_csrf": True,
        "audit_action": "LOGIN",
        "audit_resource": "session",
    },
    include_in_schema=False,
)
async def google_callback(crm: CrmDep, request: Request[Any, Any, Any]) -> Response[Any]:
    """Google's answer (``response_mode=form_post``): verify it, open a session, set the cookie."""
    form = await request.form()
    id_token = str(form.get("id_token") or "")
    state = str(form.get("state") or "")
    code = _nonce_location(crm.runtime, state) if id_token else None
    if code is None:
        crm.pipeline.detail = "console google sign-in without a valid state"
        raise Unauthenticated("the Google sign-in could not be verified")
    issued, _location = await open_google_session(
        crm.runtime, crm.pipeline, id_token, code or None, nonce=state
    )
    if issued.session.location_id is None:
        # A member of several locations who named none: the console works at one.
        await crm.runtime.sessions.revoke(issued.session.id)
        raise PermissionDenied(
            "you work at several locations: enter the location on the sign-in page"
        )
    return session_cookie_response(request, crm.runtime, issued)


@post(
    "/sign-out",
    opt={"authenticated": True, "audit_action": "LOGOUT", "audit_resource": "session"},
    include_in_schema=False,
)
async def sign_out(crm: CrmDep) -> Response[Any]:
    """Revoke the session and drop the cookie."""
    if crm.pipeline.session_id is not None:
        await crm.runtime.sessions.revoke(crm.pipeline.session_id)
    response: Response[Any] = Redirect(SIGN_IN, status_code=303)
    response.delete_cookie(CONSOLE_COOKIE, path=CONSOLE_PATH)
    return response


ROUTES = [console_home, sign_in_page, demo_sign_in, google_start, google_callback, sign_out]

__all__ = [
    "GOOGLE_AUTHORIZE",
    "ROUTES",
    "demo_buttons",
    "served_over_https",
    "session_cookie_response",
]
