"""``/api/reports``: metrics by dimension (JSON with a Vega-Lite spec, SVG, PNG, CSV), questions.

Query parameters are strict like every list's: ``metric`` is one of the
metrics, ``by`` up to two comma-separated dimensions, ``start``/``end`` RFC 3339
with an offset (default: the 30 days up to now), ``location`` comma-separated
location codes or ``*``, ``service_type`` and ``source`` comma-separated
filters.  A bad one is a 422 naming it.  Numbers come from
:class:`crm_domain.services.ReportingService` (``reports:read``, audited).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from crm_domain.entities import ContactSource
from crm_domain.errors import ValidationError
from crm_domain.metrics import check_dimensions
from crm_domain.ports.ai import Insights
from crm_domain.ports.analytics import Dimension, Metric
from crm_domain.services import Report, ReportAnswer, ReportQuery
from litestar import Response, Router, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromQuery, JSONBody, QueryParameter

from crm_http_litestar import charts
from crm_http_litestar.routes._common import before_service
from crm_http_litestar.routes._deps import Crm, CrmDep
from crm_http_litestar.routes._docs import LIST_ERRORS, permission_doc, responses
from crm_http_litestar.routes._query import Instant, strict_query
from crm_http_litestar.schemas import Body

#: The range a report covers when ``start``/``end`` are not given.
DEFAULT_SPAN = timedelta(days=30)
_LIST_NOTE = "Comma-separated"
By = Annotated[
    str | None,
    QueryParameter(
        max_length=60,
        description="Up to two comma-separated dimensions: "
        + ", ".join(d.value for d in Dimension)
        + ". Day, week, month, weekday and hour are in each location's timezone.",
    ),
]
Locations = Annotated[
    str | None,
    QueryParameter(
        max_length=400,
        description="Comma-separated location codes, or `*` for every location where you hold"
        " `reports:read`; default: your location. Any other location is a 404.",
    ),
]
Labels = Annotated[str | None, QueryParameter(max_length=400, description=f"{_LIST_NOTE} values.")]
_DESCRIPTION = (
    "Metrics: bookings, completed (attended), no_shows, no_show_rate (no-shows / (attended +"
    " no-shows)), cancellations, funnel (lead → contacted → booked → attended, of the contacts"
    " created in the range), new_contacts (by `source`: the lead source mix; by"
    " `warmness_band`: the warmness distribution), avg_warmness, first_response_minutes"
    " (median minutes from a lead's creation to the first SMS sent to them), sms_inbound,"
    " sms_outbound, tasks_open. No revenue: bookings carry no price. Across several locations"
    " counts add up, rates are weighted, and a median is shown per location."
)


class LocationOut(msgspec.Struct, kw_only=True):
    """A location a report covers."""

    code: str
    name: str
    timezone: str


class InsightsOut(msgspec.Struct, kw_only=True):
    """Findings over the report's aggregated numbers."""

    summary: str
    findings: list[str]
    recommendations: list[str]
    provider: str
    fell_back: bool


class ReportOut(msgspec.Struct, kw_only=True):
    """One metric's table, what it covers, and a Vega-Lite chart of it."""

    metric: str
    title: str
    start: datetime
    end: datetime
    dimensions: list[str]
    locations: list[LocationOut]
    service_types: list[str]
    sources: list[str]
    columns: list[str]
    rows: list[dict[str, Any]]
    chart: dict[str, Any]
    note: str | None = None
    insights: InsightsOut | None = None


class InterpretedQuery(msgspec.Struct, kw_only=True):
    """What a question was read as: the same structure ``GET /api/reports`` takes."""

    metric: str
    dimensions: list[str]
    start: datetime
    end: datetime
    locations: list[str]
    service_types: list[str]
    sources: list[str]


class QuestionIn(Body):
    """A question about the clinic's numbers, in plain English."""

    question: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    #: Also explain the numbers (summary, findings, recommendations).
    insights: bool = True


class AnswerOut(msgspec.Struct, kw_only=True):
    """The reports answering a question, and how it was understood."""

    question: str
    understood_as: str
    interpreted: list[InterpretedQuery]
    reports: list[ReportOut]
    insights: InsightsOut | None
    provider: str
    fell_back: bool


def _insights_out(found: Insights | None) -> InsightsOut | None:
    if found is None:
        return None
    return InsightsOut(
        summary=found.summary,
        findings=list(found.findings),
        recommendations=list(found.recommendations),
        provider=found.provider,
        fell_back=found.fell_back,
    )


def report_out(report: Report, found: Insights | None = None) -> ReportOut:
    """The HTTP shape of a report."""
    query = report.query
    return ReportOut(
        metric=query.metric.value,
        title=charts.METRIC_TITLES[query.metric],
        start=query.start,
        end=query.end,
        dimensions=[d.value for d in report.dimensions],
        locations=[
            LocationOut(code=loc.code, name=loc.name, timezone=loc.timezone)
            for loc in report.locations
        ],
        service_types=list(query.service_types),
        sources=list(query.sources),
        columns=charts.columns(report),
        rows=charts.table(report),
        chart=charts.vega_lite(report),
        note=report.note,
        insights=_insights_out(found),
    )


