"""Errors become RFC 9457 problem details here, and only here.

Every domain error, every Litestar HTTP exception and anything unexpected is
answered with ``application/problem+json`` carrying ``status``, ``title`` and
``detail``.  Bad input is never a 500: Litestar's own 400s (undecodable JSON,
wrong parameter types) are 422s naming the field.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from crm_domain.audit_chain import UndecodableEntry
from crm_domain.errors import (
    Conflict,
    CrmError,
    IpNotAllowed,
    NotFound,
    PermissionDenied,
    Unavailable,
    ValidationError,
)
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.types import ExceptionHandlersMap

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger("crm_http_litestar")

_BACKTICK = re.compile(r"`([^`]+)`")
_AT_PATH = re.compile(r"at `\$\.?([^`]*)`")


class ProblemReference(msgspec.Struct):
    """Records of one kind that still refer to the record a refused delete named."""

    kind: str
    count: int


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem detail as this API sends it."""

    status: int
    title: str
    detail: str
    type: str = "about:blank"
    #: The offending field of a 422 (dotted for nested ones), or of a 404 whose
    #: unknown id came in a body field (``contact_id``) rather than the path.
    field: str | None = None
    #: The request id, to find the matching audit entry.
    request_id: str | None = None
    #: A 409 for a delete refused while other records refer to the record:
    #: which kinds, and how many of each (``[{"kind": "booking", "count": 3}]``).
    references: list[ProblemReference] | None = None


class Unauthenticated(Exception):
    """No token, or a token or session that is not valid (401)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InProgress(Conflict):
    """A 409 the client should simply retry later: answered with ``Retry-After``.

    E.g. an ``Idempotency-Key`` whose first request has not finished (or died
    before storing its answer).
    """

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UnsupportedMediaType(Exception):
    """A body that is not JSON (415)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def problem(
    status: int, detail: str, *, field: str | None = None, request_id: str | None = None
) -> Problem:
    """Build a problem with the standard title of ``status``."""
    return Problem(
        status=status,
        title=HTTPStatus(status).phrase,
        detail=detail,
        field=field,
        request_id=request_id,
    )


def problem_for(exc: BaseException) -> tuple[Problem, dict[str, str]]:
    """Map any exception to (problem, extra headers) — the one mapping of the API."""
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="crm"'
        return problem(401, exc.detail), headers
    if isinstance(exc, UnsupportedMediaType):
        return problem(415, exc.detail), headers
    if isinstance(exc, IpNotAllowed):
        return problem(403, exc.detail or "your address is not allowed at this location"), headers
    if isinstance(exc, PermissionDenied):
        return problem(403, exc.detail), headers
    if isinstance(exc, NotFound):
        return problem(404, exc.detail, field=exc.field), headers
    if isinstance(exc, ValidationError):
        return problem(422, exc.detail, field=exc.field), headers
    if isinstance(exc, InProgress):
        headers["Retry-After"] = str(exc.retry_after)
        return problem(409, exc.detail), headers
    if isinstance(exc, Conflict):
        conflict = problem(409, exc.detail)
        if exc.references:
            conflict.references = [ProblemReference(r.kind, r.count) for r in exc.references]
        return conflict, headers
    if isinstance(exc, UndecodableEntry):
        # Not the client's fault and not transient: the stored trail was edited.
        return problem(
            409,
            f"the audit log holds an entry changed outside the CRM ({exc}); nothing was "
            "done: run `crm audit verify` and restore the entry from a backup",
        ), headers
    if isinstance(exc, Unavailable):
        headers["Retry-After"] = "1"
        return problem(503, exc.detail), headers
    if isinstance(exc, CrmError):
        return problem(422, exc.detail), headers
    if isinstance(exc, ValidationException):
        return _validation_problem(exc), headers
    if isinstance(exc, NotAuthorizedException):
        headers["WWW-Authenticate"] = 'Bearer realm="crm"'
        return problem(401, str(exc.detail)), headers
    if isinstance(exc, PermissionDeniedException):
        return problem(403, str(exc.detail)), headers
    if isinstance(exc, HTTPException):
        status = exc.status_code
        if status == 400:
            # Litestar's 400s are undecodable bodies or parameters: bad input, so 422.
            return problem(422, _plain_detail(exc), field="body"), headers
        for key, value in (exc.headers or {}).items():
            headers[key] = value
        detail = str(exc.detail) if exc.detail else HTTPStatus(status).phrase
        return problem(status, detail), headers
    logger.exception("unhandled error", exc_info=exc)
    return problem(500, "the server failed; the error was logged"), headers


def _plain_detail(exc: HTTPException) -> str:
    detail = str(exc.detail or "")
    return f"the request body is not valid JSON ({detail})" if detail else "invalid request"


def _validation_problem(exc: ValidationException) -> Problem:
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid"))
        key = str(item.get("key", "") or "")
        nested = _AT_PATH.search(message)
        if nested and nested.group(1):
            key = nested.group(1)
            message = message[: nested.start()].rstrip(" -")
        if key == "data":
            unknown = _BACKTICK.search(message) if "unknown field" in message else None
            if unknown:
                return problem(422, f"{unknown.group(1)}: unknown field", field=unknown.group(1))
            if message.strip("'\"") == "data":
                return problem(422, "body: a JSON object is required", field="body")
            key = "body"
        return problem(422, f"{key}: {message}", field=key)
    return problem(422, str(exc.detail))


def problem_response(exc: BaseException, request_id: str | None = None) -> Response[Problem]:
    """The problem-details response for an exception."""
    body, headers = problem_for(exc)
    if request_id is not None:
        body = msgspec.structs.replace(body, request_id=request_id)
    return Response(body, status_code=body.status, media_type=PROBLEM_JSON, headers=headers)


def _handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    state = request.scope.get("state", {}).get("crm")
    request_id = getattr(state, "request_id", None)
    path = request.scope.get("path", "")
    if path == "/console" or path.startswith("/console/"):
        # No console route matched (an unknown page): a browser gets the console's HTML page.
        from crm_http_litestar.console._web import error_page

        return error_page(exc, request_id)
    return problem_response(exc, request_id)


def exception_handlers() -> ExceptionHandlersMap:
    """The exception handlers the plugin installs: everything goes through :func:`problem_for`."""
    return {Exception: _handler, HTTPException: _handler, 500: _handler}


__all__ = [
    "PROBLEM_JSON",
    "InProgress",
    "Problem",
    "Unauthenticated",
    "UnsupportedMediaType",
    "exception_handlers",
    "problem",
    "problem_for",
    "problem_response",
]
