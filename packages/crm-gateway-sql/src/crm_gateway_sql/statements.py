"""SQLAlchemy Core statements for every repository operation (public and stable).

Building a statement is separate from running it: each builder returns a
:class:`Statement` — a Core construct plus its parameter values — and never
touches a connection.  The SQLite/PostgreSQL sessions of this package run them;
the D1 gateway compiles the same constructs with the SQLite dialect
(:func:`compile_sqlite`) and sends the SQL text and parameters over HTTP.

Constructs are cached by their *shape* (``Statement.key``): the same key always
means the same SQL text, so executors can compile once per key and reuse the
text.  Values never become part of the SQL; they travel as bound parameters.
Lists of values are spelled as one named parameter per item (``r0``, ``r1``, …)
rather than SQLAlchemy's "expanding" parameters, so the compiled text is plain
SQL that any driver (or D1's HTTP API) takes as is.

Tenant scoping happens in exactly one place, :func:`tenant_scope`: every
statement on a table in :data:`~crm_gateway_sql.schema.TENANT_TABLES` gets
``tenant_id = :scope_tenant_id`` from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import attrs
import sqlalchemy as sa
from crm_domain.errors import PermissionDenied
from crm_domain.queries import ListQuery, Op, active_filters
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement

from crm_gateway_sql import schema
from crm_gateway_sql.mapping import chain_key, to_micros

#: The bound parameter carrying the unit of work's location in every scoped statement.
TENANT_PARAM = "scope_tenant_id"

_TENANT_TABLE_NAMES = frozenset(t.name for t in schema.TENANT_TABLES)


@attrs.frozen(slots=True)
class Statement:
    """A Core construct and the values of its bound parameters.

    ``key`` identifies the construct's shape (equal keys ⇒ identical SQL);
    ``write`` tells executors the statement changes data (SQLite routes it to
    the single writer connection).
    """

    key: Hashable
    clause: sa.Executable
    params: dict[str, Any]
    write: bool = False


_cache: dict[Hashable, sa.Executable] = {}
_cache_lock = threading.Lock()


def cached(key: Hashable, build: Callable[[], sa.Executable]) -> sa.Executable:
    """The construct for ``key``, built once by ``build``."""
    clause = _cache.get(key)
    if clause is None:
        with _cache_lock:
            clause = _cache.setdefault(key, build())
    return clause


def is_tenant_table(table: sa.Table) -> bool:
    """Whether rows of ``table`` belong to one location."""
    return table.name in _TENANT_TABLE_NAMES


def tenant_scope(
    table: sa.Table, tenant_id: str | None, params: dict[str, Any]
) -> ColumnElement[bool] | None:
    """The tenant condition for ``table`` (and its parameter put into ``params``).

    The one place where tenant scoping is decided: tenant tables get
    ``tenant_id = :scope_tenant_id``; reaching one without a location is
    refused with ``PermissionDenied`` (the port's rule for unbound units of
    work); global tables get no condition.
    """
    if not is_tenant_table(table):
        return None
    if tenant_id is None:
        raise PermissionDenied(f"{table.name} needs a unit of work bound to a location")
    params[TENANT_PARAM] = tenant_id
    clause = _scope_clauses.get(table.name)
    if clause is None:
        clause = table.c.tenant_id == sa.bindparam(TENANT_PARAM, type_=sa.String)
        _scope_clauses[table.name] = clause
    return clause


# One condition object per table: it only holds a bound parameter, so sharing is safe,
# and building it on every call was a measurable share of a point read.
_scope_clauses: dict[str, ColumnElement[bool]] = {}


def _where(table: sa.Table, tenant_id: str | None, params: dict[str, Any]) -> list[Any]:
    scope = tenant_scope(table, tenant_id, params)
    return [] if scope is None else [scope]


# --- JSON array membership (tags) ---------------------------------------------------


class JsonArrayHas(ColumnElement[bool]):
    """``value`` is an element of the JSON array stored as text in ``column``."""

    inherit_cache = True
    type = sa.Boolean()

    def __init__(self, column: ColumnElement[Any], value: ColumnElement[Any]) -> None:
        self.column = column
        self.value = value


@compiles(JsonArrayHas, "sqlite")
def _has_sqlite(element: JsonArrayHas, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    value = compiler.process(element.value, **kw)
    # Only compiled fragments (a column name and a placeholder) are interpolated.
    return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = {value})"  # noqa: S608


@compiles(JsonArrayHas, "postgresql")
def _has_postgresql(element: JsonArrayHas, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    value = compiler.process(element.value, **kw)
    return f"jsonb_exists(CAST({column} AS jsonb), {value})"


# --- filters --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    return to_micros(value) if isinstance(value, datetime) else value


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filter_clause(table: sa.Table, name: str, op: Op, columns: Sequence[str]) -> Any:
    param: Any = sa.bindparam(f"f_{name}")
    if op is Op.SEARCH:
        return sa.or_(*(table.c[c].ilike(param, escape="\\") for c in columns))
    column = table.c[columns[0]]
    if op is Op.EQ:
        return column == param
    if op is Op.GTE:
        return column >= param
    if op is Op.LT:
        return column < param
    if op is Op.HAS:
        return JsonArrayHas(column, sa.bindparam(f"f_{name}", type_=sa.String))
    raise NotImplementedError(op)  # pragma: no cover - Op is closed


def _filters(
    query: ListQuery, params: dict[str, Any]
) -> tuple[tuple[str, Op, tuple[str, ...]], ...]:
    shape = []
    for name, spec, value in active_filters(query):
        if spec.op is Op.SEARCH:
            params[f"f_{name}"] = f"%{_escape_like(str(value))}%"
        else:
            params[f"f_{name}"] = _plain(value)
        shape.append((name, spec.op, spec.columns))
    return tuple(shape)


# --- generic repository statements ---------------------------------------------------------


def insert(table: sa.Table, row: Mapping[str, Any]) -> Statement:
    """Insert one row (parameters named after the columns)."""
    return Statement(
        ("insert", table.name), cached(("insert", table.name), table.insert), dict(row), True
    )


def insert_many(table: sa.Table) -> Statement:
    """The insert to run with many rows (``executemany``); rows are passed separately."""
    return Statement(("insert", table.name), cached(("insert", table.name), table.insert), {}, True)


def get_by(
    table: sa.Table, tenant_id: str | None, column: str, value: Any, *, for_update: bool = False
) -> Statement:
    """``SELECT * FROM table WHERE column = :value`` (scoped)."""
    params: dict[str, Any] = {"k_value": value}
    where = _where(table, tenant_id, params)
    key = ("get_by", table.name, column, bool(where), for_update)

    def build() -> sa.Executable:
        stmt = sa.select(table).where(table.c[column] == sa.bindparam("k_value"), *where)
        return stmt.with_for_update() if for_update else stmt

    return Statement(key, cached(key, build), params)


def get(table: sa.Table, tenant_id: str | None, entity_id: str) -> Statement:
    """Select the row with this id (scoped)."""
    return get_by(table, tenant_id, "id", entity_id)


def update(table: sa.Table, tenant_id: str | None, row: Mapping[str, Any]) -> Statement:
    """Replace every column but ``id``/``tenant_id`` of the row with ``row['id']`` (scoped)."""
    params = dict(row)
    params["k_id"] = row["id"]
    where = _where(table, tenant_id, params)
    key = ("update", table.name, bool(where))

    def build() -> sa.Executable:
        values = {
            c.name: sa.bindparam(c.name, type_=c.type)
            for c in table.columns
            if c.name not in ("id", "tenant_id")
        }
        return table.update().where(table.c.id == sa.bindparam("k_id"), *where).values(values)

    return Statement(key, cached(key, build), params, True)


def count_equal(table: sa.Table, tenant_id: str | None, column: str, value: Any) -> Statement:
    """``SELECT count(*) FROM table WHERE column = :value`` (scoped): rows referring to a row."""
    params: dict[str, Any] = {"k_value": value}
    where = _where(table, tenant_id, params)
    key = ("count_equal", table.name, column, bool(where))

    def build() -> sa.Executable:
        return (
            sa.select(sa.func.count())
            .select_from(table)
            .where(table.c[column] == sa.bindparam("k_value"), *where)
        )

    return Statement(key, cached(key, build), params)


def delete(table: sa.Table, tenant_id: str | None, entity_id: str) -> Statement:
    """Delete the row with this id (scoped)."""
    params: dict[str, Any] = {"k_id": entity_id}
    where = _where(table, tenant_id, params)
    key = ("delete", table.name, bool(where))

    def build() -> sa.Executable:
        return table.delete().where(table.c.id == sa.bindparam("k_id"), *where)

    return Statement(key, cached(key, build), params, True)


def _scope_param(column: str | None, value: Any, params: dict[str, Any]) -> bool:
    """Bind the extra scope's value; ``True`` when it is ``None`` (an ``IS NULL`` shape)."""
    if column is None or value is None:
        return column is not None
    params["k_scope"] = value
    return False


