"""P3: a funnel + no-show report over 1M bookings, gateway vs hand-written SQL, same run.

Run:  uv run python benchmarks/reports_bench.py [--bookings 1000000] [--rounds 5] [--no-postgres]

One location in Australia/Sydney; a year of data (two daylight-saving
changes inside the range): ``--bookings`` bookings (70 % attended, 10 %
no-shows, …) over a third as many contacts, and an outbound SMS for every
fourth contact, generated with plain SQL (a recursive CTE on SQLite,
``generate_series`` on PostgreSQL) in seconds.

The report is what ``GET /api/reports`` runs for "the funnel" and "the no-show
rate by week": two ``uow.analytics.metric`` calls through the gateway (SQL
pushdown, local weeks from the location's offset segments, rows mapped to
``MetricRow``).  The baseline is the same numbers in SQL written by hand and
run on the raw driver (stdlib ``sqlite3``; ``asyncpg``): on PostgreSQL with
``AT TIME ZONE``, on SQLite with the one ``CASE`` a person would write for the
two offset changes.  Rounds alternate gateway and baseline; medians and the
ratio gateway ÷ hand-written (goal ≤ 1.5).  The numbers are compared too: a
report that is fast but wrong fails the run.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from crm_domain.entities import Location
from crm_domain.metrics import utc_offsets
from crm_domain.ports.analytics import Dimension, Metric, MetricQuery
from crm_gateway_sql.gateway import SqlGateway, create_gateway
from crm_gateway_sql.mapping import to_micros
from sql_bench import dsn, machine, pg_url  # the same machine line and database as P1/P2

TENANT = "SYD"
ZONE = "Australia/Sydney"
START = datetime(2025, 6, 30, 14, 0, tzinfo=UTC)  # 2025-07-01 00:00 in Sydney
END = datetime(2026, 6, 30, 14, 0, tzinfo=UTC)
SPAN = to_micros(END) - to_micros(START)
QUERIES = (
    MetricQuery(metric=Metric.FUNNEL, start=START, end=END, timezone=ZONE),
    MetricQuery(
        metric=Metric.NO_SHOW_RATE,
        start=START,
        end=END,
        dimensions=(Dimension.WEEK,),
        timezone=ZONE,
    ),
)


def _generate(n_bookings: int, series: str) -> list[str]:
    """INSERT … SELECT statements over ``series`` (a ``(i)`` row source of 0 … n-1)."""
    n_contacts = max(1, n_bookings // 3)
    start = to_micros(START)
    contacts = series.format(n=n_contacts)
    bookings = series.format(n=n_bookings)
    sms = series.format(n=n_contacts // 4)
    statuses = (
        "CASE i % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'contacted' WHEN 2 THEN 'booked'"
        " ELSE 'patient' END"
    )
    booking_status = (
        "CASE WHEN i % 10 < 7 THEN 'completed' WHEN i % 10 = 7 THEN 'no_show'"
        " WHEN i % 10 = 8 THEN 'cancelled' ELSE 'pending' END"
    )
    service = (
        "CASE i % 4 WHEN 0 THEN 'MRI' WHEN 1 THEN 'CT' WHEN 2 THEN 'X-ray' ELSE 'Ultrasound' END"
    )
    source = (
        "CASE i % 5 WHEN 0 THEN 'meta_ad' WHEN 1 THEN 'google_ad' WHEN 2 THEN 'website'"
        " WHEN 3 THEN 'referral' ELSE 'walk_in' END"
    )
    return [
        f"INSERT INTO contacts (id, tenant_id, first_name, last_name, email, source, status,"
        f" warmness, warmness_reasons, tags, email_opt_in, sms_opt_in, created_at, updated_at)"
        f" {contacts} SELECT 'c' || i, '{TENANT}', 'Pat', 'Bench', 'p' || i || '@example.com',"
        f" {source}, {statuses}, i % 101, '[]', '[]', false, false,"
        f" {start} + (i * 7919 % {n_contacts}) * ({SPAN} / {n_contacts}),"
        f" {start} FROM n",
        f"INSERT INTO bookings (id, tenant_id, contact_id, service_type, starts_at, ends_at,"
        f" status, source, created_at, updated_at)"
        f" {bookings} SELECT 'b' || i, '{TENANT}', 'c' || (i % {n_contacts}), {service},"
        f" {start} + (i * 104729 % {n_bookings}) * ({SPAN} / {n_bookings}),"
        f" {start} + (i * 104729 % {n_bookings}) * ({SPAN} / {n_bookings}) + 2700000000,"
        f" {booking_status}, 'bench', {start}, {start} FROM n",
        f"INSERT INTO sms_messages (id, tenant_id, contact_id, direction, from_number, to_number,"
        f" body, status, created_at)"
        f" {sms} SELECT 's' || i, '{TENANT}', 'c' || (i * 4), 'outbound', '+61298765432',"
        f" '+61412345678', 'Thanks for your enquiry', 'sent',"
        f" {start} + ((i * 4) * 7919 % {n_contacts}) * ({SPAN} / {n_contacts}) + 600000000 FROM n",
    ]


_SQLITE_SERIES = "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {n} - 1)"
_PG_SERIES = "WITH n(i) AS (SELECT generate_series(0::bigint, {n} - 1))"

_FUNNEL = """
SELECT count(*) AS leads,
  sum(CASE WHEN c.status <> 'new'
        OR EXISTS (SELECT 1 FROM sms_messages m WHERE m.tenant_id = c.tenant_id
                   AND m.contact_id = c.id AND m.direction = 'outbound')
        OR EXISTS (SELECT 1 FROM bookings b WHERE b.tenant_id = c.tenant_id
                   AND b.contact_id = c.id) THEN 1 ELSE 0 END) AS contacted,
  sum(CASE WHEN EXISTS (SELECT 1 FROM bookings b WHERE b.tenant_id = c.tenant_id
                        AND b.contact_id = c.id) THEN 1 ELSE 0 END) AS booked,
  sum(CASE WHEN EXISTS (SELECT 1 FROM bookings b WHERE b.tenant_id = c.tenant_id
                        AND b.contact_id = c.id AND b.status = 'completed')
      THEN 1 ELSE 0 END) AS attended
