"""SQL gateway benchmarks: bulk import and keyset listing, against raw driver baselines.

Run:  uv run python benchmarks/sql_bench.py [--rows 100000] [--list-rows 1000000] [--no-postgres]

Prints one table:

* bulk import of N contacts through ``contacts.add_many`` vs a raw ``executemany``
  of the same rows into the same schema (SQLite, one transaction each), and vs
  a raw ``COPY`` (``copy_records_to_table`` as the superuser) on PostgreSQL;
  rounds alternate between the two so neither gets the warmer table; the
  medians and their ratio (rows/s gateway ÷ rows/s raw; target ≥ 0.5);
* one keyset page (50 contacts, id descending, after a random cursor) through
  ``contacts.list`` on a table of 1M contacts of one location: median ms
  (target ≤ 5 ms), mapping to entities included;
* SQLite: a point read plus an audit append in one unit of work (what an
  authenticated ``GET /api/contacts/{id}`` costs the store) vs the same work in
  hand-written stdlib ``sqlite3`` (the HTTP issue needs ≥ 0.3×);
* audit ``append_many`` + commit in batches of 1, 64 and 500 (SQLite and
  PostgreSQL): µs per entry, what the HTTP read audit's group commit saves.

PostgreSQL: ``CRM_TEST_POSTGRES_URL`` (default
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``); the script creates and
drops its own database.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from crm_domain.entities import AuditEntry, Contact, ContactSource, ContactStatus, Location
from crm_domain.queries import ContactQuery, encode_cursor
from crm_gateway_sql import schema
from crm_gateway_sql.gateway import SqlGateway, create_gateway
from crm_gateway_sql.mapping import column_names, to_row

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SOURCES = list(ContactSource)
STATUSES = list(ContactStatus)
COLUMNS = column_names(schema.contacts)


def contacts(tenant: str, count: int, start: int = 0) -> list[Contact]:
    """Realistic contacts (email or phone, tags, consent) with increasing ids."""
    rng = random.Random(start)
    out = []
    for i in range(start, start + count):
        out.append(
            Contact(
                id=f"{tenant}-{i:09d}",
                tenant_id=tenant,
                first_name=f"Patient{i}",
                last_name="Nguyen" if i % 3 else "Smith",
                email=f"patient{i}@example.com" if i % 5 else None,
                phone=f"+614{i % 100_000_000:08d}" if i % 2 or i % 5 == 0 else None,
                source=SOURCES[i % len(SOURCES)],
                status=STATUSES[i % len(STATUSES)],
                warmness=rng.randrange(101),
                tags=("mri", "vip") if i % 7 == 0 else (),
                email_opt_in=bool(i % 2),
                sms_opt_in=bool(i % 3),
                created_at=NOW + timedelta(seconds=i),
                updated_at=NOW + timedelta(seconds=i),
            )
        )
    return out


def raw_rows(items: list[Contact]) -> list[tuple[Any, ...]]:
    """The same contacts as plain tuples in column order (the raw baselines' input)."""
    return [tuple(to_row(c)[name] for name in COLUMNS) for c in items]


async def add_location(gateway: SqlGateway, tenant: str) -> None:
    async with gateway.unit_of_work() as uow:
        await uow.locations.add(
            Location(id=tenant, code=tenant.lower(), name=tenant, timezone="UTC", created_at=NOW)
        )
        await uow.commit()


async def gateway_import(gateway: SqlGateway, tenant: str, items: list[Contact]) -> float:
    await add_location(gateway, tenant)
    started = time.perf_counter()
    async with gateway.unit_of_work(tenant) as uow:
        await uow.contacts.add_many(items)
        await uow.commit()
    return time.perf_counter() - started


# --- SQLite ---------------------------------------------------------------------------------


def sqlite_raw_import(path: str, tenant: str, rows: list[tuple[Any, ...]]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")  # as the gateway's file databases
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(
        "INSERT INTO locations (id, code, name, timezone, address, is_active, settings,"
        " created_at) VALUES (?, ?, ?, 'UTC', NULL, 1, '{}', 0)",
        (tenant, tenant.lower(), tenant),
    )
    sql = f"INSERT INTO contacts ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(sql, rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def bench_sqlite(rows_n: int, list_n: int, rounds: int) -> list[tuple[str, str]]:
    results: list[tuple[str, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    gateway = create_gateway(f"sqlite+aiosqlite:///{tmp / 'import.db'}")
    await gateway.migrate()
    db = gateway.sqlite_database
    assert db is not None
    mine, raw = [], []
    for r in range(rounds):
        items = contacts(f"G{r}", rows_n)
        rows = raw_rows(contacts(f"R{r}", rows_n))
        raw.append(sqlite_raw_import(db.path, f"R{r}", rows))
        mine.append(await gateway_import(gateway, f"G{r}", items))
    await gateway.close()
    g, b = statistics.median(mine), statistics.median(raw)
    results.append(
        (
            f"SQLite import {rows_n:,} contacts",
            f"gateway {g * 1000:.0f} ms ({rows_n / g:,.0f}/s) vs raw executemany "
            f"{b * 1000:.0f} ms ({rows_n / b:,.0f}/s): ratio {b / g:.2f}",
        )
    )

    # Keyset listing at list_n rows.
    gateway = create_gateway(f"sqlite+aiosqlite:///{tmp / 'list.db'}")
    await gateway.migrate()
    db = gateway.sqlite_database
    assert db is not None
    chunk = 100_000
    for start in range(0, list_n, chunk):
        rows = raw_rows(contacts("L", min(chunk, list_n - start), start))
        if start == 0:
            sqlite_raw_import(db.path, "L", rows)
        else:
            conn = sqlite3.connect(db.path, isolation_level=None)
            conn.execute("BEGIN")
            conn.executemany(
                f"INSERT INTO contacts ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in COLUMNS)})",
                rows,
            )
            conn.execute("COMMIT")
            conn.close()
    sqlite3.connect(db.path).execute("ANALYZE").connection.close()
    results.append(
        ("SQLite list page at " + f"{list_n:,} rows", await list_pages(gateway, "L", list_n))
    )
    results.append(("SQLite point read + audit append", await read_and_audit(gateway, db.path)))
    results.append(("SQLite audit append_many + commit", await audit_batches(gateway, "AUD")))
    await gateway.close()
    return results


async def read_and_audit(gateway: SqlGateway, path: str, count: int = 3000) -> str:
    """What an HTTP ``GET /api/contacts/{id}`` costs the store: read one row, append audit."""
    rng = random.Random(11)
    ids = [f"L-{rng.randrange(100_000):09d}" for _ in range(count)]
    started = time.perf_counter()
    for i, contact_id in enumerate(ids):
        async with gateway.unit_of_work("L") as uow:
            await uow.contacts.get(contact_id)
            await uow.audit.append(
                AuditEntry(
                    id=f"bench-g-{i}",
                    tenant_id="L",
                    user_id="u1",
                    action="READ",
                    resource_type="contact",
                    resource_id=contact_id,
                    occurred_at=NOW,
                )
            )
            await uow.commit()
    mine = count / (time.perf_counter() - started)

    # The raw baseline: the same work with hand-written SQL on stdlib sqlite3.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")  # durable commits, as the gateway's
    insert = (
        "INSERT INTO hipaa_audit_log (id, chain, tenant_id, user_id, action, resource_type,"
        " resource_id, outcome, occurred_at, sequence, prev_hash, hash)"
        " VALUES (?, 'raw', NULL, 'u1', 'READ', 'contact', ?, 'success', 0, ?, ?, ?)"
    )
    started = time.perf_counter()
    for i, contact_id in enumerate(ids):
        conn.execute("SELECT * FROM contacts WHERE id = ? AND tenant_id = 'L'", (contact_id,))
        conn.execute("BEGIN IMMEDIATE")
        head = conn.execute(
            "SELECT sequence, hash FROM hipaa_audit_log WHERE chain = 'raw'"
            " ORDER BY sequence DESC LIMIT 1"
        ).fetchone()
        seq, prev = (head[0] + 1, head[1]) if head else (1, "0" * 64)
        conn.execute(insert, (f"bench-r-{i}", contact_id, seq, prev, "f" * 64))
        conn.execute("COMMIT")
    raw = count / (time.perf_counter() - started)
    conn.close()
    return f"gateway {mine:,.0f}/s vs raw sqlite3 {raw:,.0f}/s: ratio {mine / raw:.2f}"


async def audit_batches(gateway: SqlGateway, tenant: str, budget: int = 6000) -> str:
    """Audit appends per unit of work (``append_many`` + commit): µs per entry by batch size.

    What the HTTP read audit's group commit pays: batch 1 is one commit per
    entry, 64 what 64 concurrent requests queue, 500 the recorder's largest
    batch.  Medians over about ``budget`` entries per size.
    """
    await add_location(gateway, tenant)
    figures = {}
    serial = 0
    for size in (1, 64, 500):
        times = []
        for _ in range(max(7, budget // size)):
            batch = []
            for _ in range(size):
                serial += 1
                batch.append(
                    AuditEntry(
                        id=f"bench-a-{serial:09d}",
                        tenant_id=tenant,
                        user_id="u1",
                        action="READ",
                        resource_type="contact",
                        resource_id=str(serial),
                        occurred_at=NOW,
                    )
                )
            started = time.perf_counter()
            async with gateway.unit_of_work(tenant) as uow:
                await uow.audit.append_many(batch)
                await uow.commit()
            times.append((time.perf_counter() - started) / size)
        figures[size] = statistics.median(times) * 1e6
    return (
        ", ".join(f"batch {size}: {us:,.0f} µs/entry" for size, us in figures.items())
        + f"; batch 64 is {figures[1] / figures[64]:.1f}× cheaper per entry than batch 1"
    )


async def list_pages(gateway: SqlGateway, tenant: str, count: int, samples: int = 300) -> str:
    rng = random.Random(7)
    first, after = [], []
    for _ in range(samples):
        cursor = encode_cursor(f"{tenant}-{rng.randrange(count):09d}")
        started = time.perf_counter()
        async with gateway.unit_of_work(tenant) as uow:
            page = await uow.contacts.list(ContactQuery(limit=50, cursor=cursor))
        after.append(time.perf_counter() - started)
        assert len(page.items) <= 50
        started = time.perf_counter()
        async with gateway.unit_of_work(tenant) as uow:
            page = await uow.contacts.list(ContactQuery(limit=50, status="qualified"))
        first.append(time.perf_counter() - started)
        assert len(page.items) == 50
    return (
        f"median {statistics.median(after) * 1000:.2f} ms (page after a random cursor), "
        f"{statistics.median(first) * 1000:.2f} ms (first page, status filter); "
        "50 contacts mapped to entities"
    )


# --- PostgreSQL -------------------------------------------------------------------------------


def pg_url(database: str | None = None) -> str:
    url = sa.make_url(
        os.environ.get("CRM_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    )
    if database:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def dsn(database: str | None = None) -> str:
    return pg_url(database).replace("postgresql+asyncpg://", "postgresql://", 1)


async def pg_raw_copy(database: str, tenant: str, rows: list[tuple[Any, ...]]) -> float:
    conn = await asyncpg.connect(dsn(database))
    try:
        await conn.execute(
            "INSERT INTO locations (id, code, name, timezone, address, is_active, settings,"
            " created_at) VALUES ($1, $2, $1, 'UTC', NULL, true, '{}', 0)",
            tenant,
            tenant.lower(),
        )
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table("contacts", records=rows, columns=list(COLUMNS))
        return time.perf_counter() - started
    finally:
        await conn.close()


async def bench_postgres(rows_n: int, list_n: int, rounds: int) -> list[tuple[str, str]]:
    results: list[tuple[str, str]] = []
    database = f"crm_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn())
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        gateway = create_gateway(pg_url(database))
        await gateway.migrate()
        mine, raw = [], []
        for r in range(rounds):
            items = contacts(f"G{r}", rows_n)
            rows = raw_rows(contacts(f"R{r}", rows_n))
            raw.append(await pg_raw_copy(database, f"R{r}", rows))
            mine.append(await gateway_import(gateway, f"G{r}", items))
        g, b = statistics.median(mine), statistics.median(raw)
        results.append(
            (
                f"PostgreSQL import {rows_n:,} contacts",
                f"gateway {g * 1000:.0f} ms ({rows_n / g:,.0f}/s) vs raw COPY "
                f"{b * 1000:.0f} ms ({rows_n / b:,.0f}/s): ratio {b / g:.2f}",
            )
        )
        chunk = 100_000
        for start in range(0, list_n, chunk):
            rows = raw_rows(contacts("L", min(chunk, list_n - start), start))
            if start == 0:
                await pg_raw_copy(database, "L", rows)
            else:
                conn = await asyncpg.connect(dsn(database))
                await conn.copy_records_to_table("contacts", records=rows, columns=list(COLUMNS))
                await conn.close()
        conn = await asyncpg.connect(dsn(database))
        await conn.execute("VACUUM ANALYZE contacts")
        await conn.close()
        results.append(
            (f"PostgreSQL list page at {list_n:,} rows", await list_pages(gateway, "L", list_n))
        )
        results.append(
            ("PostgreSQL audit append_many + commit", await audit_batches(gateway, "AUD", 3000))
        )
        await gateway.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    return results


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--list-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"# SQL gateway benchmark — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {machine()}")
    results = await bench_sqlite(args.rows, args.list_rows, args.rounds)
    if not args.no_postgres:
        results += await bench_postgres(args.rows, args.list_rows, args.rounds)
    width = max(len(name) for name, _ in results)
    for name, figure in results:
        print(f"{name:<{width}}  {figure}")


if __name__ == "__main__":
    asyncio.run(main())
