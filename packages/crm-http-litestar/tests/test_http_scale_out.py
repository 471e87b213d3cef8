"""Several processes on one PostgreSQL: two ``crm serve`` and two ``crm worker`` under load.

Real processes, the real PostgreSQL and Redis on loopback.  A bounded load
(creates and reads, spread over both servers) runs while both workers consume
the outbox.  Afterwards:

- every created contact's event is in the outbox, done, and was handed to
  exactly one worker exactly once (each worker logs each delivery with its
  process id, ``crm worker --log-level debug``) — nothing lost, nothing run twice;
- every response's request id is in the audit log — no audit entry missing —
  and ``crm audit verify`` finds every chain intact although two processes
  appended to it at once;
- ``crm serve --workers 2`` runs two server processes behind one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx

from crm_http_litestar.testing import (
    CRM,
    REDIS_URL,
    SECRET,
    fresh_redis_namespace,
    postgres_database,
)

#: The load: bounded in count and in time, loopback only.
CREATES = 160
READS = 160
CONCURRENCY = 16
LOAD_TIMEOUT = 120.0
DELIVERED = re.compile(r"delivering event (\S+) (\S+) attempt (\d+) in process (\d+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"server did not start:\n{log.read_text()}")


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Started processes, interrupted (then killed) on the way out."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def _crm(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [*CRM, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _load(bases: list[str], token: str) -> tuple[list[str], list[str]]:
    """Creates, then reads of what was created, over every server; (request ids, contact ids)."""
    request_ids: list[str] = []
    created: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:

        async def create(n: int) -> None:
            async with gate:
                response = await client.post(
                    f"{bases[n % len(bases)]}/api/contacts",
                    json={
                        "first_name": "Load",
                        "last_name": f"Test{n}",
                        "email": f"load{n}@example.com",
                    },
                )
            assert response.status_code == 201, response.text
            request_ids.append(response.headers["x-request-id"])
            created.append(response.json()["id"])

        async def read(n: int) -> None:
            async with gate:
                response = await client.get(
                    f"{bases[(n + 1) % len(bases)]}/api/contacts/{created[n % len(created)]}"
                )
            assert response.status_code == 200, response.text
            request_ids.append(response.headers["x-request-id"])

        async with asyncio.timeout(LOAD_TIMEOUT):
            await asyncio.gather(*(create(n) for n in range(CREATES)))
            await asyncio.gather(*(read(n) for n in range(READS)))
    return request_ids, created


async def _drained(dsn: str) -> list[tuple[str, str, int]]:
    """Wait (≤ 90 s) until no outbox message is pending; (event id, status, attempts) of all."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 90
        while True:
            pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'pending'")
            if pending == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        rows = await conn.fetch(
            "SELECT event_id, status, attempts FROM outbox WHERE name = $1", "ContactCreated"
        )
        return [(r["event_id"], r["status"], r["attempts"]) for r in rows]
    finally:
        await conn.close()


async def _audited(dsn: str, request_ids: list[str]) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT request_id FROM hipaa_audit_log WHERE request_id = ANY($1::text[])",
            request_ids,
        )
        return {r["request_id"] for r in rows}
    finally:
        await conn.close()


async def _outbox_event_ids_of(dsn: str, contact_ids: list[str]) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT aggregate_id, event_id FROM outbox "
            "WHERE name = 'ContactCreated' AND aggregate_id = ANY($1::text[])",
            contact_ids,
        )
        return {r["aggregate_id"]: r["event_id"] for r in rows}
    finally:
        await conn.close()


