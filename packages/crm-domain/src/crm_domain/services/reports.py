"""Reports: metrics by dimension over the locations a user may see, questions, insights.

The numbers come from the gateway's analytics repository (SQL pushdown on SQL
gateways, see :mod:`crm_domain.metrics` for the rules); this service decides
*which locations* a report covers and merges them:

* no location named: the caller's location;
* location codes (or a word of a location's name) named, or ``*`` for all —
  also implied by the ``location`` dimension with none named: each must be a
  location where the user holds ``reports:read`` through an active membership
  (an unknown code, or one where they do not, is ``NotFound`` — never a hint
  that it exists);
* each location is bucketed in its own timezone; without the ``location``
  dimension, rows of several locations are merged: counts add up, averages and
  rates are weighted by their ``records``; a median cannot be merged, so a
  cross-location ``first_response_minutes`` is grouped by location.

Every call is one audit entry (``reports:read``) in the caller's chain; a
report holds aggregates only (labels are dates, sources, service types and
location ids), never a person's data, and so do the insights' prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import Action, Location, Resource
from crm_domain.errors import NotFound, Unavailable, ValidationError
from crm_domain.metrics import NON_ADDITIVE, check_dimensions, sort_rows
from crm_domain.policies.rbac import Authorizer
from crm_domain.ports.ai import AIProvider, Insights
from crm_domain.ports.analytics import (
    Dimension,
    Metric,
    MetricQuery,
    MetricRow,
    to_dimensions,
    to_metric,
)
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.queries import MAX_LIMIT, LocationQuery
from crm_domain.services._base import Call, ServiceBase

#: The longest range a report may cover.
MAX_REPORT_SPAN = timedelta(days=3660)
#: Every location where the user holds ``reports:read``.
ALL_LOCATIONS = "*"
#: The aggregates every set of insights also looks at (see ``ReportingService._figures``).
_SUPPORTING = (
    (Metric.BOOKINGS, (Dimension.WEEK,)),
    (Metric.NO_SHOW_RATE, (Dimension.WEEKDAY, Dimension.HOUR)),
    (Metric.FUNNEL, (Dimension.SOURCE,)),
)


def _names(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value))


@attrs.frozen(slots=True, kw_only=True)
class ReportQuery:
    """What a report shows: one metric, up to two dimensions, a range, filters, locations.

    ``locations`` are location codes (``*``: all the user may report on);
    empty means the caller's location.
    """

    metric: Metric = attrs.field(converter=to_metric)
    start: datetime
    end: datetime
    dimensions: tuple[Dimension, ...] = attrs.field(default=(), converter=to_dimensions)
    locations: tuple[str, ...] = attrs.field(default=(), converter=_names)
    service_types: tuple[str, ...] = attrs.field(default=(), converter=_names)
    sources: tuple[str, ...] = attrs.field(default=(), converter=_names)

    def metric_query(self, timezone: str, dimensions: tuple[Dimension, ...]) -> MetricQuery:
        """The port's query for one location (validates dimensions, range and filters)."""
        return MetricQuery(
            metric=self.metric,
            start=self.start,
            end=self.end,
            dimensions=dimensions,
            timezone=timezone,
            service_types=self.service_types,
            sources=self.sources,
        )


@attrs.frozen(slots=True, kw_only=True)
class ReportLocation:
    """A location a report covers (its buckets are in its timezone)."""

    id: str
    code: str
    name: str
    timezone: str


@attrs.frozen(slots=True, kw_only=True)
class Report:
    """The rows of one metric, and what they cover.

    ``dimensions`` may add ``location`` to the query's (a median over several
    locations); ``note`` says so.
    """

    query: ReportQuery
    dimensions: tuple[Dimension, ...]
    locations: tuple[ReportLocation, ...]
    rows: tuple[MetricRow, ...]
    note: str | None = None


@attrs.frozen(slots=True, kw_only=True)
class ReportAnswer:
    """A question, what it was understood as, and the reports that answer it."""

    question: str
    understood_as: str
    reports: tuple[Report, ...]
    insights: Insights | None
    provider: str
    fell_back: bool = False


def merge_rows(metric: Metric, rows: Sequence[MetricRow]) -> list[MetricRow]:
    """Rows of several locations with equal keys merged: sums, or record-weighted means."""
    merged: dict[tuple[tuple[str, Any], ...], tuple[dict[str, Any], float, int]] = {}
    for row in rows:
        key = tuple(sorted(row.keys.items()))
        _keys, total, records = merged.get(key, (row.keys, 0.0, 0))
        weight = row.records if metric in NON_ADDITIVE else 1
        merged[key] = (row.keys, total + row.value * weight, records + row.records)
    out = []
    for keys, total, records in merged.values():
        value = total / records if metric in NON_ADDITIVE and records else total
        out.append(MetricRow(keys=dict(keys), value=value, records=records))
    return out


