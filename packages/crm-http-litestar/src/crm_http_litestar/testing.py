"""Test support for the HTTP adapter: a seeded demo world served in process.

Used by this package's tests and usable by anyone embedding the app: it runs
the real app, the real pipeline and a real gateway — nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import secrets
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import attrs
import httpx
from crm_domain.clock import FixedClock, UlidFactory
from crm_domain.errors import Unavailable
from crm_domain.plugins import load_gateway
from crm_domain.ports.gateway import DatabaseGateway, SupportsMigrations
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.testing import AsyncTestClient
from litestar.types import Receive, Scope, Send

from crm_http_litestar.app import create_app
from crm_http_litestar.demo import seed_demo
from crm_http_litestar.plugin import CrmConfig
from crm_http_litestar.runtime import CrmRuntime
from crm_http_litestar.settings import Settings
from crm_http_litestar.shared_state import SharedState

#: A signing key for tests.
SECRET = "test-secret-key-0123456789-abcdefghijklmnop"  # noqa: S105 - a test key, not a secret
#: The demo users by short name.
EMAILS = {
    "owner": "owner@avatar-imaging.example",
    "reception": "reception.sydney@avatar-imaging.example",
    "doctor": "doctor.melbourne@avatar-imaging.example",
    "auditor": "auditor@avatar-imaging.example",
}


class Peer:
    """Stands in for the socket: sets the ASGI ``client`` the way a server would.

    Litestar's test transport always reports ``testclient``; a real server
    reports the TCP peer, which is what the pipeline reads.
    """

    def __init__(self, app: Litestar, address: str = "127.0.0.1") -> None:
        self.app = app
        self.address = address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            scope["client"] = (self.address, 50123)
        await self.app(scope, receive, send)


@attrs.define
class World:
    """A running app over a seeded store, with helpers to act as the demo users."""

    app: Litestar
    peer: Peer
    client: AsyncTestClient[Any]
    gateway: DatabaseGateway
    clock: FixedClock
    runtime: CrmRuntime
    locations: dict[str, str]
    users: dict[str, str]

    async def token(self, who: str, location: str = "sydney", **kw: Any) -> str:
        """A session token for a demo user (by short name) at a location (by code)."""
        issued = await self.runtime.sessions.open(self.users[who], self.locations[location], **kw)
        return issued.token

    async def headers(self, who: str, location: str = "sydney") -> dict[str, str]:
        """Authorization headers for a demo user."""
        return {"Authorization": f"Bearer {await self.token(who, location)}"}

    async def audit(self, location: str | None) -> list[Any]:
        """Every audit entry of a chain (a location code, or ``None`` for the system chain)."""
        tenant = None if location is None else self.locations[location]
        async with self.gateway.unit_of_work(tenant) as uow:
            return list(await uow.audit.chain(0, 100_000))


#: The hidden form field carrying the console's CSRF token.
_CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


@attrs.define
class ConsoleBrowser:
    """A client acting as a browser in the staff console: its own cookie jar and CSRF token."""

    client: httpx.AsyncClient
    csrf: str = ""

    async def get(self, path: str) -> Any:
        """GET a console page; remembers the CSRF token of its forms."""
        response = await self.client.get(path)
        found = _CSRF_FIELD.search(response.text)
        if found:
            self.csrf = found.group(1)
        elif not self.csrf:
            # A page without forms: the token is the cookie's value (double submit).
            self.csrf = self.client.cookies.get("crm_console_csrf") or ""
        return response

    async def post(self, path: str, data: dict[str, str], *, csrf: bool = True) -> Any:
        """POST a form as the page would (with the CSRF token unless ``csrf=False``)."""
        form = {**data, "_csrf_token": self.csrf} if csrf else dict(data)
        return await self.client.post(path, data=form, follow_redirects=False)


@contextlib.asynccontextmanager
async def console_browser(
    world: World, who: str | None, location: str = "sydney"
) -> AsyncIterator[ConsoleBrowser]:
    """A console browser signed in as a demo user (``None``: signed out) with a session cookie.

    The cookie holds a session token opened the way sign-in opens one; the first
    page visited sets the CSRF cookie, as in a browser.
    """
    from crm_http_litestar.pipeline import CONSOLE_COOKIE, CONSOLE_PATH

    # A plain ASGI client: a second Litestar test client would run the app's lifespan
    # again, and its shutdown would close the world's runtime.
    transport = httpx.ASGITransport(app=cast("Any", world.peer))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as client:
        if who is not None:
            token = await world.token(who, location)
            client.cookies.set(CONSOLE_COOKIE, token, domain="testserver.local", path=CONSOLE_PATH)
        browser = ConsoleBrowser(client)
        await browser.get(f"{CONSOLE_PATH}/sign-in")
        yield browser


async def open_world(
    settings: Settings, clock: FixedClock, *, contacts_per_location: int = 12
) -> AsyncIterator[World]:
    """Seed the demo data into ``settings.database_url`` and serve the app in process."""
    ids = UlidFactory()
    gateway = load_gateway(settings.database_url)
    if isinstance(gateway, SupportsMigrations):
        await gateway.migrate()
    await seed_demo(gateway, clock, ids, contacts_per_location=contacts_per_location)
    locations: dict[str, str] = {}
    users: dict[str, str] = {}
    async with gateway.unit_of_work(None) as uow:
        for code in ("sydney", "melbourne"):
            locations[code] = (await uow.locations.get_by_code(code)).id
        for name, email in EMAILS.items():
            users[name] = (await uow.users.get_by_email(email)).id
    app = create_app(CrmConfig(settings=settings, gateway=gateway, clock=clock, ids=ids))
    peer = Peer(app)
    try:
        async with AsyncTestClient(peer) as client:
            yield World(
                app=app,
                peer=peer,
                client=client,
                gateway=gateway,
                clock=clock,
                runtime=app.state["crm"],
                locations=locations,
                users=users,
            )
    finally:
        await gateway.close()


#: The ``crm`` command as a subprocess of this interpreter.
CRM = [sys.executable, "-m", "crm_http_litestar"]


def cli_env(database: Path, **extra: str) -> dict[str, str]:
    """The environment without ``CRM_*``, a SQLite file at ``database``, and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env["CRM_DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    env.update(extra)
    return env


def run_crm(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``crm ARGS`` in ``cwd`` with its SQLite database there (``cwd / "crm.db"``)."""
    return subprocess.run(  # noqa: S603 - this interpreter running our own CLI, no shell
        [*CRM, *args],
        cwd=cwd,
        env=cli_env(cwd / "crm.db", **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_crm(
    cwd: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """Start ``crm ARGS`` (e.g. ``serve --demo --port P``); its output lines arrive on the queue."""
    process = subprocess.Popen(  # noqa: S603 - this interpreter running our own CLI, no shell
        [*CRM, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return process, lines


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Assert ``result`` failed with exactly one line on stderr and no traceback; return it."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


#: The Redis the shared-state tests use (CI starts it; a missing Redis fails them).
REDIS_URL = os.environ.get("CRM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextlib.asynccontextmanager
async def fresh_redis_namespace() -> AsyncIterator[str]:
    """A Redis key namespace of one test alone; every key in it is deleted afterwards.

    Fails (never skips) when Redis is not reachable: the shared state is a real part.
    """
    namespace = f"crm-test-{uuid.uuid4().hex}"
    shared = SharedState.from_url(REDIS_URL, namespace)
    try:
        await shared.ping()
    except Unavailable as exc:
        await shared.aclose()
        raise AssertionError(
            f"these tests need Redis at {REDIS_URL} (CRM_TEST_REDIS_URL): {exc}"
        ) from exc
    try:
        yield namespace
    finally:
        await shared.store.delete_all()
        await shared.aclose()


#: The PostgreSQL server of the tests unless ``CRM_TEST_POSTGRES_URL`` names another.
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def postgres_database(prefix: str = "crm_test") -> Iterator[tuple[str, str]]:
    """A private, empty PostgreSQL database: (CRM_DATABASE_URL, plain DSN as superuser).

    On the server of ``CRM_TEST_POSTGRES_URL``; dropped afterwards.  An unreachable
    server fails the test (never skips it).
    """
    import asyncpg  # crm-gateway-sql's PostgreSQL driver, needed only here
    import sqlalchemy as sa

    url = sa.make_url(os.environ.get("CRM_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin_dsn = url.render_as_string(hide_password=False).replace("+asyncpg", "", 1)
    dsn = url.set(database=name).render_as_string(hide_password=False).replace("+asyncpg", "", 1)

    async def admin(sql: str) -> None:
        try:
            conn = await asyncpg.connect(admin_dsn, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise AssertionError(
                f"PostgreSQL at {url} is unreachable ({exc}); set CRM_TEST_POSTGRES_URL"
            ) from exc
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False), dsn
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


__all__ = [
    "CRM",
    "DEFAULT_POSTGRES_URL",
    "EMAILS",
    "REDIS_URL",
    "SECRET",
    "ConsoleBrowser",
    "Peer",
    "World",
    "cli_env",
    "console_browser",
    "free_port",
    "fresh_redis_namespace",
    "one_line_error",
    "open_world",
    "postgres_database",
    "run_crm",
    "start_crm",
]
