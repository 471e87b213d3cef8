"""The SQL :class:`~crm_domain.ports.gateway.DatabaseGateway` and its entry-point factories.

``create_gateway("sqlite+aiosqlite:///crm.db")`` or
``create_gateway("postgresql+asyncpg://user@host/db")`` — found through the
``crm.gateways`` entry points by URL scheme, so ``crm_domain`` never imports
this package.  Nothing connects until the first unit of work runs a statement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import sqlalchemy as sa
from crm_domain.errors import Unavailable, ValidationError
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.storage import StoredUnitOfWork

from crm_gateway_sql.postgres import DEFAULT_APP_ROLE, PostgresDatabase
from crm_gateway_sql.session import SqlSession
from crm_gateway_sql.sqlite import SqliteDatabase
from crm_gateway_sql.store import SqlTableStore


class SqlUnitOfWork(StoredUnitOfWork):
    """One transaction: the shared repositories over a :class:`SqlTableStore`."""

    def __init__(self, session: SqlSession, tenant_id: str | None) -> None:
        super().__init__(SqlTableStore(session, tenant_id), tenant_id)
        #: The session running this unit of work's statements.
        self.session = session

    # The transaction goes straight to the session: every request opens and
    # ends a unit of work, and each coroutine layer shows in a point read.

    async def commit(self) -> None:
        """Make every change durable, atomically."""
        await self.session.commit()

    async def rollback(self) -> None:
        """Discard every change."""
        await self.session.rollback()

    async def __aenter__(self) -> Self:
        return self


class SqlGateway:
    """The gateway over SQLite (stdlib driver) or PostgreSQL (asyncpg)."""

    def __init__(
        self,
        url: str,
        *,
        sqlite: SqliteDatabase | None = None,
        postgres: PostgresDatabase | None = None,
    ) -> None:
        self.url = url
        self._sqlite = sqlite
        self._postgres = postgres
        self._closed = False

    @property
    def dialect_name(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "sqlite" if self._sqlite is not None else "postgresql"

    def unit_of_work(self, tenant_id: str | None = None) -> SqlUnitOfWork:
        """Open a unit of work bound to ``tenant_id`` (or to no location)."""
        if self._closed:
            raise Unavailable("the SQL gateway is closed")
        if self._sqlite is not None:
            return SqlUnitOfWork(self._sqlite.session(), tenant_id)
        assert self._postgres is not None
        return SqlUnitOfWork(self._postgres.session(tenant_id), tenant_id)

    async def migrate(self) -> None:
        """Apply every pending Alembic migration (idempotent)."""
        from crm_gateway_sql.migrate import upgrade

        await upgrade(self)

    @property
    def sqlite_database(self) -> SqliteDatabase | None:
        """The SQLite database, when this gateway runs on SQLite."""
        return self._sqlite

    @property
    def postgres_database(self) -> PostgresDatabase | None:
        """The PostgreSQL database, when this gateway runs on PostgreSQL."""
        return self._postgres

    async def close(self) -> None:
        """Release connections; the gateway refuses further units of work."""
        self._closed = True
        if self._sqlite is not None:
            self._sqlite.close()
        if self._postgres is not None:
            await self._postgres.close()


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite[+driver]:///path`` URL (``:memory:`` when none)."""
    parsed = sa.make_url(url)
    return parsed.database or ":memory:"


