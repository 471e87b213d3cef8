"""HTTP adapter benchmarks (not part of the tests): ``uv run python benchmarks/http_bench.py``.

Prints, each against its baseline measured in the same run:

1. requests/s of ``GET /api/contacts/{id}`` through the full stack (token,
   session, tenant, IP allowlist, RBAC, service, gateway, audit group commit)
   vs a bare Litestar handler reading the same row of the same SQLite file with
   stdlib ``sqlite3`` — one uvicorn worker each (uvloop + httptools), 100k
   contacts, measured with ``wrk`` (or a bounded Python load generator);
   the same full stack on PostgreSQL when ``CRM_BENCH_POSTGRES_URL`` is set;
2. the IP allowlist check with 10k CIDRs vs netaddr ``IPSet`` (IPv4 and IPv6);
3. read-audit group commit vs one commit per entry (rate, and nothing lost).

Options: ``--contacts N``, ``--seconds S``, ``--runs R``, ``--only http|ip|audit``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECRET = "benchmark-secret-key-0123456789-abcdefghij"


# --------------------------------------------------------------------------- data


async def prepare_store(url: str, contacts: int) -> tuple[str, str]:
    """Migrate, seed the demo users and ``contacts`` contacts at sydney; return (token, id)."""
    from crm_domain.clock import SystemClock, UlidFactory
    from crm_domain.entities import Contact
    from crm_domain.plugins import load_gateway
    from crm_domain.queries import ContactQuery
    from crm_http_litestar.demo import seed_demo
    from crm_http_litestar.runtime import migrate
    from crm_http_litestar.sessions import SessionManager
    from crm_http_litestar.settings import Settings
    from crm_http_litestar.tokens import TokenCodec

    gateway = load_gateway(url)
    clock, ids = SystemClock(), UlidFactory()
    try:
        await migrate(gateway)
        await seed_demo(gateway, clock, ids, contacts_per_location=20)
        async with gateway.unit_of_work(None) as uow:
            sydney = await uow.locations.get_by_code("sydney")
            owner = await uow.users.get_by_email("owner@avatar-imaging.example")
        async with gateway.unit_of_work(sydney.id) as uow:
            have = await uow.contacts.count(ContactQuery())
        rng = random.Random(7)
        now = clock.now()
        missing = max(0, contacts - have)
        for start in range(0, missing, 5000):
            batch = [
                Contact(
                    id=ids.new_id(),
                    tenant_id=sydney.id,
                    first_name=rng.choice(("Ava", "Leo", "Mia", "Noah", "Zoe")),
                    last_name=f"Bench{start + i}",
                    email=f"bench{start + i}@example.com",
                    warmness=rng.randrange(101),
                    created_at=now,
                    updated_at=now,
                )
                for i in range(min(5000, missing - start))
            ]
            async with gateway.unit_of_work(sydney.id) as uow:
                await uow.contacts.add_many(batch)
                await uow.commit()
        async with gateway.unit_of_work(sydney.id) as uow:
            page = await uow.contacts.list(ContactQuery(limit=200))
        contact_id = page.items[len(page.items) // 2].id
        settings = Settings(database_url=url, secret_key=SECRET)
        sessions = SessionManager(
            gateway,
            TokenCodec(
                secret_key=SECRET, issuer=settings.token_issuer, audience=settings.token_audience
            ),
            clock,
            ids,
            token_ttl=timedelta(hours=2),
            idle_timeout=timedelta(seconds=900),
        )
        issued = await sessions.open(owner.id, sydney.id)
        return issued.token, contact_id
    finally:
        await gateway.close()


# --------------------------------------------------------------------------- load


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def uvicorn_argv(app: str, port: int) -> list[str]:
    """uvicorn serving ``app`` as ``crm serve`` does (uvloop, httptools, no access log)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--no-proxy-headers",
        "--log-level",
        "warning",
    ]


