"""The ``crm`` command and the real server process on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import shlex
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncpg
import httpx
import jwt
import pytest

from crm_http_litestar.settings import DEMO_KEY_FILE
from crm_http_litestar.testing import (
    CRM,
    SECRET,
    World,
    cli_env,
    free_port,
    one_line_error,
    postgres_database,
    run_crm,
    start_crm,
)

# These tests run the CLI as real processes, a dozen or more per test, each bounded by its
# own 120 s timeout (``run_crm``).  The suite's 300 s per-test limit is a hang guard, and on
# a machine whose cores are oversubscribed (two CI runs beside other work: seen at load 8 on
# 2 cores, ~17 s per CLI start) a healthy test exceeded it; allow these the time they need.
pytestmark = pytest.mark.timeout(1200)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return cli_env(tmp_path / "crm.db", **extra)


crm = run_crm
_one_line_error = one_line_error


def test_admin_commands_token_and_audit_verify(tmp_path: Path) -> None:
    key = "cli-test-secret-key-0123456789-abcdefghij"
    assert crm(tmp_path, "db", "upgrade", CRM_SECRET_KEY=key).returncode == 0
    seeded = crm(tmp_path, "demo", "seed", "--contacts", "5", CRM_SECRET_KEY=key)
    assert seeded.returncode == 0, seeded.stderr
    assert "contacts" in seeded.stdout
    assert "already present" in crm(tmp_path, "demo", "seed", CRM_SECRET_KEY=key).stdout

    added = crm(
        tmp_path,
        "location",
        "add",
        "brisbane",
        "--name",
        "Brisbane",
        "--timezone",
        "Australia/Brisbane",
        CRM_SECRET_KEY=key,
    )
    assert added.returncode == 0, added.stderr
    dup = crm(
        tmp_path,
        "location",
        "add",
        "brisbane",
        "--name",
        "B",
        "--timezone",
        "UTC",
        CRM_SECRET_KEY=key,
    )
    assert _one_line_error(dup).startswith("crm: error:")
    user = crm(
        tmp_path,
        "user",
        "add",
        "rad@avatar-imaging.example",
        "--location",
        "brisbane",
        "--role",
        "doctor",
        CRM_SECRET_KEY=key,
    )
    assert user.returncode == 0, user.stderr
    assert "no IP rules" in crm(tmp_path, "ip", "list", "--location", "brisbane").stdout
    assert crm(tmp_path, "ip", "allow", "10.20.0.0/16", "--location", "brisbane").returncode == 0
    assert crm(tmp_path, "ip", "allow", "2001:db8::/32", "--location", "brisbane").returncode == 0
    listed = crm(tmp_path, "ip", "list", "--location", "brisbane").stdout
    assert "10.20.0.0/16" in listed and "2001:db8::/32" in listed
    bad_cidr = crm(tmp_path, "ip", "allow", "10.20.0.5/16", "--location", "brisbane")
    assert "did you mean" in _one_line_error(bad_cidr)
    assert crm(tmp_path, "ip", "remove", "10.20.0.0/16", "--location", "brisbane").returncode == 0
    assert "10.20.0.0/16" not in crm(tmp_path, "ip", "list", "--location", "brisbane").stdout

    token = crm(
        tmp_path,
        "token",
        "rad@avatar-imaging.example",
        "--location",
        "brisbane",
        "--ttl",
        "60",
        CRM_SECRET_KEY=key,
    )
    assert token.returncode == 0, token.stderr
    claims = jwt.decode(
        token.stdout.strip(), key, algorithms=["HS256"], audience="avatar-imaging-crm-api"
    )
    assert claims["exp"] - claims["iat"] == 60
    nobody = crm(
        tmp_path, "token", "nobody@example.com", "--location", "sydney", CRM_SECRET_KEY=key
    )
    assert "no user" in _one_line_error(nobody)
    not_member = crm(
        tmp_path, "token", "rad@avatar-imaging.example", "--location", "sydney", CRM_SECRET_KEY=key
    )
    assert "no active membership" in _one_line_error(not_member)
    no_key = crm(tmp_path, "token", "rad@avatar-imaging.example", "--location", "brisbane")
    assert "CRM_SECRET_KEY" in _one_line_error(no_key)

    verified = crm(tmp_path, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "intact" in verified.stdout
    with sqlite3.connect(tmp_path / "crm.db") as db:
        # Someone with file access can drop the append-only triggers; the chain still tells.
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'hipaa_audit_log'"
        ).fetchall():
            db.execute(f'DROP TRIGGER "{name}"')
        changed = db.execute(
            "UPDATE hipaa_audit_log SET detail = 'edited' WHERE id = "
            "(SELECT id FROM hipaa_audit_log WHERE resource_type = 'ip_rule' LIMIT 1)"
        ).rowcount
    assert changed == 1
    tampered = crm(tmp_path, "audit", "verify")
    line = _one_line_error(tampered)
    assert "broken at sequence" in line and "edited" in line


def _edit_audit_row(engine: str, target: str, sql: str) -> list[tuple[str, int]]:
    """Run ``sql`` (an UPDATE … RETURNING id, sequence) on the audit log, past its guards."""
    if engine == "sqlite":
        with sqlite3.connect(target) as db:
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master "
                "WHERE type = 'trigger' AND tbl_name = 'hipaa_audit_log'"
            ).fetchall():
                db.execute(f'DROP TRIGGER "{name}"')
            return [(row[0], row[1]) for row in db.execute(sql).fetchall()]

    async def edit() -> list[tuple[str, int]]:
        conn = await asyncpg.connect(target, timeout=10)
        try:
            # A superuser with the append-only triggers switched off.
            await conn.execute("SET session_replication_role = replica")
            return [(row[0], row[1]) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(edit())


@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_audit_verify_reports_an_undecodable_entry_as_broken(tmp_path: Path, engine: str) -> None:
    with contextlib.ExitStack() as stack:
        if engine == "sqlite":
            env = {"CRM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"}
            target = str(tmp_path / "crm.db")
        else:
            database_url, target = stack.enter_context(postgres_database("crm_cli_audit"))
            env = {"CRM_DATABASE_URL": database_url}
        assert crm(tmp_path, "db", "upgrade", **env).returncode == 0
        seeded = crm(tmp_path, "demo", "seed", "--contacts", "5", **env)
        assert seeded.returncode == 0, seeded.stderr
        for cidr in ("10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"):  # three audited changes
            allowed = crm(tmp_path, "ip", "allow", cidr, "--location", "sydney", **env)
            assert allowed.returncode == 0, allowed.stderr
        intact = crm(tmp_path, "audit", "verify", **env)
        assert intact.returncode == 0, intact.stderr
        # The second of sydney's three entries: an edit in the middle of a chain,
        # with a good entry before it and one after.
        edited = _edit_audit_row(
            engine,
            target,
            "UPDATE hipaa_audit_log SET outcome = 'failure' WHERE id = ("
            "SELECT id FROM hipaa_audit_log WHERE tenant_id IS NOT NULL AND sequence = 2 "
            "ORDER BY tenant_id LIMIT 1) RETURNING id, sequence",
        )
        assert len(edited) == 1
        entry_id, sequence = edited[0]
        tampered = crm(tmp_path, "audit", "verify", **env)
        line = _one_line_error(tampered)
        assert tampered.returncode == 1
        assert line.startswith("crm: error: audit chain ")
        assert f"broken at sequence {sequence} (entry {entry_id})" in line
        assert "cannot be decoded (outcome: 'failure'" in line


@pytest.fixture(params=["--access-log", "--no-access-log"])
def served(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, str, subprocess.Popen[str], queue.Queue[str], bool]]:
    """``crm serve --demo`` on a free port.

    Yields (base URL, printed curl line, process, later output lines, access log on).
    """
    port = free_port()
    process, lines = start_crm(
        tmp_path, _env(tmp_path), "serve", "--demo", "--port", str(port), request.param
    )
    output: list[str] = []
    curl = ""
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and not (curl and any("running on" in o for o in output)):
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            output.append(line)
            if "curl " in line and not curl:  # the token's line (a reply's curl follows)
                curl = line.strip()
        assert curl, "".join(output)
        yield f"http://127.0.0.1:{port}", curl, process, lines, request.param == "--access-log"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_crm_serve_demo_answers_the_printed_curl_line(
    served: tuple[str, str, subprocess.Popen[str], queue.Queue[str], bool], tmp_path: Path
) -> None:
    base, curl, _process, lines, access_log = served
    token = re.search(r"Bearer ([\w.-]+)", curl)
    url = re.search(r"'(http://[^']+)'", curl)
    assert token and url
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{base}/health").json() == {"status": "ok"}
        assert client.get(f"{base}/schema").status_code == 200
        contacts = client.get(url.group(1), headers={"Authorization": f"Bearer {token.group(1)}"})
        assert contacts.status_code == 200, contacts.text
        assert len(contacts.json()["items"]) == 5
        refused = client.get(f"{base}/api/contacts")
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
        # X-Forwarded-For from loopback (untrusted by default) changes nothing: uvicorn's
        # own proxy handling is off, the pipeline decides.
        spoofed = client.get(
            url.group(1),
            headers={"Authorization": f"Bearer {token.group(1)}", "X-Forwarded-For": "8.8.8.8"},
        )
        assert spoofed.status_code == 200
    assert (tmp_path / DEMO_KEY_FILE).is_file()
    # uvicorn writes one access line per request unless --no-access-log.
    later: list[str] = []
    deadline = time.monotonic() + (5 if access_log else 2)
    while time.monotonic() < deadline and not any("/health" in line for line in later):
        try:
            later.append(lines.get(timeout=0.2))
        except queue.Empty:
            continue
    assert any('"GET /health' in line for line in later) is access_log, "".join(later)


README = Path(__file__).resolve().parents[3] / "README.md"


@pytest.mark.anyio
async def test_demo_token_hint_is_the_readme_command_and_works(world: World) -> None:
    """``crm serve --demo``'s "More tokens" line runs ``crm`` the way the README does."""
    from crm_http_litestar.demo import announce_demo

    text = await announce_demo(world.runtime, "http://127.0.0.1:8000")
    hint = next(line for line in text.splitlines() if "More tokens:" in line)
    command = shlex.split(hint.split("More tokens:", 1)[1])
    # The README's first command starts the server as `<prefix> serve --demo`: the same prefix.
    serve_line = next(
        line for line in README.read_text().splitlines() if "crm serve --demo" in line
    )
    readme_crm = [*shlex.split(serve_line.split("&&", 1)[1].split("crm serve", 1)[0]), "crm"]
    assert command[: len(readme_crm)] == readme_crm, hint
    assert command[:2] == ["uv", "run"], hint  # a bare `crm` is not on PATH after the README
    # The rest are `crm` arguments that work against the server's store and key.
    args = command[len(readme_crm) :]
    assert args[0] == "token"
    database = world.runtime.settings.database_url
    result = await anyio.run_process(
        [*CRM, *args],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("CRM_")},
            "CRM_DATABASE_URL": database,
            "CRM_SECRET_KEY": SECRET,
        },
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    response = await world.client.get(
        "/auth/me", headers={"Authorization": f"Bearer {result.stdout.decode().strip()}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == world.users["reception"]
