"""Report answers as tables, Vega-Lite specs, CSV and server-rendered SVG/PNG.

A chart type is chosen per metric and dimensions: a funnel is horizontal bars
in stage order; a series over days, weeks or months is a line (a bar when
there is a single bucket), and counts split by a second dimension are stacked
bars; weekday × hour is a heat map; anything else is a bar chart (grouped
when split).  Rates are shown as percentages.  The spec carries its data inline
(aggregates only), so rendering needs nothing but the spec: ``vl-convert``
(Deno + Vega in a wheel) turns it into SVG or PNG with no browser and no
network.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import anyio.to_thread
from crm_domain.metrics import NON_ADDITIVE, WEEKDAYS
from crm_domain.ports.analytics import Dimension, FunnelStage, Metric
from crm_domain.services import Report

#: How each metric is named on a chart and in the CSV header.
METRIC_TITLES: dict[Metric, str] = {
    Metric.NEW_CONTACTS: "New leads",
    Metric.AVG_WARMNESS: "Average warmness",
    Metric.BOOKINGS: "Bookings",
    Metric.COMPLETED: "Attended",
    Metric.NO_SHOWS: "No-shows",
    Metric.CANCELLATIONS: "Cancellations",
    Metric.SMS_INBOUND: "SMS received",
    Metric.SMS_OUTBOUND: "SMS sent",
    Metric.TASKS_OPEN: "Open tasks",
    Metric.NO_SHOW_RATE: "No-show rate",
    Metric.FUNNEL: "Conversion funnel",
    Metric.FIRST_RESPONSE_MINUTES: "Median first response (minutes)",
}
_SERIES = (Dimension.DAY, Dimension.WEEK, Dimension.MONTH)
_ORDINAL = {Dimension.WEEKDAY: list(WEEKDAYS), Dimension.HOUR: [f"{h:02d}" for h in range(24)]}
_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"


def table(report: Report) -> list[dict[str, Any]]:
    """The report's rows as flat records: one key per dimension (location by code), value."""
    codes = {loc.id: loc.code for loc in report.locations}
    records = []
    for row in report.rows:
        record: dict[str, Any] = {}
        for d in report.dimensions:
            label = row.keys[d.value]
            record[d.value] = codes.get(label, label) if d is Dimension.LOCATION else label
        if "stage" in row.keys:
            record["stage"] = row.keys["stage"]
        record["value"] = row.value
        record["records"] = row.records
        records.append(record)
    return records


def columns(report: Report) -> list[str]:
    """The table's column names, in order."""
    names = [d.value for d in report.dimensions]
    if report.query.metric is Metric.FUNNEL:
        names.append("stage")
    return [*names, "value", "records"]


def to_csv(report: Report) -> str:
    """The table as CSV (RFC 4180, header first)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns(report), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(table(report))
    return out.getvalue()


def _field(d: Dimension) -> dict[str, Any]:
    spec: dict[str, Any] = {"field": d.value, "title": d.value.replace("_", " ")}
    if d in _SERIES:
        spec["type"] = "temporal"
        spec["timeUnit"] = "yearmonth" if d is Dimension.MONTH else "yearmonthdate"
    else:
        spec["type"] = "ordinal" if d in _ORDINAL else "nominal"
        if d in _ORDINAL:
            spec["sort"] = _ORDINAL[d]
    return spec


def vega_lite(report: Report) -> dict[str, Any]:
    """A Vega-Lite v5 spec of the report, data inline."""
    metric = report.query.metric
    title = METRIC_TITLES[metric]
    rate = metric is Metric.NO_SHOW_RATE
    value: dict[str, Any] = {"field": "value", "type": "quantitative", "title": title}
    if rate:
        value["axis"] = {"format": "%"}
    dims = list(report.dimensions)
    spec: dict[str, Any] = {
        "$schema": _SCHEMA,
        "title": f"{title}, {report.query.start.date()} to {report.query.end.date()}",
        "data": {"values": table(report)},
        "width": 480,
        "height": 260,
    }
    if metric is Metric.FUNNEL:
        spec["mark"] = {"type": "bar", "tooltip": True}
        spec["encoding"] = {
            "y": {
                "field": "stage",
                "type": "nominal",
                "sort": [s.value for s in FunnelStage],
                "title": None,
            },
            "x": {**value, "title": "contacts"},
        }
        if dims:
            spec["encoding"]["color"] = _field(dims[0])
            spec["encoding"]["yOffset"] = {"field": dims[0].value}
        return spec
    if {Dimension.WEEKDAY, Dimension.HOUR} <= set(dims):
        spec["mark"] = {"type": "rect", "tooltip": True}
        spec["encoding"] = {
            "x": _field(Dimension.HOUR),
            "y": _field(Dimension.WEEKDAY),
            "color": {**value, "scale": {"scheme": "orangered"}},
        }
        return spec
    if not dims:
        spec["mark"] = {"type": "bar", "tooltip": True}
        spec["data"] = {"values": [{**r, "metric": title} for r in table(report)]}
        spec["encoding"] = {"x": {"field": "metric", "type": "nominal", "title": None}, "y": value}
        return spec
    first = dims[0]
    series = first in _SERIES and len({r.keys[first.value] for r in report.rows}) > 1
    # Counts split by a second dimension stack (a missing group is a zero, not a
    # gap); a single series, a rate or a median is a line.
    stacked = len(dims) > 1 and metric not in NON_ADDITIVE
    line = series and not stacked
    mark = "line" if line else "bar"
    spec["mark"] = {"type": mark, "tooltip": True, **({"point": True} if line else {})}
    x = _field(first)
    if not line and first in _SERIES:  # bars sit on their bucket's label, full width
        x = {"field": first.value, "type": "ordinal", "title": first.value}
    spec["encoding"] = {"x": x, "y": value}
    if len(dims) > 1:
        spec["encoding"]["color"] = _field(dims[1])
        if not line and not stacked:
            spec["encoding"]["xOffset"] = {"field": dims[1].value}
    return spec


async def render(spec: dict[str, Any], kind: str) -> bytes:
    """The spec drawn as ``svg`` or ``png`` (in a worker thread: it takes CPU)."""
    import vl_convert  # imported here: the first import loads a JavaScript engine

    def draw() -> bytes:
        if kind == "svg":
            return str(vl_convert.vegalite_to_svg(spec)).encode()
        return bytes(vl_convert.vegalite_to_png(spec, scale=2))

    return await anyio.to_thread.run_sync(draw)


__all__ = ["METRIC_TITLES", "columns", "render", "table", "to_csv", "vega_lite"]
