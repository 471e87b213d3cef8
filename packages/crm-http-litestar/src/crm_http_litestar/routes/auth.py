"""Sign-in with Google, logout, and who am I."""

from __future__ import annotations

from datetime import datetime

import attrs
import msgspec
from crm_domain.entities import Location
from crm_domain.errors import NotFound, PermissionDenied, ValidationError
from crm_domain.services import NoAccess
from crm_domain.values import parse_email
from litestar import Router, get, post
from litestar.params import JSONBody

from crm_http_litestar.google import InvalidGoogleToken
from crm_http_litestar.pipeline import RequestState
from crm_http_litestar.problems import Unauthenticated
from crm_http_litestar.routes._deps import CrmDep
from crm_http_litestar.routes._docs import AUTH_ERRORS, PublicOperation, responses
from crm_http_litestar.routes._query import strict_query
from crm_http_litestar.runtime import CrmRuntime
from crm_http_litestar.sessions import IssuedToken

#: The ``token_type`` of issued tokens (RFC 6750).
BEARER = "Bearer"


class GoogleSignIn(msgspec.Struct, forbid_unknown_fields=True):
    """A Google ID token from Google Identity Services, and the location to work at."""

    id_token: str = msgspec.field()
    #: Location code; may be left out when the user is a member of exactly one location.
    location: str | None = None


class SessionToken(msgspec.Struct):
    """A session token to send as ``Authorization: Bearer <token>``."""

    token: str
    token_type: str
    expires_at: datetime
    location: str | None
    user_id: str


class Me(msgspec.Struct):
    """The signed-in user at the current location."""

    user_id: str
    location_id: str
    roles: list[str]
    session_id: str


@post(
    "/google",
    opt={"public": True, "audit_action": "LOGIN", "audit_resource": "session"},
    summary="Exchange a Google ID token for a session token",
    description="Public. Verifies the Google ID token (RS256 against Google's JWKS, audience, "
    "issuer, expiry, optional Workspace domain) and opens a server-side session. A 404 when"
    " this server has no Google client id (`CRM_GOOGLE_CLIENT_ID`).",
    responses=responses(401, 403, 404, 413, 415, 422, 429, 503),
    security=[],
    operation_class=PublicOperation,
    status_code=200,
)
async def google_sign_in(crm: CrmDep, data: JSONBody[GoogleSignIn]) -> SessionToken:
    """Sign in with Google."""
    issued, location = await open_google_session(
        crm.runtime, crm.pipeline, data.id_token, data.location
    )
    return SessionToken(
        token=issued.token,
        token_type=BEARER,
        expires_at=issued.session.expires_at,
        location=location.code if location else None,
        user_id=issued.session.user_id,
    )


async def open_google_session(
    runtime: CrmRuntime,
    pipeline: RequestState,
    id_token: str,
    location_code: str | None,
    *,
    nonce: str | None = None,
) -> tuple[IssuedToken, Location | None]:
    """Verify a Google ID token and open a session for its staff account (API and console).

    ``nonce``: the token must carry this ``nonce`` claim (the console's redirect
    flow sends one to Google and expects it back).
    """
    if not runtime.google.configured:
        # Off by configuration, not down: a 503 would invite retries that never succeed.
        pipeline.detail = "Google sign-in is not configured"
        raise NotFound("Google sign-in is not enabled on this server")
    try:
        identity = await runtime.google.verify(id_token)
    except InvalidGoogleToken as exc:
        pipeline.detail = f"google token refused: {exc}"
        raise Unauthenticated("the Google sign-in could not be verified") from None
    if nonce is not None and identity.nonce != nonce:
        pipeline.detail = "google token refused: nonce does not match"
        raise Unauthenticated("the Google sign-in could not be verified")
    try:
        email = parse_email(identity.email)
    except ValidationError:
        pipeline.detail = "google token carries an unusable email"
        raise Unauthenticated("the Google sign-in could not be verified") from None
    async with runtime.gateway.unit_of_work(None) as uow:
        try:
            user = await uow.users.get_by_email(email)
        except NotFound:
            pipeline.detail = "no staff account for this Google account"
            raise PermissionDenied("this Google account has no access to the CRM") from None
    pipeline.user_id = user.id
    if not user.is_active:
        pipeline.detail = "user is deactivated"
        raise PermissionDenied("this account is deactivated")
    if user.google_sub is not None and user.google_sub != identity.subject:
        pipeline.detail = "google subject differs from the bound one"
        raise Unauthenticated("this Google account does not match the CRM account")
    location = await choose_location(runtime, user.id, location_code)
    async with runtime.gateway.unit_of_work(None) as uow:
        # First sign-in binds the Google subject: a later account with the same
        # email (recycled address) cannot take the CRM account over.
        await uow.users.update(
            attrs.evolve(user, google_sub=identity.subject, last_login_at=runtime.clock.now())
        )
        await uow.commit()
    pipeline.tenant_id = location.id if location else None
    issued = await runtime.sessions.open(user.id, location.id if location else None)
    return issued, location


async def choose_location(runtime: CrmRuntime, user_id: str, code: str | None) -> Location | None:
    """The location a sign-in works at: the one named, else the only one the user is a member of."""
    async with runtime.gateway.unit_of_work(None) as uow:
        if code is not None:
            try:
                location = await uow.locations.get_by_code(code)
            except NotFound:
                raise NoAccess("no membership at that location") from None
        else:
            active = [m for m in await uow.memberships.for_user(user_id) if m.is_active]
            if len({m.location_id for m in active}) != 1:
                return None
            location = await uow.locations.get(active[0].location_id)
    access = await runtime.services.access.resolve_access(user_id, location.id)
    return access.location


@post(
    "/logout",
    opt={"authenticated": True, "audit_action": "LOGOUT", "audit_resource": "session"},
    summary="End the current session",
    description="Revokes the server-side session: the token stops working at once.",
    responses=responses(*AUTH_ERRORS, 422),
    status_code=204,
)
async def logout(crm: CrmDep) -> None:
    """Revoke this session."""
    pipeline = crm.pipeline
    runtime = crm.runtime
    if pipeline.session_id is not None:
        await runtime.sessions.revoke(pipeline.session_id)


@get(
    "/me",
    opt={"authenticated": True, "audit_resource": "session"},
    summary="The signed-in user, location and roles",
    responses=responses(*AUTH_ERRORS, 422),
)
async def me(crm: CrmDep) -> Me:
    """Who the token belongs to."""
    pipeline = crm.pipeline
    if pipeline.user_id is None or pipeline.tenant_id is None or pipeline.session_id is None:
        raise Unauthenticated("not signed in")
    return Me(
        user_id=pipeline.user_id,
        location_id=pipeline.tenant_id,
        roles=sorted(r.value for r in pipeline.roles),
        session_id=pipeline.session_id,
    )


def auth_router() -> Router:
    """Routes under ``/auth``."""
    return Router(
        path="/auth",
        route_handlers=[google_sign_in, logout, me],
        tags=["auth"],
        before_request=strict_query,
    )