FROM contacts c WHERE c.tenant_id = {p1} AND c.created_at >= {p2} AND c.created_at < {p3}
"""
_PG_WEEKS = """
SELECT to_char(date_trunc('week',
                          to_timestamp(starts_at / 1000000.0) AT TIME ZONE 'Australia/Sydney'),
               'YYYY-MM-DD') AS week,
       count(*) AS n, sum(CASE WHEN status = 'no_show' THEN 1 ELSE 0 END) AS no_shows
FROM bookings WHERE tenant_id = $1 AND starts_at >= $2 AND starts_at < $3
  AND status IN ('completed', 'no_show') GROUP BY 1
"""


def _sqlite_weeks() -> str:
    """The no-show rate by local week in SQLite by hand: one CASE for the offset changes."""
    segments = utc_offsets(ZoneInfo(ZONE), START, END)
    offset = (
        "CASE "
        + " ".join(
            f"WHEN starts_at < {to_micros(nxt)} THEN {off * 1_000_000}"
            for (_, off), (nxt, _) in itertools.pairwise(segments)
        )
        + f" ELSE {segments[-1][1] * 1_000_000} END"
    )
    return f"""
SELECT date((starts_at + {offset}) / 1000000, 'unixepoch', 'weekday 0', '-6 days') AS week,
       count(*) AS n, sum(CASE WHEN status = 'no_show' THEN 1 ELSE 0 END) AS no_shows
FROM bookings WHERE tenant_id = ? AND starts_at >= ? AND starts_at < ?
  AND status IN ('completed', 'no_show') GROUP BY 1
