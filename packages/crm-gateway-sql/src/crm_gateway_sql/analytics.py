"""Report metrics pushed down to SQL: one ``GROUP BY`` per metric, a few rows back.

The reference semantics are :mod:`crm_domain.metrics`; this module computes
the same numbers in the database, so a report over a million bookings returns
one row per group, not one per booking.

Local days without a timezone database.  SQLite (and so D1) has none, and the
two engines must agree to the second, so neither uses its own: Python finds
the location's UTC offsets over the query's range
(:func:`crm_domain.metrics.utc_offsets` — a handful of segments, two a year
with daylight saving) and the SQL adds the offset of the segment a record
falls in (a ``CASE`` over bound limits) to its UTC microseconds.  The local
day is then integer arithmetic, the ISO week, weekday and hour too (1970-01-01
was a Thursday),
and the month one date function per engine.  Labels are bound parameters, so
every row is first labelled in a subquery and the outer query groups by those
columns (PostgreSQL cannot match two bound parameters in ``SELECT`` and
``GROUP BY``).  The median of first-response times uses window functions
(SQLite ≥ 3.25, D1, PostgreSQL).  Rows are sorted in Python, by the same key
as the reference, so the engines' collations do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from crm_domain.entities import BookingStatus, ContactStatus, SmsDirection, TaskStatus
from crm_domain.metrics import (
    BOOKING_STATUSES,
    CONTACT_METRICS,
    TIME_DIMENSIONS,
    WEEKDAYS,
    check_query,
    sort_rows,
    utc_offsets,
)
from crm_domain.ports.analytics import Dimension, FunnelStage, Metric, MetricQuery, MetricRow
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from crm_gateway_sql import schema
from crm_gateway_sql.mapping import to_micros
from crm_gateway_sql.session import SqlSession
from crm_gateway_sql.statements import Statement, cached, tenant_scope

_DAY = 86_400_000_000  # microseconds
_EPOCH = date(1970, 1, 1)
_BIG = sa.BigInteger()


class _LocalMonth(FunctionElement[str]):
    """``YYYY-MM`` of a count of seconds since the epoch, read as UTC."""

    type = sa.String()
    name = "local_month"
    inherit_cache = True


@compiles(_LocalMonth)
def _month_sqlite(element: _LocalMonth, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strftime('%Y-%m', {compiler.process(element.clauses, **kw)}, 'unixepoch')"


@compiles(_LocalMonth, "postgresql")
def _month_postgres(element: _LocalMonth, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"to_char(to_timestamp({seconds}) AT TIME ZONE 'UTC', 'YYYY-MM')"


def _big(name: str) -> Any:
    # Cast: D1 binds every number as JSON, which SQLite may take as REAL, and
    # the arithmetic below must stay integer on every engine.
    return sa.cast(sa.bindparam(name, type_=_BIG), _BIG)


def _n(value: int) -> Any:
    """An integer constant written into the SQL (a bound one could arrive as REAL on D1)."""
    return sa.literal_column(str(int(value)), _BIG)


def _local(column: Any, segments: int) -> Any:
    """``column`` (UTC microseconds) plus the offset of its segment, in microseconds."""
    at = sa.type_coerce(column, _BIG)
    if segments == 1:
        return at + _big("k_off0")
    offset = sa.case(
        *((at < _big(f"k_from{i}"), _big(f"k_off{i - 1}")) for i in range(1, segments)),
        else_=_big(f"k_off{segments - 1}"),
    )
    return at + offset


def _band(warmness: Any) -> Any:
    return sa.case((warmness < 40, "cold"), (warmness < 70, "warm"), else_="hot")


def _labels(
    query: MetricQuery, at: Any, segments: int, source: Any, service: Any, warmness: Any
) -> list[Any]:
    """One labelled column per grouping dimension (``location`` is added in Python)."""
    columns: list[Any] = []
    for d in query.dimensions:
        if d in TIME_DIMENSIONS:
            local = _local(at, segments)
            if d is Dimension.DAY:
                label = local // _n(_DAY)
            elif d is Dimension.WEEK:
                label = (local // _n(_DAY) + _n(3)) // _n(7)
            elif d is Dimension.WEEKDAY:
                label = (local // _n(_DAY) + _n(3)) % _n(7)  # 0 is Monday
            elif d is Dimension.HOUR:
                label = (local // _n(3_600_000_000)) % _n(24)
            else:
                label = _LocalMonth(local // _n(1_000_000))
        elif d is Dimension.SOURCE:
            label = sa.func.coalesce(source, "")
        elif d is Dimension.SERVICE_TYPE:
            label = service
        elif d is Dimension.WARMNESS_BAND:
            label = _band(warmness)
        else:
            continue
        columns.append(label.label(f"g_{d.value}"))
    return columns


def _any_of(column: Any, prefix: str, count: int) -> Any:
    return column.in_([sa.bindparam(f"{prefix}{i}") for i in range(count)])


def metric_records(tenant_id: str, query: MetricQuery) -> Statement:
    """The grouped select of ``query`` over ``tenant_id``'s rows (see :func:`aggregate`)."""
    tz = check_query(query)
    segments = utc_offsets(tz, query.start, query.end)
    params: dict[str, Any] = {"k_start": to_micros(query.start), "k_end": to_micros(query.end)}
    for i, (since, offset) in enumerate(segments):
        params[f"k_from{i}"] = to_micros(since)
        params[f"k_off{i}"] = offset * 1_000_000
    for i, source in enumerate(query.sources):
        params[f"k_src{i}"] = source
    for i, service in enumerate(query.service_types):
        params[f"k_svc{i}"] = service
    metric = query.metric
    if metric in CONTACT_METRICS:
        table = schema.contacts
    elif metric in BOOKING_STATUSES:
        table = schema.bookings
    elif metric in (Metric.SMS_INBOUND, Metric.SMS_OUTBOUND):
        table = schema.sms_messages
    else:
        table = schema.tasks
    scope = tenant_scope(table, tenant_id, params)
    assert scope is not None  # every metric table is tenant-owned
    statuses = BOOKING_STATUSES.get(metric)
    if statuses is not None:
        for i, status in enumerate(sorted(statuses)):
            params[f"k_status{i}"] = status.value
    # Constants are parameters too (set on every call: the construct is built once).
    params.update(
        k_new=ContactStatus.NEW.value,
        k_outbound=SmsDirection.OUTBOUND.value,
        k_completed=BookingStatus.COMPLETED.value,
        k_no_show=BookingStatus.NO_SHOW.value,
        k_open=TaskStatus.OPEN.value,
        k_in_progress=TaskStatus.IN_PROGRESS.value,
    )
    if metric in (Metric.SMS_INBOUND, Metric.SMS_OUTBOUND):
        params["k_direction"] = (
            SmsDirection.INBOUND if metric is Metric.SMS_INBOUND else SmsDirection.OUTBOUND
        ).value
    key = (
        "metric",
        metric.value,
        query.dimensions,
        len(segments),
        len(query.sources),
        len(query.service_types),
    )

    def build() -> sa.Executable:
        inner = _inner(query, scope, len(segments), len(statuses or ()))
        return _outer(query, inner)

    return Statement(key, cached(key, build), params)


