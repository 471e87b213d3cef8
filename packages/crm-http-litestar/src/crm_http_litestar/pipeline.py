"""The security pipeline of docs/architecture.md, applied to every route unless it is marked public.

Order, per request:

1. client address (:mod:`crm_http_litestar.client_ip`) — :class:`RequestGate`;
2. rate limit (:mod:`crm_http_litestar.rate_limit`), in :class:`Authenticate`: an
   address that spent its budget on unauthenticated or failed requests is refused
   before its token is read; public routes, missing and invalid tokens spend the
   address's budget, a valid token spends its user's (staff behind one NAT
   address do not share one budget);
3. token and server-side session, 4. tenant and membership, 5. IP allowlist,
   body media type — :class:`Authenticate`;
6. RBAC guard from the route's declared permission (:func:`rbac_guard`);
7. handler → service;
8. audit — :class:`RequestGate` wraps ``send``: when the response starts and no
   service audited the request, it writes the one entry for it (401s, 403s,
   413/415/422 refused before the service, replays …) and only then lets the
   response out.

Routes declare themselves in ``opt``: ``permission="contacts:read"``,
``authenticated=True`` (pipeline but no permission, e.g. logout) or
``public=True`` (health, the OpenAPI pages, Google sign-in).  A route with none
of them is refused by the guard, and the app refuses to start if any route
under ``/api`` lacks a permission, or any route under ``/console`` lacks a
permission or an explicit ``public``/``authenticated``
(:func:`check_route_permissions`).

Console routes (``opt["console"]``) take the session token from the
:data:`CONSOLE_COOKIE` cookie instead of the ``Authorization`` header, accept
HTML form bodies, and render refusals with ``opt["error_response"]`` (an HTML
page, or a redirect to the sign-in page) instead of problem details; every
other step is the same.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs
from crm_domain.audit import AuditAction
from crm_domain.context import Context
from crm_domain.entities import AuditEntry, AuditOutcome, Role
from crm_domain.errors import CrmError, IpNotAllowed, NotFound, PermissionDenied, Unavailable
from crm_domain.policies import is_allowed
from crm_domain.services import NoAccess
from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from crm_http_litestar.client_ip import resolve_client_ip
from crm_http_litestar.problems import Unauthenticated, UnsupportedMediaType, problem_response
from crm_http_litestar.rate_limit import RateLimited, RateLimits
from crm_http_litestar.tokens import InvalidToken, bearer_token

if TYPE_CHECKING:
    from crm_http_litestar.runtime import CrmRuntime

STATE_KEY = "crm"
#: The staff console's session cookie (the same signed session token the API takes).
CONSOLE_COOKIE = "crm_console"
#: Where the console lives; routes under it must declare a permission or ``public``.
CONSOLE_PATH = "/console"
#: Renders a refusal for a route family: ``(exception, request id) -> response``.
ErrorResponse = Callable[[BaseException, str], Response[Any]]
T = TypeVar("T")

_METHOD_ACTION = {
    "GET": AuditAction.READ,
    "HEAD": AuditAction.READ,
    "POST": AuditAction.CREATE,
    "PUT": AuditAction.UPDATE,
    "PATCH": AuditAction.UPDATE,
    "DELETE": AuditAction.DELETE,
}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: What an HTML form of the console posts (no file uploads).
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded"})


class RouteWithoutPermission(RuntimeError):
    """A route under ``/api`` or ``/console`` declares no permission: the app must not start."""


@attrs.define(slots=True, kw_only=True)
class RequestState:
    """What the pipeline learnt about one request; ``request.state.crm``."""

    request_id: str
    started: float
    client_ip: str | None
    user_agent: str | None
    method: str
    path: str
    user_id: str | None = None
    tenant_id: str | None = None
    session_id: str | None = None
    roles: frozenset[Role] = frozenset()
    context: Context | None = None
    #: Set when a use case took the request: it writes the audit entry itself.
    audited_by_service: bool = False
    #: Set once the request's audit entry is durable (by anyone).
    audited: bool = False
    #: Free-text reason attached to an entry the HTTP layer writes.
    detail: str | None = None

    async def use_case(self, call: Awaitable[T]) -> T:
        """Await one use-case call; the service writes this request's audit entry.

        Build the call's arguments *before* (``state.use_case(svc.get(ctx, q))``):
        a bad argument then fails here un-marked, and the HTTP layer audits it.
        """
        self.audited_by_service = True
        return await call

    def keep_audit(self, detail: str | None = None) -> None:
        """The handler answered without a use case (e.g. a replay): the HTTP layer audits."""
        self.audited_by_service = False
        self.detail = detail


def request_state(connection: ASGIConnection[Any, Any, Any, Any]) -> RequestState:
    """The pipeline's state of this request."""
    state = connection.scope["state"].get(STATE_KEY)
    if not isinstance(state, RequestState):
        raise Unauthenticated("the security pipeline did not run for this route")
    return state