def _scope_clause(table: sa.Table, column: str, is_null: bool) -> ColumnElement[bool]:
    if is_null:
        return table.c[column].is_(None)
    return table.c[column] == sa.bindparam("k_scope")


def list_page(
    table: sa.Table,
    tenant_id: str | None,
    query: ListQuery,
    *,
    scope_column: str | None = None,
    scope_value: Any = None,
) -> Statement:
    """One keyset page: filters, ``id < :after_id``, ``ORDER BY id DESC LIMIT limit + 1``.

    The extra row tells :func:`crm_domain.pagination.page_from_rows` that a next
    page exists.  ``scope_column``/``scope_value`` add one more condition (the
    audit trail's ``tenant_id``): equality, or ``IS NULL`` when the value is ``None``.
    """
    params: dict[str, Any] = {"limit": query.limit + 1}
    where_shape = _where(table, tenant_id, params)
    shape = _filters(query, params)
    after = query.after_id
    if after is not None:
        params["after_id"] = after
    scope_null = _scope_param(scope_column, scope_value, params)
    key = (
        "list",
        table.name,
        bool(where_shape),
        shape,
        after is not None,
        scope_column,
        scope_null,
    )

    def build() -> sa.Executable:
        conditions: list[Any] = list(where_shape)
        if scope_column is not None:
            conditions.append(_scope_clause(table, scope_column, scope_null))
        conditions.extend(_filter_clause(table, n, op, cols) for n, op, cols in shape)
        if after is not None:
            conditions.append(table.c.id < sa.bindparam("after_id", type_=sa.String))
        return (
            sa.select(table)
            .where(*conditions)
            .order_by(table.c.id.desc())
            .limit(sa.bindparam("limit", type_=sa.Integer))
        )

    return Statement(key, cached(key, build), params)


