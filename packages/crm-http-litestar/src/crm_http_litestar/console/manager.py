"""Managers' pages: reports (charts drawn on the server, questions in plain English) and admin.

Numbers come from :class:`crm_domain.services.ReportingService` and are drawn
by the same code as ``/api/reports.svg`` (:mod:`crm_http_litestar.charts`);
users, IP rules and the audit log from the access and audit services.  All of
it with the caller's context, so permissions, location scoping and audit are
the API's.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from crm_domain.errors import ValidationError
from crm_domain.metrics import check_dimensions
from crm_domain.ports.analytics import Dimension, Metric
from crm_domain.queries import AuditQuery, AutomationQuery, CampaignQuery
from crm_domain.services import Report, ReportQuery
from litestar import Response, get
from litestar.params import FromQuery
from litestar.response import Template

from crm_http_litestar import charts
from crm_http_litestar.console._web import page, permissions
from crm_http_litestar.routes._deps import Crm, CrmDep

#: The ranges the report form offers, in days.
SPANS = (7, 30, 90, 180)
#: Dimensions the form offers (one at a time; the API takes two).
_DIMENSIONS = tuple(Dimension)
_MAX_QUESTION = 300


def _report_query(
    crm: Crm, metric: str, by: str, days: int
) -> tuple[ReportQuery | None, dict[str, str]]:
    """The query the form asks for, or the errors naming each bad field."""
    errors: dict[str, str] = {}
    try:
        chosen = Metric(metric)
    except ValueError:
        errors["metric"] = "Metric: choose one of the list."
        chosen = Metric.BOOKINGS
    dimensions: tuple[Dimension, ...] = ()
    if by:
        try:
            dimensions = (Dimension(by),)
            check_dimensions(chosen, list(dimensions))
        except ValueError:
            errors["by"] = "By: choose one of the list."
        except ValidationError as exc:
            errors["by"] = f"By: {exc.reason}"
    if days not in SPANS:
        errors["days"] = "Period: choose one of the list."
    if errors:
        return None, errors
    end = crm.services.clock.now()
    return (
        ReportQuery(
            metric=chosen, start=end - timedelta(days=days), end=end, dimensions=dimensions
        ),
        errors,
    )


def _report_view(report: Report) -> dict[str, Any]:
    return {
        "title": charts.METRIC_TITLES[report.query.metric],
        "columns": charts.columns(report),
        "rows": charts.table(report)[:200],
        "note": report.note,
    }


@get(
    "/reports",
    opt={"permission": "reports:read", "audit_resource": "reports"},
    include_in_schema=False,
)
async def reports_page(
    crm: CrmDep,
    metric: FromQuery[str] = "bookings",
    by: FromQuery[str] = "week",
    days: FromQuery[int] = 90,
    question: FromQuery[str | None] = None,
) -> Template:
    """A report with its chart and table, and the question box."""
    query, errors = _report_query(crm, metric, by, days)
    report = None
    chart_url = None
    if query is not None:
        found = await crm.pipeline.use_case(crm.services.reports.report(crm.ctx, query))
        report = _report_view(found)
        chart_url = "/console/reports/chart.svg?" + urlencode(
            {"metric": metric, "by": by, "days": days}
        )
    answer = None
    asked = (question or "").strip()
    if asked:
        if len(asked) > _MAX_QUESTION:
            errors["question"] = f"Question: at most {_MAX_QUESTION} characters."
        else:
            try:
                found_answer = await crm.pipeline.use_case(
                    crm.services.reports.ask(crm.ctx, asked, insights=True)
                )
            except ValidationError as exc:
                errors["question"] = f"Question: {exc.reason}"
            else:
                answer = {
                    "understood_as": found_answer.understood_as,
                    "reports": [_report_view(r) for r in found_answer.reports],
                    "insights": found_answer.insights,
                    "provider": found_answer.provider,
                }
    return await page(
        crm,
        "reports.html",
        title="Reports",
        metrics=list(Metric),
        metric_titles=charts.METRIC_TITLES,
        dimensions=_DIMENSIONS,
        spans=SPANS,
        values={"metric": metric, "by": by, "days": days, "question": asked},
        errors=errors,
        report=report,
        chart_url=chart_url,
        answer=answer,
        status_code=422 if errors else 200,
    )


@get(
    "/reports/chart.svg",
    opt={"permission": "reports:read", "audit_resource": "reports"},
    include_in_schema=False,
)
async def report_chart(
    crm: CrmDep,
    metric: FromQuery[str] = "bookings",
    by: FromQuery[str] = "week",
    days: FromQuery[int] = 90,
) -> Response[bytes]:
    """The report's chart as SVG, drawn on the server (the page shows it as an image)."""
    query, errors = _report_query(crm, metric, by, days)
    if query is None:
        field, message = next(iter(errors.items()))
        raise ValidationError(field, message)
    report = await crm.pipeline.use_case(crm.services.reports.report(crm.ctx, query))
    svg = await charts.render(charts.vega_lite(report), "svg")
    return Response(svg, media_type="image/svg+xml")


@get(
    "/admin",
    opt={"permission": "users:read", "audit_resource": "admin"},
    include_in_schema=False,
)
async def admin_page(crm: CrmDep) -> Template:
    """Users and roles, IP rules (with the caller's address), the audit log and its check."""
    can = await permissions(crm)
    use = crm.pipeline.use_case
    ctx = crm.ctx
    members = (await use(crm.services.access.list_users(ctx))).items
    rules = (
        (await use(crm.services.access.list_ip_rules(ctx))).items if can["ip_rules:read"] else ()
    )
    entries: tuple[Any, ...] = ()
    chain = None
    if can["audit:read"]:
        entries = (await use(crm.services.audit.list(ctx, AuditQuery(limit=50)))).items
        chain = await use(crm.services.audit.verify(ctx))
    return await page(
        crm,
        "admin.html",
        title="Admin",
        members=sorted(members, key=lambda m: (m.user.name or m.user.email).lower()),
        rules=rules,
        your_address=crm.pipeline.client_ip,
        entries=entries,
        chain=chain,
    )


@get(
    "/campaigns",
    opt={"permission": "campaigns:read", "audit_resource": "campaign"},
    include_in_schema=False,
)
async def campaigns_page(crm: CrmDep) -> Template:
    """The location's email campaigns, newest first (read only: the API changes them)."""
    service = crm.services.campaigns
    campaigns: tuple[Any, ...] = ()
    if service is not None:
        found = await crm.pipeline.use_case(service.list(crm.ctx, CampaignQuery(limit=100)))
        campaigns = found.items
    return await page(
        crm, "campaigns.html", title="Campaigns", campaigns=campaigns, enabled=service is not None
    )


@get(
    "/automations",
    opt={"permission": "automations:read", "audit_resource": "automation"},
    include_in_schema=False,
)
async def automations_page(crm: CrmDep) -> Template:
    """The location's automation rules (read only: the API changes them)."""
    service = crm.services.automations
    rules: tuple[Any, ...] = ()
    if service is not None:
        found = await crm.pipeline.use_case(service.list(crm.ctx, AutomationQuery(limit=100)))
        rules = found.items
    return await page(crm, "automations.html", title="Automations", rules=rules)


ROUTES = [reports_page, report_chart, admin_page, campaigns_page, automations_page]

__all__ = ["ROUTES", "SPANS"]