def _inner(
    query: MetricQuery,
    scope: ColumnElement[bool],
    segments: int,
    statuses: int,
) -> Any:
    """One row per counted record: its labels and what it contributes (``v`` …)."""
    metric = query.metric
    in_range: tuple[Any, Any] = (sa.bindparam("k_start"), sa.bindparam("k_end"))
    if metric in CONTACT_METRICS:
        c, b, m = schema.contacts, schema.bookings, schema.sms_messages
        labels = _labels(query, c.c.created_at, segments, c.c.source, None, c.c.warmness)
        where: list[Any] = [scope, c.c.created_at >= in_range[0], c.c.created_at < in_range[1]]
        if query.sources:
            where.append(_any_of(c.c.source, "k_src", len(query.sources)))
        if metric is Metric.FUNNEL:
            mine = [b.c.tenant_id == c.c.tenant_id, b.c.contact_id == c.c.id]
            if query.service_types:
                mine.append(_any_of(b.c.service_type, "k_svc", len(query.service_types)))
            booked = sa.exists().where(*mine)
            attended = sa.exists().where(*mine, b.c.status == sa.bindparam("k_completed"))
            messaged = sa.exists().where(
                m.c.tenant_id == c.c.tenant_id,
                m.c.contact_id == c.c.id,
                m.c.direction == sa.bindparam("k_outbound"),
            )
            contacted = sa.or_(c.c.status != sa.bindparam("k_new"), messaged, booked)

            def flag(condition: Any, name: str) -> Any:
                return sa.case((condition, 1), else_=0).label(name)

            values = [
                sa.literal(1).label("v"),
                flag(contacted, "contacted"),
                flag(booked, "booked"),
                flag(attended, "attended"),
            ]
        elif metric is Metric.FIRST_RESPONSE_MINUTES:
            first = (
                sa.select(sa.func.min(m.c.created_at))
                .where(
                    m.c.tenant_id == c.c.tenant_id,
                    m.c.contact_id == c.c.id,
                    m.c.direction == sa.bindparam("k_outbound"),
                    m.c.created_at >= c.c.created_at,
                )
                .scalar_subquery()
            )
            values = [(sa.type_coerce(first, _BIG) - c.c.created_at).label("v")]
            inner = sa.select(*labels, *values).where(*where).subquery("records")
            return sa.select(inner).where(inner.c.v.is_not(None)).subquery("answered")
        else:
            value: Any = c.c.warmness if metric is Metric.AVG_WARMNESS else sa.literal(1)
            values = [value.label("v")]
        return sa.select(*labels, *values).where(*where).subquery("records")
    if metric in BOOKING_STATUSES:
        b, c = schema.bookings, schema.contacts
        needs_source = Dimension.SOURCE in query.dimensions or bool(query.sources)
        labels = _labels(query, b.c.starts_at, segments, c.c.source, b.c.service_type, None)
        where = [scope, b.c.starts_at >= in_range[0], b.c.starts_at < in_range[1]]
        if statuses:
            where.append(_any_of(b.c.status, "k_status", statuses))
        if query.sources:
            where.append(_any_of(c.c.source, "k_src", len(query.sources)))
        if query.service_types:
            where.append(_any_of(b.c.service_type, "k_svc", len(query.service_types)))
        if metric is Metric.NO_SHOW_RATE:
            value = sa.case((b.c.status == sa.bindparam("k_no_show"), 1), else_=0)
        else:
            value = sa.literal(1)
        select = sa.select(*labels, value.label("v"))
        if needs_source:  # the join only when a contact's source is asked for
            select = select.select_from(
                b.outerjoin(c, sa.and_(c.c.tenant_id == b.c.tenant_id, c.c.id == b.c.contact_id))
            )
        return select.where(*where).subquery("records")
    if metric in (Metric.SMS_INBOUND, Metric.SMS_OUTBOUND):
        m = schema.sms_messages
        labels = _labels(query, m.c.created_at, segments, None, None, None)
        where = [
            scope,
            m.c.direction == sa.bindparam("k_direction"),
            m.c.created_at >= in_range[0],
            m.c.created_at < in_range[1],
        ]
        return sa.select(*labels, sa.literal(1).label("v")).where(*where).subquery("records")
    t = schema.tasks
    labels = _labels(query, t.c.created_at, segments, None, None, None)
    where = [
        scope,
        t.c.status.in_([sa.bindparam("k_open"), sa.bindparam("k_in_progress")]),
        t.c.created_at >= in_range[0],
        t.c.created_at < in_range[1],
    ]
    return sa.select(*labels, sa.literal(1).label("v")).where(*where).subquery("records")