def count(
    table: sa.Table,
    tenant_id: str | None,
    query: ListQuery,
    *,
    scope_column: str | None = None,
    scope_value: Any = None,
) -> Statement:
    """``SELECT count(*)`` of the rows matching the query's filters (paging ignored)."""
    params: dict[str, Any] = {}
    where_shape = _where(table, tenant_id, params)
    shape = _filters(query, params)
    scope_null = _scope_param(scope_column, scope_value, params)
    key = ("count", table.name, bool(where_shape), shape, scope_column, scope_null)

    def build() -> sa.Executable:
        conditions: list[Any] = list(where_shape)
        if scope_column is not None:
            conditions.append(_scope_clause(table, scope_column, scope_null))
        conditions.extend(_filter_clause(table, n, op, cols) for n, op, cols in shape)
        return sa.select(sa.func.count()).select_from(table).where(*conditions)

    return Statement(key, cached(key, build), params)


def _in(column: Any, prefix: str, values: Sequence[Any], params: dict[str, Any]) -> Any:
    """``column IN (:p0, :p1, …)`` with one named parameter per value."""
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
    return column.in_([sa.bindparam(f"{prefix}{i}") for i in range(len(values))])


def insert_ignore(table: sa.Table, row: Mapping[str, Any]) -> Statement:
    """Insert one row unless its key exists (``ON CONFLICT DO NOTHING``; rowcount 0 then).

    Written with PostgreSQL's construct, which the SQLite dialect renders with
    the same syntax (SQLite ≥ 3.24, D1 included).
    """
    from sqlalchemy.dialects import postgresql

    key = ("insert_ignore", table.name)
    return Statement(
        key, cached(key, lambda: postgresql.insert(table).on_conflict_do_nothing()), dict(row), True
    )


