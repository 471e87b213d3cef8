"""OpenAPI documentation helpers: every route lists its permission and its error responses."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation

from crm_http_litestar.problems import PROBLEM_JSON, Problem

#: Errors any authenticated route can answer.
AUTH_ERRORS = (401, 403, 429, 503)
#: Errors of a route that reads one resource by id.
READ_ONE_ERRORS = (*AUTH_ERRORS, 404, 422)
#: Errors of a list route.
LIST_ERRORS = (*AUTH_ERRORS, 422)
#: Errors of a route that takes a JSON body.
WRITE_ERRORS = (*AUTH_ERRORS, 409, 413, 415, 422)
#: Errors of a route whose body names other records by id (``contact_id``…).
WRITE_WITH_REFERENCES_ERRORS = (*WRITE_ERRORS, 404)
#: How a list route treats a filter on another location's id (documented on each).
FOREIGN_FILTER_NOTE = (
    "An id filter naming another location's record finds nothing: an empty page,"
    " the same as for an id that does not exist."
)

_WHY = {
    401: "No token, or the token or its session is not valid (expired, signed out, idle).",
    403: "The permission is not granted, or the client address is not allowed here.",
    404: (
        "No such id at this location, in the path or in a body field (`field` names it);"
        " another location's id is also a 404, with the same answer."
    ),
    409: "Conflicts with the current state (duplicate, illegal transition, reused key).",
    413: "The body is too large.",
    415: "The body is not application/json.",
    422: "A field is invalid; `field` names it.",
    429: "Too many requests from this user, or from this address without a token; see Retry-After.",
    503: "A backend (database, audit log) is unavailable; retry later.",
}


def responses(*statuses: int) -> dict[int, ResponseSpec]:
    """Problem-details response specs for the given statuses."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=f"{HTTPStatus(status).phrase}. {_WHY.get(status, '')}".strip(),
            media_type=PROBLEM_JSON,
        )
        for status in sorted(set(statuses))
    }


class PublicOperation(Operation):
    """An operation that needs no token: says ``security: []`` in the document.

    Litestar drops an empty ``security`` list, so the operation inherited the
    document's bearer requirement and clients (and fuzzers) thought it needed one.
    """

    def to_schema(self) -> dict[str, Any]:
        """The operation's OpenAPI object, with its empty security requirement."""
        schema = super().to_schema()
        schema["security"] = []
        return schema


def permission_doc(permission: str, text: str = "") -> str:
    """An operation description that names its permission."""
    return f"**Permission:** `{permission}`.\n\n{text}".strip()


__all__ = [
    "AUTH_ERRORS",
    "FOREIGN_FILTER_NOTE",
    "LIST_ERRORS",
    "READ_ONE_ERRORS",
    "WRITE_ERRORS",
    "WRITE_WITH_REFERENCES_ERRORS",
    "PublicOperation",
    "permission_doc",
    "responses",
]
