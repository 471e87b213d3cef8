"""The ``crm`` command (docs/contract.md "CLI"): serve, migrate, seed, tokens, admin, audit.

Every command reads the same settings as the server.  User mistakes and
unavailable backends print one line to stderr and exit non-zero — no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import attrs
import typer
from crm_domain.audit_chain import ChainBreak, verify_stored_chain
from crm_domain.bootstrap import Services, bootstrap
from crm_domain.clock import SystemClock, UlidFactory
from crm_domain.context import Context
from crm_domain.entities import IpRule, Location, Role
from crm_domain.errors import CrmError, NotFound, PermissionDenied, ValidationError
from crm_domain.plugins import load_gateway
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.queries import IpRuleQuery, LocationQuery
from crm_domain.services.commands import AddUser, AllowIp, CreateLocation
from crm_domain.values import parse_cidr, parse_email

from crm_http_litestar.runtime import migrate
from crm_http_litestar.settings import Settings

if TYPE_CHECKING:
    from crm_http_litestar.plugin import CrmConfig

T = TypeVar("T")

app = typer.Typer(
    name="crm",
    help="Avatar Imaging CRM: serve the API and administer locations, users and IP rules.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
location_app = typer.Typer(help="Locations.", no_args_is_help=True)
user_app = typer.Typer(help="Staff users and memberships.", no_args_is_help=True)
ip_app = typer.Typer(help="A location's IP allowlist.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(location_app, name="location")
app.add_typer(user_app, name="user")
app.add_typer(ip_app, name="ip")
app.add_typer(audit_app, name="audit")


class CliError(Exception):
    """A failure to report on one line."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"crm: error: {message}", err=True)
    return typer.Exit(1)


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body; turn known failures into one line on stderr."""

    async def main() -> T:
        return await coro_fn()

    try:
        return asyncio.run(main())
    except (CrmError, CliError, OSError) as exc:
        detail = getattr(exc, "detail", None) or str(exc)
        raise _fail(detail) from None


def _settings(*, demo_key: bool = True) -> Settings:
    try:
        settings = Settings.from_env()
    except CrmError as exc:
        raise _fail(exc.detail) from None
    # Commands sign and verify with the server's key: CRM_SECRET_KEY, else the demo key.
    return settings.with_demo_key(create=False) if demo_key else settings


@contextlib.asynccontextmanager
async def _gateway(settings: Settings) -> AsyncIterator[DatabaseGateway]:
    gateway = load_gateway(settings.database_url)
    try:
        yield gateway
    finally:
        await gateway.close()


@contextlib.asynccontextmanager
async def _services(settings: Settings) -> AsyncIterator[Services]:
    """The same use-case services the server runs, on the configured store.

    With ``CRM_REDIS_URL`` an access change made here (a user, an IP rule) is
    published, so running servers drop their access caches within a second.
    """
    async with _gateway(settings) as gateway:
        if not settings.redis_url:
            yield bootstrap(gateway)
            return
        from crm_http_litestar.shared_state import SharedAccessEpoch, SharedState

        shared = SharedState.from_url(settings.redis_url, settings.redis_namespace)
        try:
            clock = SystemClock()
            # The CLI keeps no access cache worth dropping: only publish.
            epoch = SharedAccessEpoch(shared, clock, lambda: None)
            yield bootstrap(gateway, clock=clock, on_access_change=epoch.publish)
        finally:
            await shared.aclose()


def _operator(tenant_id: str, command: str) -> Context:
    """The operator at the CLI: a system context, audited as ``CLI`` with the command."""
    return Context.system(
        tenant_id,
        request_id=UlidFactory().new_id(),
        request_method="CLI",
        request_path=f"crm {command}",
    )


async def _location(services: Services, code: str) -> Location:
    try:
        return await services.access.find_location(code)
    except NotFound:
        raise CliError(f"no location with code {code!r}") from None


# --------------------------------------------------------------------------- serve


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo", help="Migrate, seed the demo data and print a token first.")
    ] = False,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log each request line (the audit log records protected access either way).",
        ),
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port (uvicorn workers); with more than one, "
            "set CRM_REDIS_URL so rate limits, logouts and access changes are shared.",
        ),
    ] = 1,
) -> None:
    """Serve the API (uvicorn with uvloop and httptools; one process unless --workers)."""
    import uvicorn

    from crm_http_litestar.app import create_app
    from crm_http_litestar.plugin import CrmConfig

    try:
        settings = Settings.from_env(demo=demo)
        settings.require_secret()
    except CrmError as exc:
        raise _fail(exc.detail) from None
    if settings.redis_url:
        # Say it in one line now, rather than as uvicorn's startup traceback.
        _run(lambda: _ping_shared_state(settings))
    base = f"http://{_url_host(host)}:{port}"
    config = CrmConfig(settings=settings, migrate_on_startup=demo, announce_base_url=base)
    try:
        application = create_app(config)
    except CrmError as exc:
        raise _fail(exc.detail) from None
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        # The pipeline decides which proxies to believe (CRM_TRUSTED_PROXIES);
        # uvicorn's own proxy handling would rewrite the client address first.
        "proxy_headers": False,
        "server_header": False,
        "log_level": "info",
        "access_log": access_log,
    }
    if workers == 1:
        uvicorn.run(application, workers=1, **options)
        return
    # Several processes: each builds its app from the environment (uvicorn spawns
    # them from an import string).  The demo is migrated, seeded and announced
    # once, here; the processes get its key through the environment.
    if demo:
        _run(lambda: _prepare_demo(config))
    assert settings.secret_key is not None  # require_secret() above
    os.environ["CRM_SECRET_KEY"] = settings.secret_key
    uvicorn.run(
        "crm_http_litestar.app:create_app_from_env", factory=True, workers=workers, **options
    )


async def _ping_shared_state(settings: Settings) -> None:
    from crm_http_litestar.shared_state import SharedState

    shared = SharedState.from_url(settings.redis_url, settings.redis_namespace)
    try:
        await shared.ping()
    finally:
        await shared.aclose()


async def _prepare_demo(config: CrmConfig) -> None:
    from crm_http_litestar.demo import announce_demo
    from crm_http_litestar.runtime import open_runtime

    async with open_runtime(config.settings, migrate_first=True) as runtime:
        await announce_demo(runtime, config.announce_base_url)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - only formatting a URL to print
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


# --------------------------------------------------------------------------- db, demo


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply schema migrations to CRM_DATABASE_URL."""
    settings = _settings()

    async def body() -> bool:
        async with _gateway(settings) as gateway:
            return await migrate(gateway)

    migrated = _run(body)
    typer.echo("schema is up to date" if migrated else "this store has no migrations")


