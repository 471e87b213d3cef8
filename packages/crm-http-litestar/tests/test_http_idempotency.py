"""``Idempotency-Key`` on POST: at most one create, under concurrency and after crashes.

Everything runs through the real app and a real store (SQLite, and
PostgreSQL for the concurrent case); assertions look at the store, not only
at status codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import sqlalchemy as sa
from crm_domain.entities import IdempotencyRecord, IdempotencyState
from crm_domain.plugins import load_gateway
from crm_domain.queries import ContactQuery

from crm_http_litestar.routes._common import IDEMPOTENCY_PENDING_TIMEOUT
from crm_http_litestar.testing import World

pytestmark = pytest.mark.anyio

PATH = "/api/contacts"
IN_PROGRESS = "a request with this Idempotency-Key is still in progress; retry later"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def fingerprint(body: bytes, path: str = PATH) -> str:
    """What the server hashes: method, path and the exact body bytes."""
    return hashlib.sha256(b"POST " + path.encode() + b"\n" + body).hexdigest()


async def headers_for(world: World, key: str, who: str = "owner") -> dict[str, str]:
    return {
        **(await world.headers(who)),
        "Idempotency-Key": key,
        "Content-Type": "application/json",
    }


async def post(world: World, key: str, body: bytes, who: str = "owner") -> Any:
    return await world.client.post(PATH, headers=await headers_for(world, key, who), content=body)


async def contacts_with_email(world: World, email: str) -> list[str]:
    async with world.gateway.unit_of_work(world.locations["sydney"]) as uow:
        page = await uow.contacts.list(ContactQuery(email=email, limit=50))
    return [c.id for c in page.items]


async def stored(world: World, key: str, who: str = "owner") -> IdempotencyRecord | None:
    async with world.gateway.unit_of_work(world.locations["sydney"]) as uow:
        return await uow.idempotency.get(key, world.users[who])


async def reserve(world: World, key: str, body: bytes, age: timedelta) -> IdempotencyRecord:
    """A reservation left behind by a request that died ``age`` ago (never completed)."""
    reservation = IdempotencyRecord(
        tenant_id=world.locations["sydney"],
        key=key,
        user_id=world.users["owner"],
        request_fingerprint=fingerprint(body),
        state=IdempotencyState.PENDING,
        created_at=world.clock.now() - age,
    )
    async with world.gateway.unit_of_work(reservation.tenant_id) as uow:
        await uow.idempotency.reserve(reservation)
        await uow.commit()
    return reservation


async def check_concurrent_posts_create_one_contact(world: World, n: int) -> None:
    body = encode({"first_name": "Rae", "last_name": "Race", "email": "race@example.com"})
    # Sign in first: only the requests themselves run concurrently (in the app's loop).
    headers = await headers_for(world, "race-1")
    # The test client hands requests to the app's loop one at a time; ASGITransport
    # runs them on this loop as truly concurrent tasks.
    transport = httpx.ASGITransport(app=world.peer)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answers = await asyncio.gather(
            *(client.post(PATH, headers=headers, content=body) for _ in range(n))
        )
    created = [
        a for a in answers if a.status_code == 201 and "idempotent-replayed" not in a.headers
    ]
    replayed = [a for a in answers if a.headers.get("idempotent-replayed") == "true"]
    in_progress = [a for a in answers if a.status_code == 409]
    assert len(created) == 1, [(a.status_code, a.text) for a in answers]
    assert len(created) + len(replayed) + len(in_progress) == n
    for answer in in_progress:
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["detail"] == IN_PROGRESS
        assert answer.headers["retry-after"] == "1"
    for answer in replayed:
        assert answer.status_code == 201
        assert answer.content == created[0].content
    contact_id = created[0].json()["id"]
    assert await contacts_with_email(world, "race@example.com") == [contact_id]
    record = await stored(world, "race-1")
    assert record is not None
    assert record.state is IdempotencyState.COMPLETED
    assert record.status_code == 201
    assert record.response_body is not None
    assert json.loads(record.response_body) == created[0].json()
    # Once done, every retry is the identical replay and still one contact.
    again = await post(world, "race-1", body)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == created[0].content
    assert await contacts_with_email(world, "race@example.com") == [contact_id]


async def test_concurrent_posts_with_one_key_create_one_contact(world: World) -> None:
    await check_concurrent_posts_create_one_contact(world, 8)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def postgres_server(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """``crm serve --demo`` over a private PostgreSQL database: (base URL, token, DB URL).

    A real server process: the in-process test client runs the app on another
    event loop than the test, which asyncpg's pooled connections do not allow.
    """
    url = sa.make_url(os.environ.get("CRM_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    name = f"crm_http_idem_{secrets.token_hex(4)}"
    admin_dsn = url.render_as_string(hide_password=False).replace("+asyncpg", "", 1)

    async def admin(sql: str) -> None:
        try:
            conn = await asyncpg.connect(admin_dsn, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.fail(f"PostgreSQL at {url} is unreachable ({exc}); set CRM_TEST_POSTGRES_URL")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    database_url = url.set(database=name).render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env["CRM_DATABASE_URL"] = database_url
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "crm_http_litestar", "serve", "--demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        output: list[str] = []
        token = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            found = re.search(r"Bearer ([\w.-]+)", line)
            token = token or (found.group(1) if found else None)
            if token and any("running on" in o for o in output):
                break
        assert token, "".join(output)
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield f"http://127.0.0.1:{port}", token, database_url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_concurrent_posts_with_one_key_create_one_contact_on_postgres(
    postgres_server: tuple[str, str, str],
) -> None:
    base, token, database_url = postgres_server
    body = encode({"first_name": "Pia", "last_name": "Race", "email": "pg-race@example.com"})
    headers = {
        "Authorization": f"Bearer {token}",
        "Idempotency-Key": "pg-race-1",
        "Content-Type": "application/json",
    }

    async def run() -> tuple[list[httpx.Response], list[str], IdempotencyRecord | None]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            answers = await asyncio.gather(
                *(client.post(PATH, headers=headers, content=body) for _ in range(12))
            )
        created = [a for a in answers if a.status_code == 201]
        gateway = load_gateway(database_url)
        try:
            tenant = created[0].json()["tenant_id"]
            async with gateway.unit_of_work(tenant) as uow:
                page = await uow.contacts.list(ContactQuery(email="pg-race@example.com"))
                user = jwt.decode(token, options={"verify_signature": False})["sub"]
                record = await uow.idempotency.get("pg-race-1", user)
        finally:
            await gateway.close()
        return answers, [c.id for c in page.items], record

    answers, contact_ids, record = asyncio.run(run())
    fresh = [a for a in answers if a.status_code == 201 and "idempotent-replayed" not in a.headers]
    assert len(fresh) == 1, [(a.status_code, a.text) for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["detail"] == IN_PROGRESS
            assert answer.headers["retry-after"] == "1"
        else:
            assert answer.status_code == 201
            assert answer.content == fresh[0].content
    assert contact_ids == [fresh[0].json()["id"]]
    assert record is not None
    assert record.state is IdempotencyState.COMPLETED
    assert record.response_body is not None
    assert json.loads(record.response_body) == fresh[0].json()


async def test_a_pending_key_is_409_in_progress_and_creates_nothing(world: World) -> None:
    body = encode({"first_name": "Pat", "email": "pending@example.com"})
    reservation = await reserve(world, "stuck-1", body, age=timedelta(hours=23))
    answer = await post(world, "stuck-1", body)
    assert answer.status_code == 409
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["detail"] == IN_PROGRESS
    assert answer.headers["retry-after"] == "1"
    assert await contacts_with_email(world, "pending@example.com") == []
    assert await stored(world, "stuck-1") == reservation
    # Another body with the same key is still "used for a different request".
    other = await post(world, "stuck-1", encode({"first_name": "Other", "phone": "+61400000009"}))
    assert other.status_code == 409
    assert other.json()["detail"] == "this Idempotency-Key was used for a different request"
    assert "retry-after" not in other.headers


async def test_a_stale_pending_key_is_taken_over_once(world: World) -> None:
    body = encode({"first_name": "Sam", "email": "stale@example.com"})
    await reserve(world, "stuck-2", body, age=IDEMPOTENCY_PENDING_TIMEOUT + timedelta(seconds=1))
    first = await post(world, "stuck-2", body)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert await contacts_with_email(world, "stale@example.com") == [first.json()["id"]]
    record = await stored(world, "stuck-2")
    assert record is not None
    assert record.state is IdempotencyState.COMPLETED
    assert record.created_at == world.clock.now()
    again = await post(world, "stuck-2", body)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert await contacts_with_email(world, "stale@example.com") == [first.json()["id"]]


async def test_a_refused_create_releases_the_key_for_the_corrected_retry(world: World) -> None:
    # The email passes the schema but not the service's parser: a 422 from inside the create.
    bad = encode({"first_name": "Val", "email": "not-an-email"})
    refused = await post(world, "fix-1", bad)
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "email"
    assert await stored(world, "fix-1") is None
    fixed = encode({"first_name": "Val", "email": "val@example.com"})
    created = await post(world, "fix-1", fixed)
    assert created.status_code == 201
    assert "idempotent-replayed" not in created.headers
    assert await contacts_with_email(world, "val@example.com") == [created.json()["id"]]
    record = await stored(world, "fix-1")
    assert record is not None and record.request_fingerprint == fingerprint(fixed)
    replay = await post(world, "fix-1", fixed)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == created.content
    # The first (refused) body is now "another request" for this key.
    assert (await post(world, "fix-1", bad)).status_code == 409


async def test_a_refused_duplicate_releases_the_key_too(world: World) -> None:
    first = await post(world, "dup-0", encode({"first_name": "Dee", "email": "dee@example.com"}))
    assert first.status_code == 201
    duplicate = encode({"first_name": "Dee2", "email": "dee@example.com"})
    refused = await post(world, "dup-1", duplicate)
    assert refused.status_code == 409
    assert "already has this email" in refused.json()["detail"]
    assert await stored(world, "dup-1") is None
    allowed = encode(
        {"first_name": "Dee2", "email": "dee@example.com", "allow_duplicate_email": True}
    )
    created = await post(world, "dup-1", allowed)
    assert created.status_code == 201
    assert sorted(await contacts_with_email(world, "dee@example.com")) == sorted(
        [first.json()["id"], created.json()["id"]]
    )


async def test_keys_are_per_user(world: World) -> None:
    body = encode({"first_name": "Una", "email": "una@example.com", "allow_duplicate_email": True})
    mine = await post(world, "shared-key", body, who="owner")
    theirs = await post(world, "shared-key", body, who="reception")
    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert len(await contacts_with_email(world, "una@example.com")) == 2
