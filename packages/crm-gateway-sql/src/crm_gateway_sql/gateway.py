"""The SQL :class:`~crm_domain.ports.gateway.DatabaseGateway` and its entry-point factories.

``create_gateway("sqlite+aiosqlite:///crm.db")`` or
``create_gateway("postgresql+asyncpg://user@host/db")`` — found through the
``crm.gateways`` entry points by URL scheme, so ``crm_domain`` never imports
this package.  Nothing connects until the first unit of work runs a statement.
"""

from __future__ import annotations

import functools
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import sqlalchemy as sa
from crm_domain.entities import (
    AutomationRule,
    Booking,
    CampaignDelivery,
    Contact,
    EmailCampaign,
    IpRule,
    Location,
    Membership,
    SmsMessage,
    StaffUser,
    Task,
    Touchpoint,
)
from crm_domain.errors import Unavailable, ValidationError
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.queries import (
    AutomationQuery,
    CampaignQuery,
    DeliveryQuery,
    SmsQuery,
    TaskQuery,
    TouchpointQuery,
)

from crm_gateway_sql import repositories as repo
from crm_gateway_sql import schema
from crm_gateway_sql.postgres import DEFAULT_APP_ROLE, PostgresDatabase
from crm_gateway_sql.session import SqlSession
from crm_gateway_sql.sqlite import SqliteDatabase


class SqlUnitOfWork:
    """One transaction over every repository; rolls back unless committed."""

    def __init__(self, session: SqlSession, tenant_id: str | None) -> None:
        self.tenant_id = tenant_id
        self.session = session

    # Repositories are made on first use: a request touches two or three of the
    # nineteen, and building all of them was a measurable share of a point read.

    @functools.cached_property
    def locations(self) -> repo.LocationRepository:
        """Locations (global)."""
        return repo.LocationRepository(self, Location, schema.locations, "location")

    @functools.cached_property
    def users(self) -> repo.UserRepository:
        """Staff users (global)."""
        return repo.UserRepository(self, StaffUser, schema.staff_users, "user")

    @functools.cached_property
    def memberships(self) -> repo.MembershipRepository:
        """Memberships (global)."""
        return repo.MembershipRepository(self, Membership, schema.user_permissions, "membership")

    @functools.cached_property
    def permissions(self) -> repo.PermissionRepository:
        """Role grants (global)."""
        return repo.PermissionRepository(self)

    @functools.cached_property
    def sessions(self) -> repo.SessionRepository:
        """Sessions (global)."""
        return repo.SessionRepository(self)

    @functools.cached_property
    def webhook_receipts(self) -> repo.WebhookReceiptRepository:
        """Processed webhook events (global)."""
        return repo.WebhookReceiptRepository(self)

    @functools.cached_property
    def ip_rules(self) -> repo.IpRuleRepository:
        """The location's IP allowlist."""
        return repo.IpRuleRepository(self, IpRule, schema.ip_whitelist, "IP rule")

    @functools.cached_property
    def contacts(self) -> repo.ContactRepository:
        """The location's contacts."""
        return repo.ContactRepository(self, Contact, schema.contacts, "contact")

    @functools.cached_property
    def touchpoints(self) -> repo.CrudRepository[Touchpoint, TouchpointQuery]:
        """The location's touchpoints."""
        return repo.CrudRepository(self, Touchpoint, schema.touchpoints, "touchpoint")

    @functools.cached_property
    def bookings(self) -> repo.BookingRepository:
        """The location's bookings."""
        return repo.BookingRepository(self, Booking, schema.bookings, "booking")

    @functools.cached_property
    def tasks(self) -> repo.CrudRepository[Task, TaskQuery]:
        """The location's tasks."""
        return repo.CrudRepository(self, Task, schema.tasks, "task")

    @functools.cached_property
    def sms(self) -> repo.CrudRepository[SmsMessage, SmsQuery]:
        """The location's SMS messages."""
        return repo.CrudRepository(self, SmsMessage, schema.sms_messages, "SMS message")

    @functools.cached_property
    def campaigns(self) -> repo.CrudRepository[EmailCampaign, CampaignQuery]:
        """The location's email campaigns."""
        return repo.CrudRepository(self, EmailCampaign, schema.email_campaigns, "campaign")

    @functools.cached_property
    def deliveries(self) -> repo.CrudRepository[CampaignDelivery, DeliveryQuery]:
        """The location's campaign deliveries."""
        return repo.CrudRepository(self, CampaignDelivery, schema.campaign_deliveries, "delivery")

    @functools.cached_property
    def automations(self) -> repo.CrudRepository[AutomationRule, AutomationQuery]:
        """The location's automation rules."""
        return repo.CrudRepository(self, AutomationRule, schema.automation_rules, "automation rule")

    @functools.cached_property
    def idempotency(self) -> repo.IdempotencyRepository:
        """Stored idempotent answers of the location."""
        return repo.IdempotencyRepository(self)

    @functools.cached_property
    def audit(self) -> repo.AuditRepository:
        """The location's audit chain (the system chain when unbound)."""
        return repo.AuditRepository(self)

    @functools.cached_property
    def analytics(self) -> repo.AnalyticsRepository:
        """Report aggregates of the location."""
        return repo.AnalyticsRepository(self)

    @functools.cached_property
    def outbox(self) -> repo.OutboxRepository:
        """The transactional outbox."""
        return repo.OutboxRepository(self)

    async def commit(self) -> None:
        """Make every change durable, atomically."""
        await self.session.commit()

    async def rollback(self) -> None:
        """Discard every change."""
        await self.session.rollback()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()


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