@demo_app.command("seed")
def demo_seed(
    contacts: Annotated[int, typer.Option(help="Contacts per location.")] = 300,
) -> None:
    """Seed the demo data (idempotent)."""
    from crm_http_litestar.demo import seed_demo

    settings = _settings()

    async def body() -> str:
        async with _gateway(settings) as gateway:
            await migrate(gateway)
            report = await seed_demo(
                gateway, SystemClock(), UlidFactory(), contacts_per_location=contacts
            )
        made = ", ".join(f"{v} {k}" for k, v in attrs.asdict(report).items() if v)
        return f"demo data seeded: {made}" if made else "demo data already present"

    typer.echo(_run(body))


# --------------------------------------------------------------------------- token


@app.command()
def token(
    email: Annotated[str, typer.Argument(help="Email of an active staff user.")],
    location: Annotated[str, typer.Option(help="Location code the token is for.")],
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds (CRM_TOKEN_TTL).")] = None,
) -> None:
    """Print a session token for a user with an active membership at the location."""
    from crm_http_litestar.sessions import SessionManager
    from crm_http_litestar.tokens import TokenCodec

    settings = _settings()
    secret = _secret(settings)
    if ttl is not None and ttl < 1:
        raise _fail("--ttl must be at least 1 second")

    async def body() -> str:
        async with _services(settings) as services:
            gateway = services.gateway
            async with gateway.unit_of_work(None) as uow:
                try:
                    user = await uow.users.get_by_email(parse_email(email))
                except NotFound:
                    raise CliError(f"no user {email!r}") from None
            place = await _location(services, location)
            try:
                # Active user, active location, active membership there.
                await services.access.resolve_access(user.id, place.id)
            except PermissionDenied:
                raise CliError(
                    f"{email} has no active membership at {location} (or is deactivated)"
                ) from None
            manager = SessionManager(
                gateway,
                TokenCodec(
                    secret_key=secret,
                    issuer=settings.token_issuer,
                    audience=settings.token_audience,
                ),
                SystemClock(),
                UlidFactory(),
                token_ttl=timedelta(seconds=ttl or settings.token_ttl),
                idle_timeout=timedelta(seconds=settings.session_idle_timeout),
            )
            issued = await manager.open(user.id, place.id)
            return issued.token

    typer.echo(_run(body))