"""


def _answers(funnel: Any, weeks: Any) -> tuple[tuple[float, ...], dict[str, float]]:
    return (
        tuple(float(v) for v in funnel),
        {str(w): float(ns) / float(n) for w, n, ns in weeks},
    )


async def _gateway_report(gateway: SqlGateway) -> tuple[tuple[float, ...], dict[str, float]]:
    async with gateway.unit_of_work(TENANT) as uow:
        funnel = await uow.analytics.metric(QUERIES[0])
        weeks = await uow.analytics.metric(QUERIES[1])
    return (
        tuple(r.value for r in funnel),
        {str(r.keys["week"]): r.value for r in weeks},
    )


def _same(a: tuple[tuple[float, ...], dict[str, float]], b: Any) -> bool:
    return (
        a[0] == b[0]
        and a[1].keys() == b[1].keys()
        and all(abs(a[1][k] - b[1][k]) < 1e-12 for k in a[1])
    )


async def _add_location(gateway: SqlGateway) -> None:
    async with gateway.unit_of_work() as uow:
        await uow.locations.add(
            Location(id=TENANT, code="syd", name="Sydney", timezone=ZONE, created_at=START)
        )
        await uow.commit()


async def _rounds(gateway: SqlGateway, baseline: Any, rounds: int) -> tuple[float, float, bool]:
    mine, hand = [], []
    ok = True
    for _ in range(rounds):
        t = time.perf_counter()
        ours = await _gateway_report(gateway)
        mine.append(time.perf_counter() - t)
        t = time.perf_counter()
        theirs = await baseline()
        hand.append(time.perf_counter() - t)
        ok = ok and _same(ours, theirs)
    return statistics.median(mine), statistics.median(hand), ok


def _line(engine: str, n: int, built: float, g: float, h: float, ok: bool) -> tuple[str, str]:
    return (
        f"{engine} funnel + no-show rate by week, {n:,} bookings",
        f"gateway {g * 1000:.0f} ms vs hand-written SQL {h * 1000:.0f} ms: ratio {g / h:.2f}"
        f" (data generated in {built:.0f} s; numbers {'equal' if ok else 'DIFFER'})",
    )


async def bench_sqlite(n: int, rounds: int) -> tuple[str, str]:
    tmp = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    gateway = create_gateway(f"sqlite+aiosqlite:///{tmp / 'reports.db'}")
    await gateway.migrate()
    await _add_location(gateway)
    db = gateway.sqlite_database
    assert db is not None
    t = time.perf_counter()
    with sqlite3.connect(db.path) as conn:
        for statement in _generate(n, _SQLITE_SERIES):
            conn.execute(statement)
        conn.execute("ANALYZE")
    built = time.perf_counter() - t
    raw = sqlite3.connect(db.path)
    funnel_sql = _FUNNEL.format(p1="?", p2="?", p3="?")
    weeks_sql = _sqlite_weeks()
    params = (TENANT, to_micros(START), to_micros(END))

    async def baseline() -> Any:
        return _answers(
            raw.execute(funnel_sql, params).fetchone(), raw.execute(weeks_sql, params).fetchall()
        )

    g, h, ok = await _rounds(gateway, baseline, rounds)
    raw.close()
    await gateway.close()
    return _line("SQLite", n, built, g, h, ok)


async def bench_postgres(n: int, rounds: int) -> tuple[str, str]:
    database = f"crm_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn())
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        gateway = create_gateway(pg_url(database))
        await gateway.migrate()
        await _add_location(gateway)
        conn = await asyncpg.connect(dsn(database))
        t = time.perf_counter()
        for statement in _generate(n, _PG_SERIES):
            await conn.execute(statement)
        await conn.execute("VACUUM ANALYZE")
        built = time.perf_counter() - t
        funnel_sql = _FUNNEL.format(p1="$1", p2="$2", p3="$3")
        params = (TENANT, to_micros(START), to_micros(END))

        async def baseline() -> Any:
            return _answers(
                await conn.fetchrow(funnel_sql, *params), await conn.fetch(_PG_WEEKS, *params)
            )

        g, h, ok = await _rounds(gateway, baseline, rounds)
        await conn.close()
        await gateway.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    return _line("PostgreSQL", n, built, g, h, ok)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"# Reports benchmark (P3) — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {machine()}")
    results = [await bench_sqlite(args.bookings, args.rounds)]
    if not args.no_postgres:
        results.append(await bench_postgres(args.bookings, args.rounds))
    width = max(len(name) for name, _ in results)
    for name, figure in results:
        print(f"{name:<{width}}  {figure}")


if __name__ == "__main__":
    asyncio.run(main())
