"""The thin layer between the SQL gateway's statements and D1's REST API.

SQL is written once, in :mod:`crm_gateway_sql.statements`: this module only
compiles those constructs with the SQLite dialect (D1 *is* SQLite) into ``?``
placeholders plus a positional parameter list, caches the text per statement
shape, and adds the few statements the D1 unit of work needs that the SQL
gateway has no use for (an unscoped equality lookup, a chunked multi-row
insert that respects D1's 100-parameter limit).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from crm_gateway_sql.statements import CompiledSql, Statement, cached, compile_sqlite
from sqlalchemy.dialects import sqlite as sqlite_dialect

from crm_gateway_d1.client import MAX_PARAMS, D1Statement, Param

_compiled: dict[Hashable, CompiledSql] = {}
_lock = threading.Lock()


def _plain(value: Any) -> Param:
    # D1 binds JSON values; booleans are stored as 0/1 as on SQLite.
    if isinstance(value, bool):
        return int(value)
    return cast("Param", value)


def to_d1(statement: Statement) -> D1Statement:
    """Compile a SQL-gateway statement (cached per shape) into SQL text and positional params."""
    compiled = _compiled.get(statement.key)
    if compiled is None:
        with _lock:
            compiled = _compiled.setdefault(
                statement.key, compile_sqlite(statement.clause, paramstyle="qmark")
            )
    params = compiled.positional_params(statement.params)
    return D1Statement(compiled.sql, tuple(_plain(v) for v in params))


def select_equal(table: sa.Table, equal: Mapping[str, Any]) -> Statement:
    """Rows whose columns equal ``equal`` — unscoped, for the unit of work's key checks.

    (The SQL gateway's ``select_where`` scopes tenant tables to one location;
    a foreign-key check on delete must see every location's rows, e.g. the
    tasks of a user being deleted.)
    """
    names = tuple(equal)
    key = ("d1_select_equal", table.name, names)

    def build() -> sa.Executable:
        conditions = [table.c[n] == sa.bindparam(f"k_{n}") for n in names]
        return sa.select(table).where(*conditions)

    return Statement(key, cached(key, build), {f"k_{n}": equal[n] for n in names})


def count_equal(
    table: sa.Table, column: str, value: Any, *, excluding: Sequence[Sequence[Any]] = ()
) -> Statement | None:
    """``SELECT count(*) FROM table WHERE column = :value`` — unscoped, like :func:`select_equal`.

    ``excluding`` lists primary keys not to count (rows the unit of work's
    buffer replaces); ``None`` when they would not fit D1's parameter limit,
    so the caller reads the rows instead.
    """
    keys = [tuple(k) for k in excluding]
    pk = tuple(c.name for c in table.primary_key.columns)
    if 1 + len(keys) * len(pk) > MAX_PARAMS:
        return None
    key = ("d1_count_equal", table.name, column, len(keys))
    params: dict[str, Any] = {"k_value": value}
    for i, row_key in enumerate(keys):
        for name, part in zip(pk, row_key, strict=True):
            params[f"k_x{i}_{name}"] = part

    def build() -> sa.Executable:
        conditions: list[Any] = [table.c[column] == sa.bindparam("k_value")]
        for i in range(len(keys)):
            same = [table.c[name] == sa.bindparam(f"k_x{i}_{name}") for name in pk]
            conditions.append(sa.not_(sa.and_(*same)))
        return sa.select(sa.func.count()).select_from(table).where(*conditions)

    return Statement(key, cached(key, build), params)


def chunked_insert(table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> list[D1Statement]:
    """Multi-row ``INSERT`` statements, each within D1's 100 bound parameters.

    250 parameters' worth of rows become three statements; one batch still
    carries them all, so the insert stays atomic.
    """
    if not rows:
        return []
    columns = [c.name for c in table.columns]
    per_statement = max(1, MAX_PARAMS // len(columns))
    dialect = sqlite_dialect.dialect(paramstyle="qmark")
    out: list[D1Statement] = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        key = ("d1_insert_rows", table.name, len(chunk))
        sql = _rows_sql.get(key)
        if sql is None:
            clause = table.insert().values([dict.fromkeys(columns) for _ in chunk])
            sql = str(clause.compile(dialect=dialect))
            _rows_sql[key] = sql
        params = tuple(_plain(row.get(c)) for row in chunk for c in columns)
        out.append(D1Statement(sql, params))
    return out


_rows_sql: dict[Hashable, str] = {}


def unless_changed(table: sa.Table, equal: Mapping[str, Any]) -> Statement:
    """A guard making the batch fail with ``UNIQUE`` when the previous statement changed nothing.

    A batch cannot branch on a row count, so a conditional ``UPDATE``/``DELETE``
    that matched no row would pass silently.  Placed right after it, this
    ``INSERT INTO t SELECT * FROM t WHERE <key> AND changes() = 0`` copies the
    row onto its own primary key when — and only when — the conditional
    statement changed nothing while the row still exists (in another state):
    D1 rejects the whole batch with ``UNIQUE constraint failed``, which the
    unit of work reports as ``Conflict``.  ``changes()`` is SQLite's count of
    the last *completed* statement, so it is the guarded statement's.
    """
    names = tuple(equal)
    key = ("d1_unless_changed", table.name, names)

    def build() -> sa.Executable:
        conditions = [table.c[n] == sa.bindparam(f"k_{n}") for n in names]
        source = sa.select(table).where(*conditions, sa.func.changes() == 0)
        return table.insert().from_select([c.name for c in table.columns], source)

    return Statement(key, cached(key, build), {f"k_{n}": equal[n] for n in names}, True)


__all__ = ["chunked_insert", "select_equal", "to_d1", "unless_changed"]