def _secret(settings: Settings) -> str:
    try:
        return settings.require_secret()
    except CrmError as exc:
        raise _fail(exc.detail) from None


# --------------------------------------------------------------------------- locations, users


@location_app.command("add")
def location_add(
    code: Annotated[str, typer.Argument(help="Short code, e.g. brisbane (also the subdomain).")],
    name: Annotated[str, typer.Option(help="Display name.")],
    timezone: Annotated[str, typer.Option(help="IANA timezone, e.g. Australia/Brisbane.")],
) -> None:
    """Create a location (no IP rule yet: unreachable over HTTP until one is added)."""
    settings = _settings()

    async def body() -> Location:
        async with _services(settings) as services:
            # No location is the operator's yet: the new one's chain starts with its creation.
            ctx = _operator("", "location add")
            return await services.access.create_location(
                ctx, CreateLocation(code=code, name=name, timezone=timezone)
            )

    place = _run(body)
    typer.echo(f"location {place.code} created (id {place.id}); add an IP rule with `crm ip allow`")


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="The user's (Google) email.")],
    location: Annotated[str, typer.Option(help="Location code.")],
    role: Annotated[str, typer.Option(help="admin, doctor, receptionist or readonly.")],
    name: Annotated[str, typer.Option(help="Display name (new users).")] = "",
) -> None:
    """Create a user, or give an existing one a (new) role at the location."""
    settings = _settings()
    try:
        chosen = Role(role)
    except ValueError:
        raise _fail(f"role must be one of {', '.join(r.value for r in Role)}") from None

    async def body() -> str:
        async with _services(settings) as services:
            place = await _location(services, location)
            member = await services.access.add_user(
                _operator(place.id, "user add"),
                AddUser(email=email, role=chosen, name=name),
            )
            return f"user {member.user.email} is {member.membership.role.value} at {location}"

    typer.echo(_run(body))


# --------------------------------------------------------------------------- IP rules


@ip_app.command("allow")
def ip_allow(
    cidr: Annotated[str, typer.Argument(help="IPv4 or IPv6 network, e.g. 203.0.113.0/24.")],
    location: Annotated[str, typer.Option(help="Location code.")],
    description: Annotated[str | None, typer.Option(help="What this network is.")] = None,
) -> None:
    """Allow a network to reach a location."""
    settings = _settings()

    async def body() -> IpRule:
        async with _services(settings) as services:
            place = await _location(services, location)
            return await services.access.allow_ip(
                _operator(place.id, "ip allow"), AllowIp(cidr=cidr, description=description)
            )

    rule = _run(body)
    typer.echo(f"allowed {rule.cidr} at {location}")


async def _rules(services: Services, ctx: Context) -> list[IpRule]:
    rules: list[IpRule] = []
    query = IpRuleQuery(limit=200)
    while True:
        page = await services.access.list_ip_rules(ctx, query)
        rules.extend(page.items)
        if page.next_cursor is None:
            return rules
        query = attrs.evolve(query, cursor=page.next_cursor)


@ip_app.command("list")
def ip_list(location: Annotated[str, typer.Option(help="Location code.")]) -> None:
    """List a location's IP rules."""
    settings = _settings()

    async def body() -> list[IpRule]:
        async with _services(settings) as services:
            place = await _location(services, location)
            return await _rules(services, _operator(place.id, "ip list"))

    rules = _run(body)
    if not rules:
        typer.echo(f"no IP rules at {location}: nobody can reach it over HTTP")
    for rule in sorted(rules, key=lambda r: r.cidr):
        state = "active" if rule.is_active else "inactive"
        typer.echo(f"{rule.cidr}\t{state}\t{rule.description or ''}")