def create_sqlite_gateway(url: str, **options: Any) -> SqlGateway:
    """Entry-point factory for ``sqlite+aiosqlite://`` (and ``sqlite://``) URLs.

    Options: ``busy_timeout`` (seconds, default 5) and ``synchronous``
    (``full``, the default, or ``normal``; also accepted as the URL's
    ``?synchronous=`` query).  ``full`` makes every commit durable against a
    power loss (SQLite fsyncs the WAL at each commit); ``normal`` is faster
    but may lose the last commits on a power loss or OS crash, including audit
    entries of data already served — see :mod:`crm_gateway_sql.sqlite`.  The
    URL keeps the ``sqlite+aiosqlite`` scheme of docs/contract.md, but aiosqlite is
    not used (nor installed): statements run through the stdlib driver.
    """
    if not url.lower().startswith("sqlite"):
        raise ValidationError("CRM_DATABASE_URL", f"not a SQLite URL: {url!r}")
    busy_timeout = float(options.pop("busy_timeout", 5.0))
    query = dict(sa.make_url(url).query)
    synchronous = str(options.pop("synchronous", query.pop("synchronous", "full"))).lower()
    if synchronous not in ("full", "normal"):
        raise ValidationError("synchronous", f"must be 'full' or 'normal', not {synchronous!r}")
    if options or query:
        raise ValidationError("options", f"unknown options {sorted({*options, *query})}")
    return SqlGateway(
        url,
        sqlite=SqliteDatabase(
            sqlite_path(url), busy_timeout=busy_timeout, durable=synchronous == "full"
        ),
    )


def create_postgres_gateway(url: str, **options: Any) -> SqlGateway:
    """Entry-point factory for ``postgresql+asyncpg://`` URLs.

    Options: ``app_role`` (default ``crm_app``; ``None`` to not switch role),
    ``pool_size`` (connections per process, 10), ``connect_timeout`` (5 s),
    ``command_timeout`` (30 s); the last three may also be given in the URL's
    query (``…/crm?pool_size=20``), so ``CRM_DATABASE_URL`` can set them.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    if not url.lower().startswith("postgresql"):
        raise ValidationError("CRM_DATABASE_URL", f"not a PostgreSQL URL: {url!r}")
    parsed = sa.make_url(url)
    query = dict(parsed.query)
    tuning = {
        k: query.pop(k) for k in ("pool_size", "connect_timeout", "command_timeout") if k in query
    }
    parsed = parsed.set(query=query)
    app_role = options.pop("app_role", DEFAULT_APP_ROLE)
    try:
        pool_size = int(options.pop("pool_size", tuning.get("pool_size", 10)))
        connect_timeout = float(options.pop("connect_timeout", tuning.get("connect_timeout", 5.0)))
        command_timeout = float(options.pop("command_timeout", tuning.get("command_timeout", 30.0)))
    except (TypeError, ValueError):
        raise ValidationError(
            "CRM_DATABASE_URL",
            f"pool_size and the timeouts must be numbers: {sorted(tuning.items())}",
        ) from None
    if pool_size < 1:
        raise ValidationError("pool_size", f"must be at least 1, got {pool_size}")
    if options:
        raise ValidationError("options", f"unknown options {sorted(options)}")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    # The engine runs migrations only (units of work use the asyncpg pool of
    # PostgresDatabase): one connection, checked before use.
    engine = create_async_engine(
        parsed,
        pool_size=1,
        max_overflow=1,
        pool_pre_ping=True,
        connect_args={"timeout": connect_timeout, "command_timeout": command_timeout},
    )
    database = PostgresDatabase(
        engine,
        app_role=app_role,
        dsn=parsed.set(drivername="postgresql").render_as_string(hide_password=False),
        pool_size=pool_size,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
    )
    return SqlGateway(url, postgres=database)


def create_gateway(url: str, **options: Any) -> SqlGateway:
    """Build the gateway for a SQLite or PostgreSQL URL."""
    if url.lower().startswith("sqlite"):
        return create_sqlite_gateway(url, **options)
    return create_postgres_gateway(url, **options)


__all__ = [
    "SqlGateway",
    "SqlUnitOfWork",
    "create_gateway",
    "create_postgres_gateway",
    "create_sqlite_gateway",
    "sqlite_path",
]


if TYPE_CHECKING:  # mypy proves the classes satisfy the ports structurally

    def _is_gateway(gateway: SqlGateway) -> DatabaseGateway:
        return gateway

    def _is_uow(uow: SqlUnitOfWork) -> UnitOfWork:
        return uow