def runtime_of(scope: Scope) -> CrmRuntime:
    """The running services of the app serving ``scope``."""
    runtime = scope["app"].state.get(STATE_KEY)
    if runtime is None:
        raise Unavailable("the server is starting or stopping")
    return cast("CrmRuntime", runtime)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _opt(scope: Scope) -> dict[str, Any]:
    handler = scope.get("route_handler")
    return handler.opt if handler is not None else {}


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return None if morsel is None or not morsel.value else morsel.value


def _error_response(opt: dict[str, Any]) -> ErrorResponse:
    render = opt.get("error_response")
    return cast("ErrorResponse", render) if callable(render) else problem_response


def _should_audit(opt: dict[str, Any]) -> bool:
    return not opt.get("public") or bool(opt.get("audit_action"))


class RequestGate:
    """Outermost pipeline middleware: client address, request id, and the audit of last resort."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        http_scope = scope
        runtime = runtime_of(scope)
        client = scope.get("client")
        peer = client[0] if client else None
        proxies = runtime.settings.trusted_proxies
        if not proxies and peer is not None and peer.count(".") == 3 and ":" not in peer:
            # The common case: a plain IPv4 peer and no proxies to consider; servers
            # report it in canonical dotted form, and the allowlist parses it anyway.
            client_ip: str | None = peer
        else:
            address = resolve_client_ip(peer, scope["headers"], proxies)
            client_ip = None if address is None else str(address)
        state = RequestState(
            # Random, not time-ordered: it only ties a response to its audit entry.
            request_id=uuid.uuid4().hex,
            started=time.perf_counter(),
            client_ip=client_ip,
            user_agent=_header(scope, b"user-agent"),
            method=http_scope["method"],
            path=http_scope["path"],
        )
        scope["state"][STATE_KEY] = state
        opt = _opt(scope)
        audit = _should_audit(opt)
        started = False
        replaced = False

        async def audited_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the original response was swapped for a 503; drop its body
            if message["type"] == "http.response.start":
                started = True
                if audit and not state.audited and not state.audited_by_service:
                    try:
                        await _audit_request(runtime, state, opt, scope, message["status"])
                    except CrmError as exc:
                        # No durable entry, no response: answer 503 instead of the data.
                        replaced = True
                        response = problem_response(
                            exc if isinstance(exc, Unavailable) else Unavailable(exc.detail),
                            state.request_id,
                        )
                        await response.to_asgi_response(app=None, request=Request(scope))(
                            scope, receive, send
                        )
                        return
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", state.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except Exception as exc:
            # Inner middlewares (rate limiting, authentication) raise; answer here so the
            # refusal passes through the audit above instead of Litestar's outer handler.
            if started:
                raise
            response = _error_response(opt)(exc, state.request_id)
            await response.to_asgi_response(app=None, request=Request(scope))(
                scope, receive, audited_send
            )


async def _audit_request(
    runtime: CrmRuntime, state: RequestState, opt: dict[str, Any], scope: Scope, status: int
) -> None:
    permission = str(opt.get("permission") or "")
    resource = str(opt.get("audit_resource") or permission.partition(":")[0] or "http")
    action = str(opt.get("audit_action") or _METHOD_ACTION.get(state.method, state.method))
    if status < 400:
        outcome = AuditOutcome.SUCCESS
    elif status in (401, 403):
        outcome = AuditOutcome.DENIED
    else:
        outcome = AuditOutcome.FAILED
    path_params = scope.get("path_params") or {}
    resource_id = path_params.get("id")
    entry = AuditEntry(
        id=runtime.ids.new_id(),
        tenant_id=state.tenant_id,
        user_id=state.user_id,
        action=action[:32],
        resource_type=resource[:64],
        resource_id=None if resource_id is None else str(resource_id)[:255],
        outcome=outcome,
        ip_address=state.client_ip,
        user_agent=None if state.user_agent is None else state.user_agent[:500],
        request_id=state.request_id,
        request_method=state.method[:16],
        request_path=state.path[:2000],
        status_code=status,
        duration_ms=int((time.perf_counter() - state.started) * 1000),
        detail=None if state.detail is None else state.detail[:2000],
        occurred_at=runtime.clock.now(),
    )
    await runtime.recorder.record(entry)
    state.audited = True


class Authenticate:
    """Rate limit → token → session → tenant → membership → IP allowlist → body media type."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        opt = _opt(scope)
        if opt.get("public"):
            if not opt.get("no_rate_limit"):
                # Public routes (sign-in, docs) prove no identity: the address pays.
                await runtime_of(scope).rate_limits.spend_address(
                    scope["state"][STATE_KEY].client_ip
                )
            await self.app(scope, receive, send)
            return
        runtime = runtime_of(scope)
        state: RequestState = scope["state"][STATE_KEY]
        limits = runtime.rate_limits

        # Before the token is read: an address that spent its budget on failures gets
        # no more answers to its guesses, right or wrong, until the budget refills.
        try:
            await limits.check_address(state.client_ip)
        except RateLimited:
            state.detail = "rate limited: address"
            raise
        console = bool(opt.get("console"))
        if console:
            # The console's pages: the browser holds the token in an HttpOnly cookie.
            token = _cookie(scope, CONSOLE_COOKIE)
        else:
            token = bearer_token(_header(scope, b"authorization"))
        if token is None:
            state.detail = "no console session cookie" if console else "no bearer token"
            await _spend_address(limits, state)
            raise Unauthenticated(
                "sign in first" if console else "sign in first: send Authorization: Bearer <token>"
            )
        try:
            claims, _session = await runtime.sessions.authenticate(token)
        except InvalidToken as exc:
            state.detail = f"invalid token: {exc}"
            await _spend_address(limits, state)
            raise Unauthenticated("the token is not valid or its session has ended") from None
        state.user_id = claims.user_id
        state.session_id = claims.session_id
        try:
            await limits.spend_user(claims.user_id)
        except RateLimited:
            state.detail = "rate limited: user"
            raise

        location_id = claims.location_id
        host_location = await _location_from_host(runtime, scope)
        if host_location is not None:
            if location_id is not None and location_id != host_location:
                state.detail = "token location differs from the host's location"
                raise PermissionDenied("this token is for another location")
            location_id = host_location
        if location_id is None:
            state.detail = "no location in token or host"
            raise PermissionDenied("no location chosen: use a token issued for a location")
        if runtime.access_epoch is not None:
            # Another process changed roles, members or IP rules: drop our caches first.
            await runtime.access_epoch.refresh()
        try:
            access = await runtime.services.access.resolve_access(claims.user_id, location_id)
        except NoAccess:
            state.detail = "no active membership"
            raise
        state.tenant_id = access.location.id
        state.roles = access.roles

        allowlist = await runtime.services.access.allowlist(access.location.id)
        if state.client_ip is None or not allowlist.allows(state.client_ip):
            state.detail = "client address not in the location's IP allowlist"
            raise IpNotAllowed("your network is not allowed to reach this location")

        if state.method in _BODY_METHODS and _has_body(scope):
            content_type = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
            if console:
                if content_type not in _FORM_TYPES:
                    state.detail = f"content type {content_type or 'missing'}"
                    raise UnsupportedMediaType("send the form as application/x-www-form-urlencoded")
            elif content_type != "application/json" and not content_type.endswith("+json"):
                state.detail = f"content type {content_type or 'missing'}"
                raise UnsupportedMediaType("send the body as application/json")

        state.context = Context(
            tenant_id=access.location.id,
            user_id=claims.user_id,
            roles=access.roles,
            custom_permissions=access.custom_permissions,
            client_ip=state.client_ip,
            user_agent=state.user_agent,
            request_id=state.request_id,
            request_method=state.method,
            request_path=state.path,
        )
        await self.app(scope, receive, send)