class ReportingService:
    """Use cases on reports (``reports:read``); see the module docstring."""

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
        ai: AIProvider | None = None,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)
        self._ai = ai

    def _reading(self, ctx: Context, what: str) -> AbstractAsyncContextManager[Call]:
        """One audited ``reports:read`` use case about ``what`` (a metric, a question…)."""
        return self._base.use_case(
            ctx,
            Resource.REPORTS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="report",
            resource_id=what,
            write=False,
        )

    async def report(self, ctx: Context, query: ReportQuery) -> Report:
        """One metric over the locations ``query`` names that the caller may report on."""
        async with self._reading(ctx, query.metric.value) as call:
            report = await self._compute(ctx, query)
            call.detail = _detail(report)
            return report

    async def ask(self, ctx: Context, question: str, *, insights: bool = True) -> ReportAnswer:
        """Answer a question in plain words: the AI port reads it into report queries.

        A question with no recognisable metric (or one the provider cannot
        read) is a ``ValidationError`` on ``question`` saying which part was not
        understood; the answer shows what was understood, so a reader can check.
        """
        async with self._reading(ctx, "question") as call:
            question = question.strip()
            if not 0 < len(question) <= 500:
                raise ValidationError("question", "ask a question of 1-500 characters")
            if self._ai is None:
                raise Unavailable("no AI provider is configured to read questions")
            location = await _location_by_id(self._base.gateway, ctx.tenant_id)
            request = await self._ai.parse_report_query(
                question, self._base.clock.now(), location.timezone
            )
            if request.not_understood:
                raise ValidationError(
                    "question", "not understood: " + "; ".join(request.not_understood)
                )
            reports = []
            for metric_query in request.queries:
                query = ReportQuery(
                    metric=metric_query.metric,
                    start=metric_query.start,
                    end=metric_query.end,
                    dimensions=metric_query.dimensions,
                    locations=request.locations,
                    service_types=metric_query.service_types,
                    sources=metric_query.sources,
                )
                reports.append(await self._compute(ctx, query))
            found = None
            if insights and reports:
                figures = await self._figures(ctx, reports)
                found = await self._ai.generate_insights(figures, question)
            call.detail = "; ".join(_detail(r) for r in reports)
            return ReportAnswer(
                question=question,
                understood_as=request.understood_as,
                reports=tuple(reports),
                insights=found,
                provider=request.provider,
                fell_back=request.fell_back,
            )

    async def insights(self, ctx: Context, reports: Sequence[Report]) -> Insights:
        """Findings over the reports' aggregated rows (no person's data reaches the provider).

        ``Unavailable`` without an AI provider.  The rows were read (and audited)
        by :meth:`report`; this call is audited too, as its own read.
        """
        async with self._reading(ctx, "insights"):
            if self._ai is None:
                raise Unavailable("no AI provider is configured for insights")
            return await self._ai.generate_insights(await self._figures(ctx, reports), None)

    async def _figures(
        self, ctx: Context, reports: Sequence[Report]
    ) -> dict[str, tuple[MetricRow, ...]]:
        """The reports' rows plus the supporting aggregates insights are built on.

        Over the first report's range and locations: bookings by week (the
        largest week-over-week change), the no-show rate by weekday and hour (the
        worst slot) and the funnel by source (the best source by conversion).
        Only aggregates: labels are dates, hours, sources and location ids.
        """
        figures = {r.query.metric.value: r.rows for r in reports}
        first = reports[0].query
        # Whole weeks only: a week still under way would look like a collapse.
        zone = ZoneInfo(reports[0].locations[0].timezone)
        local_end = first.end.astimezone(zone)
        monday = local_end.date() - timedelta(days=local_end.weekday())
        week_end = datetime(monday.year, monday.month, monday.day, tzinfo=zone)
        for metric, dims in _SUPPORTING:
            key = f"{metric.value} by {', '.join(d.value for d in dims)}"
            supporting = attrs.evolve(
                first, metric=metric, dimensions=dims, service_types=(), sources=()
            )
            if dims == (Dimension.WEEK,) and first.start < week_end:
                supporting = attrs.evolve(supporting, end=week_end)
            figures[key] = (await self._compute(ctx, supporting)).rows
        return figures

    async def _compute(self, ctx: Context, query: ReportQuery) -> Report:
        if query.end - query.start > MAX_REPORT_SPAN:
            raise ValidationError("end", f"a report covers at most {MAX_REPORT_SPAN.days} days")
        codes = query.locations
        if not codes and Dimension.LOCATION in query.dimensions:
            codes = (ALL_LOCATIONS,)  # "by location" compares the locations one may see
        locations = await self._locations(ctx, codes)
        dimensions = query.dimensions
        note = None
        several = len(locations) > 1
        median = query.metric is Metric.FIRST_RESPONSE_MINUTES
        if several and median and Dimension.LOCATION not in dimensions:
            if len(dimensions) >= 2:
                raise ValidationError(
                    "dimensions",
                    "a median over several locations is shown per location: "
                    "ask for one dimension besides location",
                )
            dimensions = (*dimensions, Dimension.LOCATION)
            note = "a median cannot be merged across locations: shown per location"
        rows: list[MetricRow] = []
        for location in locations:
            metric_query = query.metric_query(location.timezone, dimensions)
            async with self._base.gateway.unit_of_work(location.id) as uow:
                rows.extend(await uow.analytics.metric(metric_query))
        if several and Dimension.LOCATION not in dimensions:
            rows = merge_rows(query.metric, rows)
        if several:
            rows = sort_rows(rows, dimensions)
        return Report(
            query=query,
            dimensions=dimensions,
            locations=tuple(locations),
            rows=tuple(rows),
            note=note,
        )

    async def _locations(self, ctx: Context, codes: tuple[str, ...]) -> list[ReportLocation]:
        """The locations named (the caller's when none) where the caller holds reports:read."""
        gateway = self._base.gateway
        if not codes:
            return [_ref(await _location_by_id(gateway, ctx.tenant_id))]
        permitted = await self._permitted(ctx)
        if codes == (ALL_LOCATIONS,):
            return sorted(permitted.values(), key=lambda loc: loc.code)
        chosen: dict[str, ReportLocation] = {}
        for code in codes:
            wanted = code.casefold()
            # A code, or a word of the name ("Sydney" for "Avatar Imaging Sydney").
            found = [
                loc
                for loc in sorted(permitted.values(), key=lambda loc: loc.code)
                if loc.code.casefold() == wanted
                or wanted in (word.casefold() for word in loc.name.split())
            ]
            if not found:
                raise NotFound(f"no location {code!r} to report on")
            chosen.setdefault(found[0].id, found[0])
        return list(chosen.values())

    async def _permitted(self, ctx: Context) -> dict[str, ReportLocation]:
        """Locations where the caller holds ``reports:read`` (every one for the system)."""
        authorizer = self._base.authorizer
        found: dict[str, ReportLocation] = {}
        async with self._base.gateway.unit_of_work(None) as uow:
            if ctx.user_id is None:
                locations = await _all_locations(uow)
                return {loc.id: _ref(loc) for loc in locations if loc.is_active}
            for membership in await uow.memberships.for_user(ctx.user_id):
                if not membership.is_active or membership.location_id in found:
                    continue
                there = attrs.evolve(
                    ctx,
                    tenant_id=membership.location_id,
                    roles=frozenset({membership.role}),
                    custom_permissions=membership.custom_permissions,
                )
                if not await authorizer.allowed(there, Resource.REPORTS, Action.READ):
                    continue
                try:
                    location = await uow.locations.get(membership.location_id)
                except NotFound:
                    continue
                if location.is_active:
                    found[location.id] = _ref(location)
        return found


def _ref(location: Location) -> ReportLocation:
    return ReportLocation(
        id=location.id, code=location.code, name=location.name, timezone=location.timezone
    )


async def _location_by_id(gateway: DatabaseGateway, location_id: str) -> Location:
    async with gateway.unit_of_work(None) as uow:
        return await uow.locations.get(location_id)


async def _all_locations(uow: UnitOfWork) -> list[Location]:
    locations: list[Location] = []
    query = LocationQuery(limit=MAX_LIMIT)
    while True:
        page = await uow.locations.list(query)
        locations.extend(page.items)
        if page.next_cursor is None:
            return locations
        query = attrs.evolve(query, cursor=page.next_cursor)


def _detail(report: Report) -> str:
    dims = ",".join(d.value for d in report.dimensions) or "-"
    return (
        f"{report.query.metric.value} by {dims} at {len(report.locations)} location(s): "
        f"{len(report.rows)} rows"
    )


__all__ = [
    "ALL_LOCATIONS",
    "MAX_REPORT_SPAN",
    "Report",
    "ReportAnswer",
    "ReportLocation",
    "ReportQuery",
    "ReportingService",
    "check_dimensions",
    "merge_rows",
]
