"""Scale-out benchmarks (not part of the tests): ``uv run python benchmarks/scale_bench.py``.

``GET /api/contacts/{id}`` requests/s, every figure against a baseline measured
in the same run, the servers of one run taken in turn (so load from other
sessions falls on all of them alike), medians over ``--runs``:

- **PostgreSQL**: the full stack (token, session, tenant, IP allowlist, RBAC,
  service, gateway with row-level security and the tenant set per transaction,
  durable read audit) against a bare asyncpg handler doing the same point read
  (``http_bare_asyncpg_app.py``); the full stack with 2 server processes
  (``crm serve --workers 2``, shared state in Redis) against 1 process with the
  same Redis, and that against the default in-process state;
- **SQLite**: the full stack against a bare stdlib ``sqlite3`` handler
  (``http_bare_app.py``);
- **read audit on vs off**, on both: the same full stack with the read audit's
  recorder short-circuited (``http_noaudit_app.py``; benchmark only: the server
  has no setting that turns the audit off), and a check that nothing was lost —
  after each audited server run, the audit rows it added equal the reads it served.

Load: ``wrk`` (2 threads, 64 connections) on 127.0.0.1 only, ``--seconds`` per
server and run after a 2 s warm-up.  Options: ``--contacts``, ``--seconds``,
``--runs``, ``--only sqlite|postgres``.  PostgreSQL from
``CRM_BENCH_POSTGRES_ADMIN`` (a database is created and dropped), Redis from
``CRM_BENCH_REDIS_URL`` (keys under a namespace of the run, deleted after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from http_bench import (
    HERE,
    SECRET,
    _fresh_postgres,
    free_port,
    prepare_store,
    start_server,
    stop,
    uvicorn_argv,
)

REDIS_URL = os.environ.get("CRM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CONNECTIONS = 64


def wrk(url: str, headers: dict[str, str], seconds: float) -> tuple[float, int]:
    """(requests/s, requests served) of GET ``url`` with wrk; any non-2xx answer fails the run."""
    argv = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{max(1, int(seconds))}s"]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", out)
    if "Non-2xx" in out or (errors and any(int(n) for n in errors.groups())):
        raise RuntimeError(f"errors under load:\n{out}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    assert rate and total, out
    return float(rate.group(1)), int(total.group(1))


def _crm_serve(port: int, workers: int = 1) -> list[str]:
    argv = [sys.executable, "-m", "crm_http_litestar", "serve", "--port", str(port)]
    return [*argv, "--no-access-log", "--workers", str(workers)]


def _audit_rows(store: str, target: str) -> int:
    if store == "sqlite":
        with sqlite3.connect(target) as db:
            return int(db.execute("SELECT count(*) FROM hipaa_audit_log").fetchone()[0])

    async def count() -> int:
        import asyncpg

        conn = await asyncpg.connect(target)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM hipaa_audit_log"))
        finally:
            await conn.close()

    return asyncio.run(count())


def bench_store(store: str, contacts: int, seconds: float, runs: int) -> dict[str, object]:
    """Every server of ``store`` in turn, ``runs`` times; medians, ratios, nothing lost."""
    workdir = Path(tempfile.mkdtemp(prefix="crm-scale-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(CRM_SECRET_KEY=SECRET, CRM_RATE_LIMIT_PER_MINUTE="0", CRM_RUN_WORKER="false")
    if store == "sqlite":
        db = workdir / "crm.db"
        url = f"sqlite+aiosqlite:///{db}"
        target = str(db)
        env["BARE_SQLITE_PATH"] = target
        servers = {
            "bare": (uvicorn_argv("http_bare_app:app", 0), False, {}),
            "full": (_crm_serve(0), True, {}),
            "full_audit_off": (uvicorn_argv("http_noaudit_app:app", 0), False, {}),
        }
    else:
        url = asyncio.run(_fresh_postgres("crm_bench_scale"))
        target = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        env["BARE_POSTGRES_DSN"] = target
        namespace = f"crm-bench-{uuid.uuid4().hex}"
        # Several processes share their state through Redis: measured against one
        # process with the same Redis, and that one against the default (no Redis).
        redis = {"CRM_REDIS_URL": REDIS_URL, "CRM_REDIS_NAMESPACE": namespace}
        servers = {
            "bare": (uvicorn_argv("http_bare_asyncpg_app:app", 0), False, {}),
            "full": (_crm_serve(0), True, {}),
            "full_audit_off": (uvicorn_argv("http_noaudit_app:app", 0), False, {}),
            "full_redis": (_crm_serve(0), True, redis),
            "full_redis_2_processes": (_crm_serve(0, workers=2), True, redis),
        }
    env["CRM_DATABASE_URL"] = url
    print(f"{store}: seeding {contacts} contacts …", flush=True)
    token, contact_id = asyncio.run(prepare_store(url, contacts))
    if store == "postgres":
        # Statistics, as autovacuum would have gathered them: this machine's PostgreSQL
        # runs with autovacuum off, and without statistics the audit chain's head read
        # is planned as a bitmap scan of the whole chain (30 ms at 35k entries, against
        # 0.1 ms by the (chain, sequence) index once analysed).
        asyncio.run(_analyze(target))
    auth = {"Authorization": f"Bearer {token}"}
    figures: dict[str, list[float]] = {name: [] for name in servers}
    served_vs_audited: list[tuple[str, int, int]] = []
    for run in range(runs):
        for name, (template, audited, extra_env) in servers.items():
            port = free_port()
            argv = [str(port) if a == "0" else a for a in template]
            process = start_server(argv, {**env, **extra_env}, port)
            try:
                target_url = f"http://127.0.0.1:{port}/api/contacts/{contact_id}"
                before = _audit_rows(store, target) if audited else 0
                _, warm = wrk(target_url, {} if name == "bare" else auth, 2)
                rps, served = wrk(target_url, {} if name == "bare" else auth, seconds)
            finally:
                stop(process)
            if audited:
                added = _audit_rows(store, target) - before
                served_vs_audited.append((name, warm + served, added))
            figures[name].append(rps)
            print(f"  {store} run {run + 1} {name:>16}: {rps:8.0f} req/s", flush=True)
    medians = {name: statistics.median(values) for name, values in figures.items()}
    report: dict[str, object] = {
        "runs": {name: [round(v) for v in values] for name, values in figures.items()},
        "medians": {name: round(v) for name, v in medians.items()},
        "full_vs_bare": round(medians["full"] / medians["bare"], 3),
        "audit_on_vs_off": round(medians["full"] / medians["full_audit_off"], 3),
        # wrk counts answers it read; a request cut off at the end of a run may have
        # been served (and audited) without being counted, never the other way round.
        "audit_rows_vs_reads": [
            {"server": name, "reads": reads, "audit_rows": rows}
            for name, reads, rows in served_vs_audited
        ],
        "nothing_lost": all(rows >= reads for _, reads, rows in served_vs_audited),
    }
    if store == "postgres":
        report["two_vs_one_process_with_redis"] = round(
            medians["full_redis_2_processes"] / medians["full_redis"], 3
        )
        report["redis_vs_in_process_state"] = round(medians["full_redis"] / medians["full"], 3)
        _drop_namespace(namespace)
    shutil.rmtree(workdir, ignore_errors=True)
    return report


async def _analyze(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def _drop_namespace(namespace: str) -> None:
    async def drop() -> None:
        from crm_http_litestar.shared_state import SharedState

        shared = SharedState.from_url(REDIS_URL, namespace)
        try:
            await shared.store.delete_all()
        finally:
            await shared.aclose()

    asyncio.run(drop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("scale_bench.py needs wrk (Debian: apt-get install wrk)")
    os.chdir(HERE)
    with open("/proc/loadavg", encoding="ascii") as handle:
        load_before = handle.read().split()[:3]
    report: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}",
        "load_average_before": load_before,
    }
    for store in ("postgres", "sqlite"):
        if args.only in (None, store):
            report[store] = bench_store(store, args.contacts, args.seconds, args.runs)
            print(json.dumps(report[store]), flush=True)
    with open("/proc/loadavg", encoding="ascii") as handle:
        report["load_average_after"] = handle.read().split()[:3]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