async def _spend_address(limits: RateLimits, state: RequestState) -> None:
    """A failed authentication costs its address one request (429 once the budget is spent)."""
    try:
        await limits.spend_address(state.client_ip)
    except RateLimited:
        state.detail = f"rate limited: address ({state.detail})"
        raise


def _has_body(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        name = key.lower()
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


async def _location_from_host(runtime: CrmRuntime, scope: Scope) -> str | None:
    base = runtime.settings.base_domain
    if not base:
        return None
    host = (_header(scope, b"host") or "").rsplit(":", 1)[0].strip().lower().rstrip(".")
    suffix = "." + base
    if not host.endswith(suffix):
        return None
    code = host[: -len(suffix)]
    if not code or "." in code:
        return None
    try:
        return (await runtime.services.access.find_location(code)).id
    except NotFound:
        raise NoAccess("no such location") from None


async def rbac_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Step 6: deny unless the route's declared permission is granted (deny by default)."""
    opt = handler.opt
    if opt.get("public") or (opt.get("authenticated") and not opt.get("permission")):
        return
    permission = opt.get("permission")
    state = request_state(connection)
    if not isinstance(permission, str) or ":" not in permission:
        state.detail = "route declares no permission"
        raise PermissionDenied("this route declares no permission and is closed")
    ctx = state.context
    if ctx is None:
        raise Unauthenticated("not signed in")
    resource, _, action = permission.partition(":")
    grants = await runtime_of(connection.scope).grants.grants()
    if not is_allowed(ctx.roles, ctx.custom_permissions, resource, action, grants):
        state.detail = f"permission {permission} not granted"
        roles = ", ".join(sorted(r.value for r in ctx.roles)) or "no role"
        raise PermissionDenied(f"{roles} may not {action} {resource} (needs {permission})")


def check_route_permissions(app: Litestar) -> None:
    """Refuse to start when a route under ``/api`` declares no permission.

    A route under ``/console`` must declare a permission or say explicitly that
    it is ``public`` (sign-in, static files) or ``authenticated`` (sign-out) —
    and be a console route (``opt["console"]``), so it reads the console's
    cookie and renders HTML refusals.  Every other route must be explicitly
    ``public`` or ``authenticated``, or declare a permission; a route that
    forgets is closed by the guard anyway.
    """
    missing: list[str] = []
    for route in app.routes:
        for handler in _handlers(route):
            methods = set(getattr(handler, "http_methods", ()))
            if methods == {"OPTIONS"}:
                # Litestar's automatic OPTIONS answer; the pipeline and guard still apply to it.
                continue
            opt = handler.opt
            declared = opt.get("permission")
            if route.path.startswith("/api") and not (
                isinstance(declared, str) and ":" in declared
            ):
                missing.append(
                    f"{'/'.join(sorted(getattr(handler, 'http_methods', ())))} {route.path}"
                )
            if _is_console(route.path) and not (
                (isinstance(declared, str) and ":" in declared)
                or opt.get("public") is True
                or opt.get("authenticated") is True
            ):
                missing.append(
                    f"{'/'.join(sorted(getattr(handler, 'http_methods', ())))} {route.path}"
                    " (console routes declare a permission, or public/authenticated)"
                )
            elif _is_console(route.path) and not opt.get("console"):
                missing.append(f"{route.path} (console routes declare opt={{'console': True}})")
            if route.path.startswith("/webhooks") and not opt.get("webhook"):
                # Outside the staff pipeline: each webhook must name its own check.
                missing.append(f"{route.path} (webhooks declare opt={{'webhook': 'check'}})")
    if missing:
        raise RouteWithoutPermission(
            "routes under /api and /console must declare opt={'permission': 'resource:action'}: "
            + ", ".join(sorted(missing))
        )


def _is_console(path: str) -> bool:
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


def _handlers(route: Any) -> Iterable[BaseRouteHandler]:
    handlers = getattr(route, "route_handlers", None)
    if handlers is not None:
        return list(handlers)
    single = getattr(route, "route_handler", None)
    return [single] if single is not None else []


__all__ = [
    "CONSOLE_COOKIE",
    "CONSOLE_PATH",
    "STATE_KEY",
    "Authenticate",
    "ErrorResponse",
    "RequestGate",
    "RequestState",
    "RouteWithoutPermission",
    "check_route_permissions",
    "rbac_guard",
    "request_state",
    "runtime_of",
]