def _outer(query: MetricQuery, inner: Any) -> sa.Select[Any]:
    """Group the labelled records: ``n`` records and ``total`` per group."""
    groups = [c for c in inner.c if c.name.startswith("g_")]
    if query.metric is Metric.FIRST_RESPONSE_MINUTES:
        ranked = sa.select(
            *groups,
            inner.c.v,
            sa.func.row_number().over(partition_by=groups or None, order_by=inner.c.v).label("rn"),
            sa.func.count().over(partition_by=groups or None).label("cnt"),
        ).subquery("ranked")
        keys = [c for c in ranked.c if c.name.startswith("g_")]
        middle = sa.or_(
            ranked.c.rn == (ranked.c.cnt + _n(1)) // _n(2),
            ranked.c.rn == (ranked.c.cnt + _n(2)) // _n(2),
        )
        return (
            sa.select(
                *keys,
                sa.func.max(ranked.c.cnt).label("n"),
                sa.func.avg(ranked.c.v).label("total"),
            )
            .where(middle)
            .group_by(*keys)
        )
    extra = []
    if query.metric is Metric.FUNNEL:
        extra = [
            sa.func.sum(inner.c[name]).label(name) for name in ("contacted", "booked", "attended")
        ]
    return sa.select(
        *groups,
        sa.func.count().label("n"),
        sa.func.sum(inner.c.v).label("total"),
        *extra,
    ).group_by(*groups)


