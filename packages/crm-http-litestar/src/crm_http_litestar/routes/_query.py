"""Query parameters are as strict as bodies: typed, bounded, known, and cursors sealed.

* :func:`strict_query` (every resource router's ``before_request`` hook)
  refuses, before any handler runs, a parameter the route does not declare,
  one given twice, a value outside the declared choices (an enum or
  ``Literal``) and a time that is not RFC 3339 with an offset, each a 422
  naming the parameter — the same problem as an unknown or invalid body field.
  Other types and bounds (``limit``, lengths) are Litestar's and msgspec's;
  the domain query checks its filters again (aware times, enum values…) for
  callers that do not come through HTTP.
* :class:`CursorSeal`: the ``next_cursor`` a list answers is the domain's
  cursor plus an HMAC tag binding it to the list (the request path) and the
  location.  A cursor from another list, another location, another server key,
  or edited by hand is a 422 naming ``cursor`` instead of a page that silently
  starts somewhere else.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import hmac
import types
import typing
from datetime import datetime
from typing import Annotated, Any, Literal, cast

import msgspec
from crm_domain.errors import ValidationError
from crm_domain.queries import DEFAULT_LIMIT, MAX_FILTER_LENGTH, MAX_LIMIT
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import QueryParameter
from litestar.types import Empty

from crm_http_litestar.pipeline import request_state

#: ``?limit=``: the page size.
Limit = Annotated[
    int,
    QueryParameter(
        ge=1, le=MAX_LIMIT, description=f"Page size, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})."
    ),
]
#: ``?cursor=``: where the page starts.
Cursor = Annotated[
    str | None,
    QueryParameter(
        max_length=200,
        description=(
            "The `next_cursor` of the previous page of the same list; a cursor of another"
            " list or location, or an edited one, is a 422."
        ),
    ),
]
#: A text filter (exact match unless the route says otherwise).
Text = Annotated[str | None, QueryParameter(max_length=MAX_FILTER_LENGTH)]
#: A bound on a warmness score (``warmness_max`` is exclusive: 101 keeps 100s).
Warmness = Annotated[
    int | None,
    QueryParameter(
        ge=0, le=101, description="A warmness bound, 0-101; the upper one is exclusive."
    ),
]
#: A bound on a time: ISO 8601 **with** a UTC offset.
Instant = Annotated[
    datetime | None,
    QueryParameter(
        description="ISO 8601 with a UTC offset, e.g. `2026-12-01T09:00:00+11:00` or `…Z`;"
        " a time without an offset is a 422."
    ),
]

#: Parameters no route declares but every client may send: none.  (Kept as a
#: named set so a future cache-buster or tracing parameter is a deliberate change.)
ALWAYS_ALLOWED: frozenset[str] = frozenset()
#: Where a handler's declared query parameters are cached (its ``opt``).
_DECLARED_KEY = "crm_declared_query"
#: Where a handler's body struct is cached (its ``opt``).
_BODY_KEY = "crm_body_type"


#: What a declared parameter's raw value is checked against before Litestar parses it.
Rule = frozenset[str] | type[datetime] | None


def _declared(handler: BaseRouteHandler) -> dict[str, Rule]:
    """The query parameters ``handler`` declares, each with its :data:`Rule`."""
    known = handler.opt.get(_DECLARED_KEY)
    if known is None:
        known = {}
        for name, field in handler.parsed_fn_signature.parameters.items():
            kwarg = field.kwarg_definition
            if isinstance(kwarg, QueryParameter):
                # ``name`` is the wire name of a parameter aliased in QueryParameter(name=...).
                known[kwarg.query or kwarg.name or name] = _rule(field.annotation)
        # Computed once per handler: its signature never changes after the app is built.
        handler.opt[_DECLARED_KEY] = known
    return cast("dict[str, Rule]", known)


def _rule(annotation: Any) -> Rule:
    """Choices of an enum or ``Literal`` annotation (also optional), ``datetime``, or ``None``."""
    values: set[str] = set()
    pending = [annotation]
    while pending:
        option = pending.pop()
        origin = typing.get_origin(option)
        if origin is Literal:
            values.update(str(value) for value in typing.get_args(option))
        elif origin is Annotated:
            pending.append(typing.get_args(option)[0])
        elif origin in (typing.Union, types.UnionType):
            pending.extend(typing.get_args(option))
        elif isinstance(option, type) and issubclass(option, enum.Enum):
            values.update(str(member.value) for member in option)
        elif option is datetime:
            return datetime
    return frozenset(values) or None


def _problem(rule: Rule, value: str) -> str | None:
    """Why ``value`` breaks ``rule``, or ``None``."""
    if isinstance(rule, frozenset):
        return None if value in rule else f"must be one of {', '.join(sorted(rule))}"
    if rule is datetime:
        # Litestar parses query times leniently (a number is a Unix time); the
        # schema says RFC 3339, and a time without an offset names no instant.
        try:
            parsed = msgspec.convert(value, datetime)
        except msgspec.ValidationError:
            return "must be an ISO 8601 time with a UTC offset, e.g. 2026-12-01T09:00:00+11:00"
        if parsed.utcoffset() is None:
            return "must include a UTC offset (naive times are ambiguous)"
    return None


def _body_type(handler: BaseRouteHandler) -> type[msgspec.Struct] | None:
    """The struct a handler's ``data`` body decodes to, if it has one."""
    known = handler.opt.get(_BODY_KEY, Empty)
    if known is Empty:
        field = handler.parsed_fn_signature.parameters.get("data")
        annotation = None if field is None else field.annotation
        known = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)
            else None
        )
        handler.opt[_BODY_KEY] = known
    return cast("type[msgspec.Struct] | None", known)


