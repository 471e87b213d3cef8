"""Driver failures as domain errors: the only place that knows driver exceptions.

* the database is down, unreachable, locked past the busy timeout, timed out,
  or its connection was killed → :class:`~crm_domain.errors.Unavailable`;
* a unique key or primary key is taken → :class:`~crm_domain.errors.Conflict`;
* a foreign key does not resolve on insert/update →
  :class:`~crm_domain.errors.ValidationError` naming the column; a row still
  referenced on delete → ``Conflict``;
* a NOT NULL/CHECK violation → ``ValidationError``;
* PostgreSQL refusing a statement by privilege or row-level security →
  :class:`~crm_domain.errors.PermissionDenied`.
"""

from __future__ import annotations

import asyncio
import sqlite3

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from crm_domain.errors import Conflict, CrmError, PermissionDenied, Unavailable, ValidationError

from crm_gateway_sql.schema import metadata
from crm_gateway_sql.statements import Statement


class DuplicateKey(Conflict):
    """An insert refused by a primary or unique key (not by a trigger or a check).

    Repositories that can name the taken key better (the audit log: only an id
    can be taken under the chain lock) catch this type rather than any ``Conflict``.
    """


class StillReferenced(Conflict):
    """A delete refused by a foreign key: the repository replaces it with counts.

    The driver's message does not say which rows refer (and SQLite's says
    nothing at all), so the repository counts them — only on this error path —
    and raises :func:`crm_domain.relations.still_referenced`'s ``Conflict``.
    """


def fk_column(fk: sa.ForeignKeyConstraint) -> str:
    """The column a failing foreign key is reported under (what the caller set)."""
    names = [c.name for c in fk.columns if c.name != "tenant_id" and not c.name.endswith("_scope")]
    return names[0] if names else "tenant_id"


def foreign_keys_in_order(table: sa.Table) -> list[sa.ForeignKeyConstraint]:
    """A table's foreign keys, the location key first, then in column order."""
    order = {c.name: i for i, c in enumerate(table.columns)}
    return sorted(
        table.foreign_key_constraints,
        key=lambda fk: (fk_column(fk) != "tenant_id", order[fk_column(fk)]),
    )


def _fk_column(table_name: str | None, constraint: str | None = None) -> str:
    """The column to name when a foreign key of ``table_name`` fails."""
    table = metadata.tables.get(table_name or "")
    if table is None:
        return "reference"
    fks = foreign_keys_in_order(table)
    for fk in fks:
        if constraint is not None and fk.name == constraint:
            return fk_column(fk)
    return fk_column(fks[0]) if fks else "reference"


def _table_of(statement: Statement | None) -> str | None:
    if statement is None:
        return None
    key = statement.key
    if isinstance(key, tuple) and len(key) > 1 and isinstance(key[1], str):
        return key[1]
    return None


def _is_delete(statement: Statement | None) -> bool:
    return (
        statement is not None and isinstance(statement.key, tuple) and statement.key[0] == "delete"
    )


def from_sqlite(exc: BaseException, statement: Statement | None = None) -> CrmError:
    """Translate a stdlib ``sqlite3`` error."""
    message = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        if "FOREIGN KEY" in message:
            if _is_delete(statement):
                return StillReferenced("still referenced by other records")
            column = _fk_column(_table_of(statement))
            return ValidationError(column, "refers to a record that does not exist")
        if "UNIQUE" in message or "PRIMARY KEY" in message:
            return DuplicateKey(
                f"already exists ({message.removeprefix('UNIQUE constraint failed: ')})"
            )
        if "NOT NULL" in message or "CHECK" in message:
            return ValidationError(message.rsplit(".", 1)[-1], message)
        return Conflict(message)
    return Unavailable(f"SQLite database unavailable: {message}")


# PostgreSQL SQLSTATE classes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_UNIQUE = "23505"
_FOREIGN_KEY = "23503"
_NOT_NULL = "23502"
_CHECK = "23514"
_INSUFFICIENT_PRIVILEGE = "42501"


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None), exc):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def from_postgres(exc: BaseException, statement: Statement | None = None) -> CrmError:
    """Translate an error raised through SQLAlchemy's asyncpg dialect (or by asyncpg)."""
    code = _sqlstate(exc)
    text = str(getattr(exc, "orig", None) or exc).strip()
    detail = (text.splitlines()[0] if text else type(exc).__name__)[:300]
    if code == _UNIQUE:
        return DuplicateKey(f"already exists ({detail})")
    if code == _FOREIGN_KEY:
        if _is_delete(statement):
            return StillReferenced("still referenced by other records")
        # Through SQLAlchemy the asyncpg error is the DBAPI error's cause;
        # a statement run on the driver raises it directly.
        constraint = getattr(
            getattr(getattr(exc, "orig", None), "__cause__", None), "constraint_name", None
        ) or getattr(exc, "constraint_name", None)
        return ValidationError(
            _fk_column(_table_of(statement), constraint), "refers to a record that does not exist"
        )
    if code in (_NOT_NULL, _CHECK):
        return ValidationError("record", detail)
    if code is not None and code.startswith("23"):
        return Conflict(detail)
    if code == _INSUFFICIENT_PRIVILEGE:
        # Row-level security or a missing grant refused the statement.
        return PermissionDenied(detail)
    return Unavailable(f"PostgreSQL unavailable: {detail}")


#: Exceptions that mean "the database cannot be reached or used right now".
UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    TimeoutError,
    ConnectionError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)

#: Everything a session translates (anything else is a bug and propagates).
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    *UNAVAILABLE_TYPES,
    sqlite3.Error,
    sa_exc.DBAPIError,
)

__all__ = [
    "DRIVER_ERRORS",
    "UNAVAILABLE_TYPES",
    "DuplicateKey",
    "fk_column",
    "foreign_keys_in_order",
    "from_postgres",
    "from_sqlite",
]