# --- permissions, memberships, sessions (global tables) ------------------------------------


def permission_remove(role: str, resource: str, action: str) -> Statement:
    """Delete the grant of ``resource:action`` to ``role``."""
    t = schema.permissions
    key = ("permission_remove",)

    def build() -> sa.Executable:
        return t.delete().where(
            t.c.role == sa.bindparam("k_role"),
            t.c.resource == sa.bindparam("k_resource"),
            t.c.action == sa.bindparam("k_action"),
        )

    params = {"k_role": role, "k_resource": resource, "k_action": action}
    return Statement(key, cached(key, build), params, True)


def permissions_for_roles(roles: Sequence[str]) -> Statement:
    """Every grant of any of ``roles`` (ordered by id)."""
    t = schema.permissions
    params: dict[str, Any] = {}
    condition = _in(t.c.role, "r", roles, params)
    key = ("permissions_for_roles", len(roles))
    return Statement(
        key, cached(key, lambda: sa.select(t).where(condition).order_by(t.c.id)), params
    )


def select_all(table: sa.Table) -> Statement:
    """Every row of a (small, global) table, ordered by id."""
    key = ("select_all", table.name)
    return Statement(key, cached(key, lambda: sa.select(table).order_by(table.c.id)), {})


def select_where(
    table: sa.Table, tenant_id: str | None, equal: Mapping[str, Any], *, order_by: str = "id"
) -> Statement:
    """Rows whose columns equal ``equal`` (scoped).

    ``order_by`` is ``"id"`` (descending), ``"id_asc"`` or a column name.
    """
    params: dict[str, Any] = {}
    where = _where(table, tenant_id, params)
    names = tuple(equal)
    for name in names:
        params[f"k_{name}"] = equal[name]
    key = ("select_where", table.name, bool(where), names, order_by)

    def build() -> sa.Executable:
        conditions = [*where, *(table.c[n] == sa.bindparam(f"k_{n}") for n in names)]
        if order_by == "id":
            order: Any = table.c.id.desc()
        elif order_by == "id_asc":
            order = table.c.id
        else:
            order = table.c[order_by]
        return sa.select(table).where(*conditions).order_by(order)

    return Statement(key, cached(key, build), params)


def update_columns(
    table: sa.Table,
    tenant_id: str | None,
    key_columns: Mapping[str, Any],
    values: Mapping[str, Any],
) -> Statement:
    """``UPDATE table SET values WHERE key_columns`` (scoped)."""
    params: dict[str, Any] = {}
    where = _where(table, tenant_id, params)
    knames = tuple(key_columns)
    vnames = tuple(values)
    for name in knames:
        params[f"k_{name}"] = key_columns[name]
    for name in vnames:
        params[f"v_{name}"] = values[name]
    key = ("update_columns", table.name, bool(where), knames, vnames)

    def build() -> sa.Executable:
        conditions = [*where, *(table.c[n] == sa.bindparam(f"k_{n}") for n in knames)]
        return (
            table.update()
            .where(*conditions)
            .values({n: sa.bindparam(f"v_{n}", type_=table.c[n].type) for n in vnames})
        )

    return Statement(key, cached(key, build), params, True)


