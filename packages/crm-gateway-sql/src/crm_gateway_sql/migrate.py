"""Apply the Alembic migrations shipped in this package, programmatically.

``await gateway.migrate()`` (the ``SupportsMigrations`` port, and ``crm db
upgrade``) lands here.  No ``alembic.ini`` is needed: the script location is
the package's ``migrations`` directory and the connection is handed to
``env.py`` through ``Config.attributes``.

* SQLite: the migration runs on the gateway's own writer connection (so an
  in-memory database is migrated in place) under the writer lock, inside an
  explicit ``BEGIN`` — SQLite DDL is transactional, so a failed upgrade leaves
  nothing half-done.
* PostgreSQL: it runs as the URL's user (who must be able to create tables
  and, the first time, the ``crm_app`` role), not as the application role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from crm_domain.errors import Unavailable
from sqlalchemy.pool import StaticPool

from crm_gateway_sql.errors import DRIVER_ERRORS, from_postgres, from_sqlite

if TYPE_CHECKING:
    from crm_gateway_sql.gateway import SqlGateway

SCRIPT_LOCATION = "crm_gateway_sql:migrations"


def alembic_config(connection: sa.Connection) -> Config:
    """An Alembic ``Config`` for this package's migrations on ``connection``."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def _upgrade_on(connection: sa.Connection, revision: str = "head") -> None:
    command.upgrade(alembic_config(connection), revision)


async def upgrade(gateway: SqlGateway, revision: str = "head") -> None:
    """Bring the gateway's database to ``revision`` (idempotent)."""
    sqlite_db = gateway.sqlite_database
    if sqlite_db is not None:
        async with sqlite_db.write_lock:
            try:
                writer = sqlite_db.writer
                engine = sa.create_engine("sqlite://", creator=lambda: writer, poolclass=StaticPool)

                # pysqlite leaves BEGIN to the driver, which our autocommit
                # connection never sends: emit it so the upgrade is one transaction.
                @sa.event.listens_for(engine, "begin")
                def _begin(conn: Any) -> None:
                    conn.exec_driver_sql("BEGIN")

                with engine.begin() as connection:
                    _upgrade_on(connection, revision)
            except DRIVER_ERRORS as exc:
                if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
                    raise from_sqlite(exc.orig) from exc
                raise Unavailable(f"SQLite migration failed: {exc}") from exc
        return
    postgres_db = gateway.postgres_database
    assert postgres_db is not None
    try:
        async with postgres_db.engine.begin() as async_connection:
            await async_connection.run_sync(_upgrade_on, revision)
    except DRIVER_ERRORS as exc:
        raise from_postgres(exc) from exc


__all__ = ["SCRIPT_LOCATION", "alembic_config", "upgrade"]