async def _check_body(request: Request[Any, Any, Any]) -> None:
    """Decode the JSON body strictly: ``0`` is not a time, nor ``"5"`` a number.

    Litestar converts bodies leniently (``strict=False``), which accepts what the
    schema forbids.  A refusal is raised as Litestar's own validation error, so it
    becomes the same 422 naming the field; undecodable JSON is left to Litestar.
    """
    body_type = _body_type(request.route_handler)
    if body_type is None:
        return
    raw = await request.body()  # cached: the handler and idempotency read the same bytes
    if not raw.strip():
        return
    try:
        msgspec.json.decode(raw, type=body_type, strict=True)
    except msgspec.ValidationError as exc:
        request_state(request).keep_audit("ValidationError: body")
        raise ValidationException(
            detail="Validation failed", extra=[{"message": str(exc), "key": "data"}]
        ) from None
    except msgspec.DecodeError:
        return


async def strict_query(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: bad query parameters and leniently typed bodies are 422s."""
    await _check_body(request)
    declared = _declared(request.route_handler)
    params = request.query_params
    for name in params:
        if name not in declared and name not in ALWAYS_ALLOWED:
            _refuse(request, name, "unknown query parameter")
        values = params.getall(name)
        if len(values) > 1:
            _refuse(request, name, "given more than once")
        reason = _problem(declared.get(name), values[0])
        if reason is not None:
            _refuse(request, name, reason)


def _refuse(request: Request[Any, Any, Any], name: str, reason: str) -> typing.NoReturn:
    # The audit refuses NUL (its text columns are NUL-free): a fuzzed name is escaped.
    shown = name.replace("\0", "\\0")
    request_state(request).keep_audit(f"ValidationError: {shown}")
    raise ValidationError(name, reason)


# --- cursors ---------------------------------------------------------------------

#: Separates the domain cursor (base64url, never a dot) from its tag.
_SEPARATOR = "."
#: Tag bytes kept: 96 bits, far beyond guessing over HTTP.
_TAG_BYTES = 12
_FOREIGN = "is not a cursor of this list: pass the next_cursor of its previous page"


@functools.lru_cache(maxsize=8)
def _cursor_key(secret: str) -> bytes:
    # A key of its own, derived from the signing key: a cursor tag can never
    # double as any other MAC the server checks (tokens are HS256 with the key itself).
    return hmac.new(secret.encode(), b"crm-http list cursor v1", hashlib.sha256).digest()


class CursorSeal:
    """Seals the domain's cursors to one list and location, and opens only those."""

    __slots__ = ("_key", "_scope")

    def __init__(self, secret: str, *, tenant_id: str | None, path: str) -> None:
        self._key = _cursor_key(secret)
        # The path names the list, ids included (one contact's touchpoints are not another's).
        self._scope = f"{tenant_id or ''}\n{path.rstrip('/') or '/'}\n".encode()

    def _tag(self, inner: str) -> str:
        digest = hmac.new(self._key, self._scope + inner.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:_TAG_BYTES]).decode().rstrip("=")

    def seal(self, inner: str | None) -> str | None:
        """The cursor to hand out for the domain cursor ``inner`` (``None`` at the end)."""
        return None if inner is None else f"{inner}{_SEPARATOR}{self._tag(inner)}"

    def open(self, outer: str | None) -> str | None:
        """The domain cursor inside ``outer``; anything not sealed here is a 422 on ``cursor``."""
        if outer is None:
            return None
        inner, separator, tag = outer.rpartition(_SEPARATOR)
        if (
            not separator
            or not inner
            or not hmac.compare_digest(tag.encode(), self._tag(inner).encode())
        ):
            raise ValidationError("cursor", _FOREIGN)
        return inner


__all__ = [
    "ALWAYS_ALLOWED",
    "Cursor",
    "CursorSeal",
    "Instant",
    "Limit",
    "Text",
    "Warmness",
    "strict_query",
]
