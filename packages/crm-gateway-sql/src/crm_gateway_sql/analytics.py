"""Report metrics: SQL selects the records, Python buckets them.

The database does the selective part — the location, the time range, the
status or direction — through the ``(tenant_id, <time column>)`` indexes, and
returns one narrow tuple per record.  Day/week/month buckets are then computed
in Python with :func:`crm_domain.metrics.bucket`, because they are
taken in the location's timezone and SQLite (and D1) have no timezone
database; doing it once in Python keeps every engine's numbers identical to
the reference semantics.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from crm_domain.entities import BookingStatus, SmsDirection, TaskStatus
from crm_domain.errors import ValidationError
from crm_domain.metrics import allowed_dimensions, bucket
from crm_domain.ports.analytics import Dimension, Metric, MetricQuery, MetricRow

from crm_gateway_sql import schema
from crm_gateway_sql.mapping import from_micros, to_micros
from crm_gateway_sql.session import SqlSession
from crm_gateway_sql.statements import Statement, cached, tenant_scope

_TIME = frozenset({Dimension.DAY, Dimension.WEEK, Dimension.MONTH})
_BOOKING_STATUS: dict[Metric, str | None] = {
    Metric.BOOKINGS: None,
    Metric.COMPLETED: BookingStatus.COMPLETED.value,
    Metric.NO_SHOWS: BookingStatus.NO_SHOW.value,
    Metric.CANCELLATIONS: BookingStatus.CANCELLED.value,
}


def _scope(table: sa.Table, tenant_id: str, params: dict[str, Any]) -> Any:
    scope = tenant_scope(table, tenant_id, params)
    assert scope is not None  # every metric table is tenant-owned
    return scope


def metric_records(tenant_id: str, query: MetricQuery) -> Statement:
    """Select ``(at, source, service_type, value)`` for every record the metric counts."""
    params: dict[str, Any] = {
        "k_start": to_micros(query.start),
        "k_end": to_micros(query.end),
    }
    metric = query.metric
    key: tuple[Any, ...]
    if metric in (Metric.NEW_CONTACTS, Metric.AVG_WARMNESS):
        c = schema.contacts
        scope = _scope(c, tenant_id, params)
        key = ("metric", "contacts")

        def build() -> sa.Executable:
            return sa.select(
                c.c.created_at.label("at"),
                c.c.source.label("source"),
                sa.null().label("service_type"),
                c.c.warmness.label("value"),
            ).where(
                scope,
                c.c.created_at >= sa.bindparam("k_start"),
                c.c.created_at < sa.bindparam("k_end"),
            )

    elif metric in _BOOKING_STATUS:
        b, c = schema.bookings, schema.contacts
        scope = _scope(b, tenant_id, params)
        status = _BOOKING_STATUS[metric]
        if status is not None:
            params["k_status"] = status
        key = ("metric", "bookings", status is not None)

        def build() -> sa.Executable:
            joined = b.outerjoin(
                c, sa.and_(c.c.tenant_id == b.c.tenant_id, c.c.id == b.c.contact_id)
            )
            conditions: list[Any] = [
                scope,
                b.c.starts_at >= sa.bindparam("k_start"),
                b.c.starts_at < sa.bindparam("k_end"),
            ]
            if status is not None:
                conditions.append(b.c.status == sa.bindparam("k_status"))
            return (
                sa.select(
                    b.c.starts_at.label("at"),
                    c.c.source.label("source"),
                    b.c.service_type.label("service_type"),
                    sa.literal(1).label("value"),
                )
                .select_from(joined)
                .where(*conditions)
            )

    elif metric in (Metric.SMS_INBOUND, Metric.SMS_OUTBOUND):
        m = schema.sms_messages
        scope = _scope(m, tenant_id, params)
        params["k_direction"] = (
            SmsDirection.INBOUND if metric is Metric.SMS_INBOUND else SmsDirection.OUTBOUND
        ).value
        key = ("metric", "sms")

        def build() -> sa.Executable:
            return sa.select(
                m.c.created_at.label("at"),
                sa.null().label("source"),
                sa.null().label("service_type"),
                sa.literal(1).label("value"),
            ).where(
                scope,
                m.c.direction == sa.bindparam("k_direction"),
                m.c.created_at >= sa.bindparam("k_start"),
                m.c.created_at < sa.bindparam("k_end"),
            )

    else:
        t = schema.tasks
        scope = _scope(t, tenant_id, params)
        params["k_open"] = TaskStatus.OPEN.value
        params["k_in_progress"] = TaskStatus.IN_PROGRESS.value
        key = ("metric", "tasks")

        def build() -> sa.Executable:
            return sa.select(
                t.c.created_at.label("at"),
                sa.null().label("source"),
                sa.null().label("service_type"),
                sa.literal(1).label("value"),
            ).where(
                scope,
                t.c.status.in_([sa.bindparam("k_open"), sa.bindparam("k_in_progress")]),
                t.c.created_at >= sa.bindparam("k_start"),
                t.c.created_at < sa.bindparam("k_end"),
            )

    return Statement(key, cached(key, build), params)


def aggregate(query: MetricQuery, tenant_id: str, records: Sequence[Any]) -> list[MetricRow]:
    """Group ``records`` (rows of :func:`metric_records`) as the reference semantics say."""
    allowed = allowed_dimensions(query.metric)
    for dimension in query.dimensions:
        if dimension not in allowed:
            raise ValidationError(
                "dimensions", f"{query.metric.value} cannot be grouped by {dimension.value}"
            )
    try:
        tz = zoneinfo.ZoneInfo(query.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError("timezone", f"unknown timezone {query.timezone!r}") from None
    groups: dict[tuple[str, ...], list[float]] = {}
    for record in records:
        labels: list[str] = []
        for d in query.dimensions:
            if d in _TIME:
                labels.append(bucket(from_micros(record["at"]), d, tz))
            elif d is Dimension.LOCATION:
                labels.append(tenant_id)
            elif d is Dimension.SOURCE:
                labels.append(record["source"] or "")
            else:
                labels.append(record["service_type"] or "")
        value = float(record["value"]) if query.metric is Metric.AVG_WARMNESS else 1.0
        groups.setdefault(tuple(labels), []).append(value)
    rows: list[MetricRow] = []
    for key in sorted(groups):
        values = groups[key]
        total = sum(values) / len(values) if query.metric is Metric.AVG_WARMNESS else sum(values)
        keys = {d.value: label for d, label in zip(query.dimensions, key, strict=True)}
        rows.append(MetricRow(keys=keys, value=float(total)))
    return rows


async def compute(session: SqlSession, tenant_id: str, query: MetricQuery) -> list[MetricRow]:
    """Run :func:`metric_records` and :func:`aggregate`."""
    allowed = allowed_dimensions(query.metric)
    for dimension in query.dimensions:
        if dimension not in allowed:
            raise ValidationError(
                "dimensions", f"{query.metric.value} cannot be grouped by {dimension.value}"
            )
    records = await session.fetch(metric_records(tenant_id, query))
    return aggregate(query, tenant_id, records)


__all__ = ["aggregate", "compute", "metric_records"]