def delete_where(table: sa.Table, tenant_id: str | None, equal: Mapping[str, Any]) -> Statement:
    """``DELETE FROM table WHERE equal`` (scoped): a conditional delete, e.g. compare-and-delete."""
    params: dict[str, Any] = {}
    where = _where(table, tenant_id, params)
    names = tuple(equal)
    for name in names:
        params[f"k_{name}"] = equal[name]
    key = ("delete_where", table.name, bool(where), names)

    def build() -> sa.Executable:
        conditions = [*where, *(table.c[n] == sa.bindparam(f"k_{n}") for n in names)]
        return table.delete().where(*conditions)

    return Statement(key, cached(key, build), params, True)


# --- audit -------------------------------------------------------------------------------


def audit_head(tenant_id: str | None) -> Statement:
    """The last entry of a chain (highest sequence)."""
    t = schema.hipaa_audit_log
    key = ("audit_head",)

    def build() -> sa.Executable:
        return (
            sa.select(t)
            .where(t.c.chain == sa.bindparam("k_chain"))
            .order_by(t.c.sequence.desc())
            .limit(1)
        )

    return Statement(key, cached(key, build), {"k_chain": chain_key(tenant_id)})


def audit_chain(tenant_id: str | None, after_sequence: int, limit: int) -> Statement:
    """Entries of a chain after ``after_sequence``, in sequence order."""
    t = schema.hipaa_audit_log
    key = ("audit_chain",)

    def build() -> sa.Executable:
        return (
            sa.select(t)
            .where(t.c.chain == sa.bindparam("k_chain"), t.c.sequence > sa.bindparam("k_after"))
            .order_by(t.c.sequence)
            .limit(sa.bindparam("limit", type_=sa.Integer))
        )

    params = {"k_chain": chain_key(tenant_id), "k_after": after_sequence, "limit": limit}
    return Statement(key, cached(key, build), params)


def audit_get(tenant_id: str | None, entry_id: str) -> Statement:
    """One entry of the bound chain."""
    t = schema.hipaa_audit_log
    key = ("audit_get",)

    def build() -> sa.Executable:
        return sa.select(t).where(
            t.c.id == sa.bindparam("k_id"), t.c.chain == sa.bindparam("k_chain")
        )

    return Statement(key, cached(key, build), {"k_id": entry_id, "k_chain": chain_key(tenant_id)})


def audit_chains() -> Statement:
    """The distinct chain keys present (for verifying the whole log)."""
    t = schema.hipaa_audit_log
    key = ("audit_chains",)
    return Statement(
        key, cached(key, lambda: sa.select(t.c.chain).distinct().order_by(t.c.chain)), {}
    )


# --- outbox --------------------------------------------------------------------------------