def _label(dimension: Dimension, raw: Any) -> str:
    if dimension is Dimension.DAY:
        return (_EPOCH + timedelta(days=int(raw))).isoformat()
    if dimension is Dimension.WEEK:
        return (_EPOCH + timedelta(days=7 * int(raw) - 3)).isoformat()
    if dimension is Dimension.WEEKDAY:
        return WEEKDAYS[int(raw)]
    if dimension is Dimension.HOUR:
        return f"{int(raw):02d}"
    return "" if raw is None else str(raw)


def aggregate(query: MetricQuery, tenant_id: str, records: Sequence[Any]) -> list[MetricRow]:
    """The rows of ``query`` from the grouped rows :func:`metric_records` selected."""
    check_query(query)
    rows: list[MetricRow] = []
    for record in records:
        n = int(record["n"] or 0)
        if n == 0:  # an aggregate over no rows (no dimensions): no row, as the reference
            continue
        keys = {
            d.value: tenant_id if d is Dimension.LOCATION else _label(d, record[f"g_{d.value}"])
            for d in query.dimensions
        }
        total = float(record["total"])
        if query.metric is Metric.FUNNEL:
            stages = (n, record["contacted"], record["booked"], record["attended"])
            rows.extend(
                MetricRow(keys={**keys, "stage": stage.value}, value=float(count), records=n)
                for stage, count in zip(FunnelStage, stages, strict=True)
            )
            continue
        if query.metric is Metric.FIRST_RESPONSE_MINUTES:
            value = total / 60_000_000  # the median's microseconds, in minutes
        elif query.metric in (Metric.AVG_WARMNESS, Metric.NO_SHOW_RATE):
            value = total / n
        else:
            value = float(n)
        rows.append(MetricRow(keys=keys, value=value, records=n))
    return sort_rows(rows, query.dimensions)


async def compute(session: SqlSession, tenant_id: str, query: MetricQuery) -> list[MetricRow]:
    """Run :func:`metric_records` and :func:`aggregate`."""
    records = await session.fetch(metric_records(tenant_id, query))
    return aggregate(query, tenant_id, records)


__all__ = ["aggregate", "compute", "metric_records"]
