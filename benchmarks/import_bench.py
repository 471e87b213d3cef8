"""Contact import benchmark: the import use case against the gateway's raw bulk import.

Run:  uv run --frozen python benchmarks/import_bench.py [--rows 100000] [--rounds 3]
      [--postgres]

One CSV of N rows (5 % with an invalid email, 5 % repeating an earlier row's
email) is imported into a fresh store, alternately by

* the baseline, :func:`crm_gateway_sql.importing.import_contacts`: the rows of
  ``csv.DictReader`` validated and stored with ``contacts.add_many`` in
  batches of 5000 — no dedupe, no audit, no resume (it stores the duplicates);
* ours, :class:`crm_domain.services.imports.ContactImportService` as ``crm
  import contacts`` runs it (``CsvSource``, ``ColumnMap``): RBAC, dedupe
  against the store and the file, a rejection report written to a file, one
  audit entry and one outbox event per batch of 2000 rows, resumable.

Both times include reading the CSV.  Prints the medians (rows read per
second) and their ratio (ours ÷ baseline; goal ≥ 0.5).  SQLite is the durable
default (``synchronous=FULL``); ``--postgres`` adds PostgreSQL at
``CRM_TEST_POSTGRES_URL`` (a database created and dropped by the script).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from crm_domain.bootstrap import bootstrap
from crm_domain.clock import SystemClock, UlidFactory
from crm_domain.context import Context
from crm_domain.importing import ColumnMap
from crm_domain.queries import ContactQuery
from crm_domain.services import ContactImportService, CreateLocation
from crm_gateway_sql.gateway import SqlGateway, create_gateway
from crm_gateway_sql.importing import import_contacts
from crm_http_litestar.cli_data import CsvSource, RejectionReport

HEADER = ["first_name", "last_name", "email", "phone", "tags", "sms_opt_in"]


def write_csv(path: Path, rows: int) -> tuple[int, int]:
    """The benchmark file; returns (bad rows, duplicate rows)."""
    bad = duplicates = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(HEADER)
        for i in range(1, rows + 1):
            email = f"patient{i}@example.com"
            phone = f"04{i % 100_000_000:08d}"
            if i % 20 == 0:
                email, bad = f"patient{i}.example.com", bad + 1
            elif i % 20 == 10 and i > 20:
                email, phone, duplicates = f"patient{i - 9}@example.com", "", duplicates + 1
            out.writerow([f"P{i}", "Nguyen", email, phone, "mri;ct" if i % 7 == 0 else "", "yes"])
    return bad, duplicates


async def fresh(url: str) -> tuple[SqlGateway, str]:
    gateway = create_gateway(url)
    await gateway.migrate()
    services = bootstrap(gateway)
    place = await services.access.create_location(
        Context.system(""),
        CreateLocation(code="bench", name="Bench", timezone="Australia/Sydney"),
    )
    return gateway, place.id


async def count(gateway: SqlGateway, tenant: str) -> int:
    async with gateway.unit_of_work(tenant) as uow:
        return await uow.contacts.count(ContactQuery())


async def baseline(url: str, sheet: Path, _report: Path) -> int:
    gateway, tenant = await fresh(url)
    try:
        start = time.perf_counter()
        with sheet.open(newline="", encoding="utf-8") as handle:
            await import_contacts(
                gateway, tenant, csv.DictReader(handle), ids=UlidFactory(), clock=SystemClock()
            )
        elapsed = time.perf_counter() - start
        stored = await count(gateway, tenant)
    finally:
        await gateway.close()
    print(f"  baseline: {stored} stored in {elapsed:.2f} s")
    return elapsed_ns(elapsed)


async def ours(url: str, sheet: Path, report: Path) -> int:
    gateway, tenant = await fresh(url)
    try:
        services = bootstrap(gateway)
        importer = ContactImportService.of(services)
        start = time.perf_counter()
        source = CsvSource(sheet)
        sink = RejectionReport(report, source.header, keep_through=0)
        try:
            summary = await importer.run(
                Context.system(tenant, request_method="CLI", request_path="crm import contacts"),
                source.rows(),
                ColumnMap.for_header(source.header, {}),
                import_id=uuid.uuid4().hex,
                rejections=sink,
            )
        finally:
            sink.close()
        elapsed = time.perf_counter() - start
        stored = await count(gateway, tenant)
    finally:
        await gateway.close()
    assert stored == summary.stored
    print(
        f"  ours:     {stored} stored, {summary.rejected} invalid, "
        f"{summary.duplicates} duplicates in {elapsed:.2f} s"
    )
    return elapsed_ns(elapsed)


def elapsed_ns(seconds: float) -> int:
    return int(seconds * 1e9)


Runner = Callable[[str, Path, Path], Awaitable[int]]


async def measure(name: str, urls: Callable[[], str], sheet: Path, rows: int, rounds: int) -> None:
    times: dict[str, list[int]] = {"baseline": [], "ours": []}
    runners: dict[str, Runner] = {"baseline": baseline, "ours": ours}
    for index in range(rounds):
        order = ["baseline", "ours"] if index % 2 == 0 else ["ours", "baseline"]
        for which in order:
            times[which].append(await runners[which](urls(), sheet, sheet.with_suffix(".rej.csv")))
    base = rows / (statistics.median(times["baseline"]) / 1e9)
    mine = rows / (statistics.median(times["ours"]) / 1e9)
    print(
        f"| import {rows} rows, {name}, rows/s (medians of {rounds}) "
        f"| {base:,.0f} | {mine:,.0f} | **{mine / base:.2f}×** | ≥ 0.5× |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    print(f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sheet = folder / "contacts.csv"
        bad, duplicates = write_csv(sheet, args.rows)
        print(f"{args.rows} rows: {bad} invalid, {duplicates} duplicates")
        counter = iter(range(1_000_000))

        def sqlite_url() -> str:
            return f"sqlite+aiosqlite:///{folder}/bench{next(counter)}.db"

        await measure("SQLite (durable)", sqlite_url, sheet, args.rows, args.rounds)
        if args.postgres:
            server = os.environ.get(
                "CRM_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
            )
            admin = server.replace("+asyncpg", "").rsplit("/", 1)[0] + "/postgres"
            conn = await asyncpg.connect(admin)
            try:
                names = [f"crm_import_bench_{uuid.uuid4().hex[:8]}" for _ in range(2 * args.rounds)]
                for name in names:
                    await conn.execute(f'CREATE DATABASE "{name}"')
                queue = iter(names)
                try:
                    await measure(
                        "PostgreSQL",
                        lambda: server.rsplit("/", 1)[0] + "/" + next(queue),
                        sheet,
                        args.rows,
                        args.rounds,
                    )
                finally:
                    for name in names:
                        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