def test_two_servers_and_two_workers_lose_nothing_and_run_nothing_twice(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        database_url, dsn = stack.enter_context(postgres_database("crm_scale_out"))
        namespace = stack.enter_context(_sync_redis_namespace())
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
        env.update(
            CRM_DATABASE_URL=database_url,
            CRM_SECRET_KEY=SECRET,
            CRM_REDIS_URL=REDIS_URL,
            CRM_REDIS_NAMESPACE=namespace,
            # Only the two `crm worker` processes consume the outbox.
            CRM_RUN_WORKER="false",
            CRM_RATE_LIMIT_PER_USER="0",
        )
        _crm(env, "db", "upgrade")
        _crm(env, "demo", "seed")
        token = _crm(
            env, "token", "owner@avatar-imaging.example", "--location", "sydney", "--ttl", "3600"
        ).strip()
        processes = stack.enter_context(_processes())
        ports = [_free_port(), _free_port()]
        for n, port in enumerate(ports):
            log = tmp_path / f"server{n}.log"
            processes.append(
                _start([*CRM, "serve", "--port", str(port), "--no-access-log"], env, log)
            )
            _wait_for_port(port, processes[-1], log)
        worker_logs = [tmp_path / f"worker{n}.log" for n in range(2)]
        workers = [
            _start([*CRM, "worker", "--log-level", "debug"], env, log) for log in worker_logs
        ]
        processes.extend(workers)

        request_ids, created = asyncio.run(_load([f"http://127.0.0.1:{p}" for p in ports], token))
        outbox = asyncio.run(_drained(dsn))
        for worker in workers:
            worker.send_signal(signal.SIGINT)
            # Known defect (see CHANGELOG): on a loaded machine a worker has been seen
            # to print "stopped" and then take more than 30 s to exit; the exit gets a
            # generous bound until that is found.
            worker.wait(timeout=120)
        audited = asyncio.run(_audited(dsn, request_ids))
        events = asyncio.run(_outbox_event_ids_of(dsn, created))
        # Two processes appended to the same chains at once: every chain still verifies.
        verified = subprocess.run(
            [*CRM, "audit", "verify"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr

    # No event lost: one outbox event per created contact, every one done at its first attempt.
    assert len(created) == len(set(created)) == CREATES
    assert set(events) == set(created)
    statuses = {event_id: (status, attempts) for event_id, status, attempts in outbox}
    assert {statuses[e] for e in events.values()} == {("done", 1)}
    # None run twice: each was handed over once, by one worker; both workers took part.
    deliveries = [
        m for log in worker_logs for m in DELIVERED.finditer(log.read_text(errors="replace"))
    ]
    handed = Counter(m.group(1) for m in deliveries)
    assert set(events.values()) <= set(handed), "an event was never delivered"
    assert [e for e, n in handed.items() if n != 1] == [], "an event was delivered twice"
    # Every hand-over was by one of the two workers.  (Whether both took a share is up to
    # the leases' timing: one worker may claim every batch, which is correct, not a loss.)
    pids = {m.group(4) for m in deliveries if m.group(1) in set(events.values())}
    assert pids and pids <= {str(w.pid) for w in workers}
    # No audit entry missing: every answered request has its entry, and the chains verify.
    assert len(request_ids) == CREATES + READS
    assert audited == set(request_ids)


@contextlib.contextmanager
def _sync_redis_namespace() -> Iterator[str]:
    """:func:`fresh_redis_namespace` for a synchronous test (its own event loop)."""
    manager = fresh_redis_namespace()
    loop = asyncio.new_event_loop()
    try:
        namespace = loop.run_until_complete(manager.__aenter__())
        try:
            yield namespace
        finally:
            loop.run_until_complete(manager.__aexit__(None, None, None))
    finally:
        loop.close()


def test_crm_serve_workers_runs_several_processes_on_one_port(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(
        CRM_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}", CRM_RUN_WORKER="false"
    )
    with _processes() as processes:
        processes.append(
            _start(
                [*CRM, "serve", "--demo", "--workers", "2", "--port", str(port)],
                {**env, "PYTHONUNBUFFERED": "1"},
                log,
            )
        )
        _wait_for_port(port, processes[0], log)
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and log.read_text().count("Application startup complete") < 2
        ):
            time.sleep(0.2)
        text = log.read_text()
        token = re.search(r"Bearer ([\w.-]+)", text)
        assert token, text
        with httpx.Client(timeout=10) as client:
            for _ in range(20):
                answer = client.get(
                    f"http://127.0.0.1:{port}/api/contacts?limit=1",
                    headers={"Authorization": f"Bearer {token.group(1)}"},
                )
                assert answer.status_code == 200, answer.text
    # Two server processes started (each logs its own startup), the demo announced once.
    assert text.count("Application startup complete") == 2, text
    # The demo is announced once (its token line; the webhook reply line is another curl).
    assert text.count("Authorization: Bearer") == 1, text
