"""No tenant leaks through a pooled PostgreSQL connection.

Units of work run on a plain asyncpg pool (not SQLAlchemy's transaction
handling), binding their location with transaction-local settings.  These tests
use a pool of **one** connection, so every unit of work below runs on the same
server session, and check what the next user of that connection sees with
statements that forget the tenant filter (row-level security is all that stands
between tenants there) and with the settings themselves:

- two locations' units of work interleaved many times over;
- a unit of work killed (its task cancelled) in the middle of its transaction —
  between statements, and while a statement is running on the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import sqlalchemy as sa
from crm_domain.entities import Contact
from crm_domain.errors import ValidationError

from crm_gateway_sql import schema
from crm_gateway_sql.gateway import SqlGateway, create_gateway
from crm_gateway_sql.statements import Statement

from .conftest import asyncpg_dsn, postgres_url, seed_two_locations

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def one_connection(postgres_database: str) -> AsyncIterator[SqlGateway]:
    """A gateway whose pool holds a single connection: every unit of work shares it."""
    gateway = create_gateway(postgres_url(postgres_database), pool_size=1)
    await seed_two_locations(gateway)
    yield gateway
    await gateway.close()


def _contact(tenant: str, contact_id: str) -> Contact:
    return Contact(
        id=contact_id,
        tenant_id=tenant,
        first_name="Pat",
        email=f"{contact_id.lower()}@example.com",
        created_at=NOW,
        updated_at=NOW,
    )


_EVERY_CONTACT = Statement(("test-unfiltered", "contacts"), sa.select(schema.contacts), {})
_BINDING = Statement(
    ("test-binding",),
    sa.select(
        sa.func.current_setting("crm.tenant_id", True).label("tenant"),
        sa.func.current_setting("crm.scope", True).label("scope"),
        sa.func.pg_backend_pid().label("pid"),
        sa.literal_column("now()").label("started"),
    ),
    {},
)
_SLEEP = Statement(("test-sleep",), sa.select(sa.func.pg_sleep(30)), {})


async def _seen_by(gateway: SqlGateway, tenant: str | None) -> tuple[list[str], dict[str, object]]:
    """(ids of every contact visible, the binding and backend) in a unit of work of ``tenant``."""
    async with gateway.unit_of_work(tenant) as uow:
        rows = await uow.session.fetch(_EVERY_CONTACT)
        binding = (await uow.session.fetch(_BINDING))[0]
    return sorted(r["id"] for r in rows), dict(binding)


async def test_two_locations_interleaved_on_one_connection_see_only_their_own(
    one_connection: SqlGateway,
) -> None:
    gateway = one_connection
    expected = {"A": ["A0", "A1", "A2"], "B": ["B0", "B1", "B2"], None: []}
    pids = set()

    async def client(tenant: str | None, rounds: int) -> None:
        for _ in range(rounds):
            seen, binding = await _seen_by(gateway, tenant)
            assert seen == expected[tenant]
            assert binding["tenant"] == (tenant or "")
            assert binding["scope"] == ("tenant" if tenant else "system")
            pids.add(binding["pid"])
            await asyncio.sleep(0)  # let the other locations' units of work take the connection

    await asyncio.gather(client("A", 40), client("B", 40), client(None, 20))
    assert len(pids) == 1, "every unit of work ran on the one pooled connection"


async def _killed_mid_transaction(gateway: SqlGateway, during_statement: bool) -> None:
    """Tenant A writes, then is cancelled inside its transaction (between or in a statement)."""
    inside = asyncio.Event()

    async def request() -> None:
        async with gateway.unit_of_work("A") as uow:
            await uow.contacts.add(_contact("A", "A-uncommitted"))
            inside.set()
            if during_statement:
                await uow.session.fetch(_SLEEP)  # running on the server when killed
            else:
                await asyncio.sleep(30)
            await uow.commit()

    task = asyncio.create_task(request())
    await inside.wait()
    await asyncio.sleep(0.2)  # the statement is now executing on the server
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("during_statement", [False, True], ids=["between", "in-statement"])
async def test_a_request_killed_mid_transaction_leaks_nothing_to_the_next_user(
    one_connection: SqlGateway, during_statement: bool
) -> None:
    gateway = one_connection
    _, before = await _seen_by(gateway, "B")
    await _killed_mid_transaction(gateway, during_statement)
    # The next user of the (only) connection: its own location, nothing of A's,
    # A's uncommitted write rolled back, in a new transaction.
    async with asyncio.timeout(10):  # a cancelled pg_sleep must not hold the connection
        seen, binding = await _seen_by(gateway, "B")
    assert seen == ["B0", "B1", "B2"]
    assert binding["tenant"] == "B"
    assert binding["started"] != before["started"] or binding["pid"] != before["pid"]
    seen_by_a, binding_a = await _seen_by(gateway, "A")
    assert seen_by_a == ["A0", "A1", "A2"], "the killed request's write was rolled back"
    assert binding_a["tenant"] == "A"
    system, binding_system = await _seen_by(gateway, None)
    assert system == []
    assert binding_system["tenant"] == ""


async def test_a_connection_the_server_dropped_is_replaced_before_use(
    one_connection: SqlGateway, postgres_database: str
) -> None:
    gateway = one_connection
    _, binding = await _seen_by(gateway, "A")
    admin = await asyncpg.connect(asyncpg_dsn(postgres_database))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", binding["pid"])
        # pg_terminate_backend only signals: wait until the backend is really gone, so
        # the pooled connection is a dropped one (not one still being torn down).
        for _ in range(100):
            if not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", binding["pid"]
            ):
                break
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    seen, after = await _seen_by(gateway, "A")
    assert seen == ["A0", "A1", "A2"]
    assert after["pid"] != binding["pid"]


async def test_a_location_id_that_could_break_out_of_its_literal_is_refused(
    one_connection: SqlGateway,
) -> None:
    with pytest.raises(ValidationError) as refused:
        async with one_connection.unit_of_work("A\\'; RESET ROLE; --") as uow:
            await uow.session.fetch(_EVERY_CONTACT)
    assert refused.value.field == "tenant_id"
    # A quote alone is just part of an (unknown) id: doubled, it binds nothing.
    seen, binding = await _seen_by(one_connection, "A'; RESET ROLE; --")
    assert seen == []
    assert binding["tenant"] == "A'; RESET ROLE; --"


async def test_the_pool_size_can_come_from_the_database_url(postgres_database: str) -> None:
    gateway = create_gateway(postgres_url(postgres_database) + "?pool_size=3")
    try:
        assert gateway.postgres_database is not None
        assert gateway.postgres_database.pool_size == 3
        async with gateway.unit_of_work("A") as uow:  # the query is not passed to the server
            assert await uow.session.fetch(_EVERY_CONTACT) == []
    finally:
        await gateway.close()
    for bad in ("?pool_size=0", "?pool_size=many", "?command_timeout=soon"):
        with pytest.raises(ValidationError):
            create_gateway(postgres_url(postgres_database) + bad)