def _answer_out(answer: ReportAnswer) -> AnswerOut:
    return AnswerOut(
        question=answer.question,
        understood_as=answer.understood_as,
        interpreted=[
            InterpretedQuery(
                metric=r.query.metric.value,
                dimensions=[d.value for d in r.query.dimensions],
                start=r.query.start,
                end=r.query.end,
                locations=list(r.query.locations),
                service_types=list(r.query.service_types),
                sources=list(r.query.sources),
            )
            for r in answer.reports
        ],
        reports=[report_out(r) for r in answer.reports],
        insights=_insights_out(answer.insights),
        provider=answer.provider,
        fell_back=answer.fell_back,
    )


def _split(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _query(
    crm: Crm,
    metric: Metric,
    by: str | None,
    start: datetime | None,
    end: datetime | None,
    location: str | None,
    service_type: str | None,
    source: str | None,
) -> ReportQuery:
    """The report query from the parameters; a bad one is a ``ValidationError`` naming it."""
    dimensions = []
    for name in _split(by):
        try:
            dimensions.append(Dimension(name))
        except ValueError:
            raise ValidationError("by", f"unknown dimension {name!r}") from None
    if len(dimensions) > 2 or len(set(dimensions)) != len(dimensions):
        raise ValidationError("by", "at most two different dimensions")
    try:
        check_dimensions(metric, dimensions)
    except ValidationError as exc:
        raise ValidationError("by", exc.detail) from None
    sources = _split(source)
    known = {s.value for s in ContactSource}
    for name in sources:
        if name not in known:
            raise ValidationError("source", f"unknown source {name!r}")
    until = end or crm.services.clock.now()
    since = start or until - DEFAULT_SPAN
    if until <= since:
        raise ValidationError("end", "must be after start")
    return ReportQuery(
        metric=metric,
        start=since,
        end=until,
        dimensions=tuple(dimensions),
        locations=_split(location),
        service_types=_split(service_type),
        sources=sources,
    )


@get(
    "/reports",
    opt={"permission": "reports:read"},
    summary="A report: one metric by up to two dimensions",
    description=permission_doc("reports:read", _DESCRIPTION),
    responses=responses(*LIST_ERRORS, 404),
)
async def get_report(
    crm: CrmDep,
    metric: FromQuery[Metric] = Metric.BOOKINGS,
    by: By = None,
    start: Instant = None,
    end: Instant = None,
    location: Locations = None,
    service_type: Labels = None,
    source: Labels = None,
    insights: FromQuery[bool] = False,
) -> ReportOut:
    """The report's table, what it covers, and its chart (with insights when asked)."""
    pipeline = crm.pipeline
    query = before_service(
        pipeline, lambda: _query(crm, metric, by, start, end, location, service_type, source)
    )
    reports = crm.services.reports
    report = await pipeline.use_case(reports.report(crm.ctx, query))
    found = await reports.insights(crm.ctx, [report]) if insights else None
    return report_out(report, found)


def _export(kind: Literal["svg", "png", "csv"]) -> HTTPRouteHandler:
    media = {"svg": "image/svg+xml", "png": "image/png", "csv": "text/csv; charset=utf-8"}[kind]
    what = "the report's table as CSV" if kind == "csv" else f"the report's chart as {kind.upper()}"

    async def export(
        crm: CrmDep,
        metric: FromQuery[Metric] = Metric.BOOKINGS,
        by: By = None,
        start: Instant = None,
        end: Instant = None,
        location: Locations = None,
        service_type: Labels = None,
        source: Labels = None,
    ) -> Response[bytes]:
        pipeline = crm.pipeline
        query = before_service(
            pipeline, lambda: _query(crm, metric, by, start, end, location, service_type, source)
        )
        report = await pipeline.use_case(crm.services.reports.report(crm.ctx, query))
        if kind == "csv":
            content = charts.to_csv(report).encode()
        else:
            content = await charts.render(charts.vega_lite(report), kind)
        filename = f"{query.metric.value}.{kind}"
        return Response(
            content,
            media_type=media,
            headers={"Content-Disposition": f'inline; filename="{filename}"'},
        )

    export.__doc__ = f"{what.capitalize()} (same parameters as `GET /api/reports`)."
    return get(
        f"/reports.{kind}",
        name=f"report_{kind}",
        opt={"permission": "reports:read"},
        summary=f"A report: {what}",
        description=permission_doc("reports:read", "Same parameters as `GET /api/reports`."),
        responses=responses(*LIST_ERRORS, 404),
        media_type=media,
    )(export)


@post(
    "/reports/query",
    opt={"permission": "reports:read"},
    summary="Ask a question about the numbers in plain English",
    description=permission_doc(
        "reports:read",
        'E.g. `{"question": "no-shows by week for MRI in Sydney since March"}`. The AI port'
        " reads it into the same report queries as `GET /api/reports` (never SQL; the"
        " heuristic reader unless another provider is configured); the answer shows the"
        " interpreted queries. A question with no recognisable metric is a 422 on"
        " `question` saying which part was not understood.",
    ),
    responses=responses(*LIST_ERRORS, 404, 413, 415),
    status_code=200,
)
async def ask_question(crm: CrmDep, data: JSONBody[QuestionIn]) -> AnswerOut:
    """Answer a question with reports, and explain them."""
    answer = await crm.pipeline.use_case(
        crm.services.reports.ask(crm.ctx, data.question, insights=data.insights)
    )
    return _answer_out(answer)


def reports_router() -> Router:
    """Routes under ``/api/reports``."""
    return Router(
        path="/api",
        route_handlers=[get_report, _export("svg"), _export("png"), _export("csv"), ask_question],
        tags=["reports"],
        before_request=strict_query,
    )


__all__ = ["AnswerOut", "QuestionIn", "ReportOut", "report_out", "reports_router"]