def outbox_claim(now: int, until: int, limit: int) -> Statement:
    """Lease up to ``limit`` due pending messages: one ``UPDATE … RETURNING``.

    A message is due when ``available_at <= now`` and it is not leased (or its
    lease lapsed: ``claimed_until < now``); claiming counts an attempt.  On
    PostgreSQL the inner select takes ``FOR UPDATE SKIP LOCKED`` so concurrent
    consumers never block on or share a message; SQLite has one writer at a
    time, which serialises claims by itself (its compiler drops the clause).
    Rows come back unordered: callers sort.
    """
    t = schema.outbox
    key = ("outbox_claim",)

    def build() -> sa.Executable:
        due = (
            sa.select(t.c.event_id)
            .where(
                t.c.status == "pending",
                t.c.available_at <= sa.bindparam("k_now"),
                sa.or_(t.c.claimed_until.is_(None), t.c.claimed_until < sa.bindparam("k_now")),
            )
            .order_by(t.c.event_id)
            .limit(sa.bindparam("limit", type_=sa.Integer))
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        # A CTE, not ``IN (subquery)``: PostgreSQL may re-run a LIMIT subquery
        # inside a semi-join and lease more than ``limit`` rows; a locking CTE
        # is evaluated exactly once.
        return (
            t.update()
            .where(t.c.event_id == due.c.event_id)
            .values(
                claimed_until=sa.bindparam("v_until", type_=sa.BigInteger),
                attempts=t.c.attempts + 1,
            )
            .returning(*t.c)
        )

    return Statement(
        key, cached(key, build), {"k_now": now, "v_until": until, "limit": limit}, True
    )


def outbox_complete(event_ids: Sequence[str]) -> Statement:
    """Mark messages done."""
    t = schema.outbox
    params: dict[str, Any] = {}
    condition = _in(t.c.event_id, "e", event_ids, params)
    key = ("outbox_complete", len(event_ids))

    def build() -> sa.Executable:
        return t.update().where(condition).values(status="done")

    return Statement(key, cached(key, build), params, True)


def outbox_fail(event_id: str, error: str, retry_at: int, *, dead: bool) -> Statement:
    """Record a failure (claiming counted the attempt): due again at ``retry_at``, or dead."""
    t = schema.outbox
    key = ("outbox_fail",)

    def build() -> sa.Executable:
        return (
            t.update()
            .where(t.c.event_id == sa.bindparam("k_id"))
            .values(
                status=sa.bindparam("v_status", type_=sa.String),
                last_error=sa.bindparam("v_error", type_=sa.Text),
                available_at=sa.bindparam("v_retry", type_=sa.BigInteger),
                claimed_until=None,
            )
        )

    params = {
        "k_id": event_id,
        "v_status": "dead" if dead else "pending",
        "v_error": error,
        "v_retry": retry_at,
    }
    return Statement(key, cached(key, build), params, True)


def outbox_by_status(status: str, limit: int) -> Statement:
    """Messages in one status, oldest event first."""
    t = schema.outbox
    key = ("outbox_by_status",)

    def build() -> sa.Executable:
        return (
            sa.select(t)
            .where(t.c.status == sa.bindparam("k_status"))
            .order_by(t.c.event_id)
            .limit(sa.bindparam("limit", type_=sa.Integer))
        )

    return Statement(key, cached(key, build), {"k_status": status, "limit": limit})


# --- compiling for a plain driver ---------------------------------------------------------------


@attrs.frozen(slots=True)
class CompiledSql:
    """SQL text for one statement shape, ready for a DB-API driver.

    ``sql`` uses ``qmark`` or ``named`` placeholders; ``positions`` lists the
    parameter names in placeholder order (qmark); ``defaults`` holds values the
    construct itself bound (literals, SQLite's ``OFFSET -1``).
    """

    sql: str
    positions: tuple[str, ...]
    defaults: dict[str, Any]

    def named_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Parameters for ``named`` placeholders: defaults overlaid with ``params``."""
        return {**self.defaults, **params} if self.defaults else dict(params)

    def positional_params(self, params: Mapping[str, Any]) -> list[Any]:
        """Parameters for ``qmark`` placeholders, in order."""
        merged = self.named_params(params)
        return [merged[name] for name in self.positions]


def compile_sqlite(clause: sa.Executable, *, paramstyle: str = "named") -> CompiledSql:
    """Compile a construct with the SQLite dialect (``named`` or ``qmark`` placeholders)."""
    dialect = sqlite_dialect.dialect(paramstyle=paramstyle)
    # Executable's stubs lack compile(); every statement we build is a ClauseElement.
    compiled = cast("SQLCompiler", cast("sa.ClauseElement", clause).compile(dialect=dialect))
    defaults = {
        name: bind.effective_value
        for bind, name in compiled.bind_names.items()
        if not bind.required
    }
    positions = tuple(compiled.positiontup or ())
    return CompiledSql(str(compiled), positions, defaults)


__all__ = [
    "TENANT_PARAM",
    "CompiledSql",
    "JsonArrayHas",
    "Statement",
    "audit_chain",
    "audit_chains",
    "audit_get",
    "audit_head",
    "cached",
    "compile_sqlite",
    "count",
    "delete",
    "delete_where",
    "get",
    "get_by",
    "insert",
    "insert_ignore",
    "insert_many",
    "is_tenant_table",
    "list_page",
    "outbox_by_status",
    "outbox_claim",
    "outbox_complete",
    "outbox_fail",
    "permission_remove",
    "permissions_for_roles",
    "select_all",
    "select_where",
    "tenant_scope",
    "update",
    "update_columns",
]