def wait_until_up(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def start_server(argv: Sequence[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        argv, env=env, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_until_up(port, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def load(url: str, headers: dict[str, str], seconds: float, connections: int) -> float:
    """Requests/s of GET ``url``: wrk if installed, else a bounded Python generator."""
    check = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url]
        + [a for k, v in headers.items() for a in ("-H", f"{k}: {v}")],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.stdout.strip() != "200":
        raise RuntimeError(f"{url} answered {check.stdout!r} before the load")
    if shutil.which("wrk"):
        argv = ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
        for key, value in headers.items():
            argv += ["-H", f"{key}: {value}"]
        out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
        if "Non-2xx" in out:
            raise RuntimeError(f"errors under load:\n{out}")
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        assert match, out
        return float(match.group(1))
    return asyncio.run(_python_load(url, headers, seconds, connections))


async def _python_load(url: str, headers: dict[str, str], seconds: float, conns: int) -> float:
    import httpx

    done = 0
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(limits=limits, headers=headers) as client:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                response = await client.get(url)
                response.raise_for_status()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(conns)))
        return done / (time.monotonic() - started)


def bench_http(contacts: int, seconds: float, runs: int) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    db = workdir / "crm.db"
    url = f"sqlite+aiosqlite:///{db}"
    print(f"seeding {contacts} contacts into {db} …", flush=True)
    token, contact_id = asyncio.run(prepare_store(url, contacts))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(
        CRM_DATABASE_URL=url,
        CRM_SECRET_KEY=SECRET,
        CRM_RATE_LIMIT_PER_MINUTE="0",
        CRM_RUN_WORKER="false",
        BARE_SQLITE_PATH=str(db),
    )
    auth = {"Authorization": f"Bearer {token}"}
    results: dict[str, list[float]] = {"bare": [], "full": []}
    for run in range(runs):
        for name in ("bare", "full"):
            port = free_port()
            if name == "bare":
                argv = uvicorn_argv("http_bare_app:app", port)
                headers: dict[str, str] = {}
            else:
                # Same logging as the bare baseline: no access log line per request.
                argv = [
                    sys.executable,
                    "-m",
                    "crm_http_litestar",
                    "serve",
                    "--port",
                    str(port),
                    "--no-access-log",
                ]
                headers = auth
            process = start_server(argv, env, port)
            try:
                target = f"http://127.0.0.1:{port}/api/contacts/{contact_id}"
                load(target, headers, 2, 16)  # warm-up
                rps = load(target, headers, seconds, 64)
            finally:
                stop(process)
            results[name].append(rps)
            print(f"  run {run + 1} {name:>4}: {rps:8.0f} req/s", flush=True)
    bare, full = statistics.median(results["bare"]), statistics.median(results["full"])
    audited = asyncio.run(_count_audit(url))
    report: dict[str, object] = {
        "bare_rps": round(bare),
        "full_rps": round(full),
        "ratio": round(full / bare, 3),
        "audit_entries": audited,
    }
    if os.environ.get("CRM_BENCH_SKIP_POSTGRES") != "1":
        try:
            pg = asyncio.run(_fresh_postgres("crm_bench_http"))
        except OSError as exc:
            report["postgres"] = f"skipped: {exc}"
        else:
            print(f"seeding {contacts} contacts into PostgreSQL …", flush=True)
            full_pg = _bench_full_only(pg, contacts, seconds, runs, env)
            report["postgres_full_rps"] = round(full_pg)
            report["postgres_ratio_to_bare_sqlite"] = round(full_pg / bare, 3)
    shutil.rmtree(workdir, ignore_errors=True)
    return report


def _bench_full_only(
    url: str, contacts: int, seconds: float, runs: int, env: dict[str, str]
) -> float:
    token, contact_id = asyncio.run(prepare_store(url, contacts))
    figures = []
    for _ in range(runs):
        port = free_port()
        process = start_server(
            [sys.executable, "-m", "crm_http_litestar", "serve", "--port", str(port)],
            {**env, "CRM_DATABASE_URL": url},
            port,
        )
        try:
            target = f"http://127.0.0.1:{port}/api/contacts/{contact_id}"
            headers = {"Authorization": f"Bearer {token}"}
            load(target, headers, 2, 16)
            figures.append(load(target, headers, seconds, 64))
        finally:
            stop(process)
        print(f"  postgres full: {figures[-1]:8.0f} req/s", flush=True)
    return statistics.median(figures)


async def _count_audit(url: str) -> int:
    from crm_domain.plugins import load_gateway

    gateway = load_gateway(url)
    try:
        async with gateway.unit_of_work(None) as uow:
            sydney = await uow.locations.get_by_code("sydney")
        async with gateway.unit_of_work(sydney.id) as uow:
            return len(await uow.audit.chain(0, 10_000_000))
    finally:
        await gateway.close()


# --------------------------------------------------------------------------- IP allowlist


def _v4(rng: random.Random) -> str:
    return f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"


def _v6(rng: random.Random) -> str:
    return f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::{rng.randrange(65536):x}"


def _inside(cidr: str) -> str:
    """An address inside a /24 or /64 network (its first host)."""
    network = cidr.split("/")[0]
    return network[:-1] + "1" if "." in network else network + "1"


def bench_ip(rules: int = 10_000, lookups: int = 20_000) -> dict[str, object]:
    """µs per allowlist check with ``rules`` CIDRs: ours (bisect) vs netaddr IPSet."""
    import netaddr
    from crm_domain.policies import IpAllowlist

    rng = random.Random(11)
    report: dict[str, object] = {}
    for family, make, prefix in (("ipv4", _v4, "/24"), ("ipv6", _v6, "/64")):
        cidrs = sorted({str(netaddr.IPNetwork(make(rng) + prefix).cidr) for _ in range(rules)})
        ours = IpAllowlist.from_cidrs(cidrs)
        theirs = netaddr.IPSet(cidrs)
        addresses = [make(rng) for _ in range(lookups)]
        # Half the lookups hit an allowed network, so both answers are exercised.
        addresses[::2] = [_inside(c) for c in rng.choices(cidrs, k=len(addresses[::2]))]
        assert [ours.allows(a) for a in addresses] == [a in theirs for a in addresses]
        t_ours = _best_of(lambda o=ours, a=addresses: [o.allows(x) for x in a])
        t_theirs = _best_of(lambda t=theirs, a=addresses: [x in t for x in a])
        report[family] = {
            "rules": len(cidrs),
            "ours_us": round(t_ours / lookups * 1e6, 2),
            "netaddr_us": round(t_theirs / lookups * 1e6, 2),
            "ratio": round(t_ours / t_theirs, 3),
        }
    return report


def _best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


# --------------------------------------------------------------------------- audit


PG_ADMIN = os.environ.get(
    "CRM_BENCH_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def _fresh_postgres(name: str) -> str:
    """A new empty PostgreSQL database on the local server; its gateway URL."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def _audit_rate(
    grouped: bool, entries: int, concurrency: int, store: str = "sqlite"
) -> tuple[float, int]:
    from crm_domain.audit import DirectAuditRecorder
    from crm_domain.clock import UlidFactory
    from crm_domain.entities import AuditEntry, Location
    from crm_domain.plugins import load_gateway
    from crm_http_litestar.audit import GroupCommitAuditRecorder
    from crm_http_litestar.runtime import migrate

    workdir = Path(tempfile.mkdtemp(prefix="crm-audit-"))
    if store == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir / 'audit.db'}"
    else:
        url = await _fresh_postgres("crm_bench_audit")
    gateway = load_gateway(url)
    ids = UlidFactory()
    try:
        await migrate(gateway)
        location = Location(
            id=ids.new_id(),
            code="bench",
            name="Bench",
            timezone="UTC",
            created_at=datetime.now(UTC),
        )
        async with gateway.unit_of_work(None) as uow:
            await uow.locations.add(location)
            await uow.commit()
        recorder = (
            GroupCommitAuditRecorder(gateway, max_batch=500, max_queue=entries)
            if grouped
            else DirectAuditRecorder(gateway)
        )
        # The entries are built before the clock starts: building one (≈ 11 µs)
        # is the request's work whichever way it is committed, and this compares
        # the two ways of committing.
        pending = [
            AuditEntry(
                id=ids.new_id(),
                tenant_id=location.id,
                user_id="bench-user",
                action="READ",
                resource_type="contact",
                resource_id=str(i),
                ip_address="10.0.0.1",
                request_method="GET",
                request_path=f"/api/contacts/{i}",
                status_code=200,
                occurred_at=datetime.now(UTC),
            )
            for i in range(entries)
        ]
        pending.reverse()

        async def request() -> None:
            while pending:
                await recorder.record(pending.pop())

        started = time.perf_counter()
        await asyncio.gather(*(request() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        async with gateway.unit_of_work(location.id) as uow:
            stored = len(await uow.audit.chain(0, entries + 10))
        return entries / elapsed, stored
    finally:
        await gateway.close()
        shutil.rmtree(workdir, ignore_errors=True)


def bench_audit(entries: int = 5000, concurrency: int = 64, rounds: int = 5) -> dict[str, object]:
    """Entries/s with one commit per entry vs group commit, on SQLite and PostgreSQL.

    ``rounds`` alternating pairs (a fresh database each); medians, and the
    ratio of the medians (single runs on a shared machine vary by ±30 %).
    """
    report: dict[str, object] = {}
    stores = ["sqlite"]
    if os.environ.get("CRM_BENCH_SKIP_POSTGRES") != "1":
        stores.append("postgresql")
    for store in stores:
        direct_n = max(500, entries // 5)  # one commit each is slow: fewer entries, same rate
        directs: list[float] = []
        groups: list[float] = []
        nothing_lost = True
        try:
            for _ in range(rounds):
                direct, direct_stored = asyncio.run(
                    _audit_rate(False, direct_n, concurrency, store)
                )
                group, group_stored = asyncio.run(_audit_rate(True, entries, concurrency, store))
                directs.append(direct)
                groups.append(group)
                nothing_lost &= group_stored == entries and direct_stored == direct_n
        except OSError as exc:
            report[store] = f"skipped: {exc}"
            continue
        direct_median, group_median = statistics.median(directs), statistics.median(groups)
        report[store] = {
            "one_commit_per_entry_per_s": round(direct_median),
            "group_commit_per_s": round(group_median),
            "ratio": round(group_median / direct_median, 1),
            "runs_one_commit": [round(r) for r in directs],
            "runs_group": [round(r) for r in groups],
            "nothing_lost": nothing_lost,
        }
    return report


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("http", "ip", "audit"))
    args = parser.parse_args()
    report: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}",
    }
    if args.only in (None, "ip"):
        report["ip_allowlist_10k_cidrs"] = bench_ip()
        print(json.dumps(report["ip_allowlist_10k_cidrs"]), flush=True)
    if args.only in (None, "audit"):
        report["read_audit"] = bench_audit()
        print(json.dumps(report["read_audit"]), flush=True)
    if args.only in (None, "http"):
        report["get_contact"] = bench_http(args.contacts, args.seconds, args.runs)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