@ip_app.command("remove")
def ip_remove(
    cidr: Annotated[str, typer.Argument(help="The network to remove.")],
    location: Annotated[str, typer.Option(help="Location code.")],
) -> None:
    """Remove a network from a location's allowlist."""
    settings = _settings()

    async def body() -> str:
        async with _services(settings) as services:
            place = await _location(services, location)
            try:
                await services.access.remove_ip(_operator(place.id, "ip remove"), cidr)
            except NotFound:
                raise CliError(
                    f"{parse_cidr(cidr)} is not in the allowlist of {location}"
                ) from None
        return parse_cidr(cidr)

    typer.echo(f"removed {_run(body)} from {location}")


# --------------------------------------------------------------------------- audit


async def verify_all_chains(gateway: DatabaseGateway) -> tuple[int, ChainBreak | None]:
    """Verify the system chain and every location's chain; return (entries, first break)."""
    chains: list[str | None] = [None]
    cursor: str | None = None
    async with gateway.unit_of_work(None) as uow:
        while True:
            page = await uow.locations.list(LocationQuery(limit=200, cursor=cursor))
            chains.extend(location.id for location in page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    total = 0
    for tenant_id in chains:
        async with gateway.unit_of_work(tenant_id) as uow:
            # An entry edited to an undecodable value is a break like a hash
            # mismatch (verify_stored_chain reports it), never a traceback.
            checked, broken = await verify_stored_chain(uow.audit, tenant_id)
        total += checked
        if broken is not None:
            return total, broken
    return total, None


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chains; exit 1 with the first broken entry if tampered."""
    settings = _settings()

    async def body() -> tuple[int, ChainBreak | None]:
        async with _gateway(settings) as gateway:
            return await verify_all_chains(gateway)

    total, broken = _run(body)
    if broken is not None:
        chain = broken.tenant_id or "system"
        raise _fail(
            f"audit chain {chain} broken at sequence {broken.sequence} "
            f"(entry {broken.entry_id}): {broken.reason}"
        )
    typer.echo(f"audit log intact: {total} entries verified")


# --------------------------------------------------------------------------- worker


@app.command()
def worker(
    log_level: Annotated[
        str,
        typer.Option(
            help="debug logs every delivered event (event id, name, attempt, process id)."
        ),
    ] = "info",
) -> None:
    """Run the queue consumer (automations, campaign sends) alone; start it N times to scale."""
    import logging

    from crm_http_litestar.runtime import open_runtime
    from crm_http_litestar.worker import InProcessWorker

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise _fail(f"--log-level must be debug, info, warning or error, not {log_level!r}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("crm_http_litestar").setLevel(level)
    logging.getLogger("crm_gateway_sql").setLevel(level)
    settings = _settings()

    async def body() -> None:
        async with open_runtime(settings) as runtime:
            consumer = InProcessWorker(runtime)
            # SIGINT/SIGTERM ask the relay to stop after the message in hand, so the
            # runtime closes with no query cancelled halfway (a cancelled query could
            # keep a pooled connection busy and the close waiting past a service
            # manager's patience).
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, consumer.request_stop)
            typer.echo("crm worker: consuming the outbox (Ctrl-C to stop)", err=True)
            await consumer.run()
        typer.echo("crm worker: stopped", err=True)

    with contextlib.suppress(KeyboardInterrupt):
        _run(body)


# The data lifecycle commands (import, db backup/restore) live in their own module,
# which registers them on ``app`` with the helpers above.
from crm_http_litestar import cli_data  # noqa: E402


def main() -> None:
    """Entry point of the ``crm`` script."""
    try:
        app()
    except ValidationError as exc:  # settings read before a command's own handling
        typer.echo(f"crm: error: {exc.detail}", err=True)
        sys.exit(1)


__all__ = ["app", "cli_data", "main", "verify_all_chains"]
