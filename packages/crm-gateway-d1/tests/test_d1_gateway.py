"""D1-specific behaviour of the gateway, against a real local D1 through the REST shim."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest
from crm_domain.audit_chain import verify_chain, verify_stored_chain
from crm_domain.entities import IdempotencyState, OutboxStatus
from crm_domain.errors import Conflict, Unavailable, ValidationError
from crm_domain.plugins import load_gateway
from crm_domain.queries import ContactQuery
from crm_domain.testing import World
from crm_gateway_sql import mapping, schema

from crm_gateway_d1.client import MAX_PARAMS, D1Client, D1Statement
from crm_gateway_d1.gateway import D1Gateway, create_gateway, parse_url
from crm_gateway_d1.local import LocalD1
from crm_gateway_d1.migrations import current_revision, upgrade
from crm_gateway_d1.sql import chunked_insert

from .conftest import drop_statements

pytestmark = [pytest.mark.d1, pytest.mark.anyio]


@pytest.fixture
async def world(d1_gateway: D1Gateway) -> World:
    return await World(d1_gateway).setup()


async def test_a_unit_of_work_is_one_request_at_commit(
    world: World, d1_gateway: D1Gateway, local_d1: LocalD1
) -> None:
    tenant = world.a.id
    async with d1_gateway.unit_of_work(tenant) as uow:
        contact = world.contact(tenant)
        await uow.contacts.add(contact)
        await uow.outbox.add(world.event(tenant))
        await uow.audit.append(world.audit(tenant))
        before = local_d1.requests()
        await uow.commit()
    assert local_d1.requests() - before == 1
    async with d1_gateway.unit_of_work(tenant) as uow:
        assert (await uow.contacts.get(contact.id)).id == contact.id


async def test_a_failing_statement_rolls_back_the_whole_batch(
    world: World, d1_gateway: D1Gateway
) -> None:
    tenant = world.a.id
    taken = world.contact(tenant)
    other = world.contact(tenant)
    event = world.event(tenant)
    async with d1_gateway.unit_of_work(tenant) as uow:
        await uow.contacts.add(other)
        await uow.contacts.add(taken)  # its id is still free when checked here …
        await uow.outbox.add(event)
        await uow.audit.append(world.audit(tenant))
        await world.save(tenant, taken)  # … and taken by another unit of work before commit
        with pytest.raises(Conflict, match=r"UNIQUE constraint failed: contacts\."):
            await uow.commit()
    async with d1_gateway.unit_of_work(tenant) as uow:
        assert await uow.contacts.count(ContactQuery()) == 1  # only the other uow's contact
        assert list(await uow.audit.chain()) == []
    async with d1_gateway.unit_of_work() as uow:
        assert await uow.outbox.list_status(OutboxStatus.PENDING) == []


async def test_reads_inside_a_unit_of_work_see_its_buffered_writes(
    world: World, d1_gateway: D1Gateway
) -> None:
    tenant = world.a.id
    kept, changed, dropped = (world.contact(tenant, status="new") for _ in range(3))
    await world.save(tenant, kept, changed, dropped)
    async with d1_gateway.unit_of_work(tenant) as uow:
        added = world.contact(tenant, status="new")
        await uow.contacts.add(added)
        await uow.contacts.update(attrs.evolve(changed, status="qualified"))
        await uow.contacts.delete(dropped.id)
        page = await uow.contacts.list(ContactQuery(status="new"))
        assert {c.id for c in page.items} == {kept.id, added.id}
        assert await uow.contacts.count(ContactQuery(status="new")) == 2
        assert await uow.contacts.count(ContactQuery()) == 3
        # Nothing reached D1 yet:
        async with d1_gateway.unit_of_work(tenant) as other:
            assert await other.contacts.count(ContactQuery(status="new")) == 3


async def test_add_many_beyond_100_parameters_is_chunked_into_one_batch(
    world: World, d1_gateway: D1Gateway, local_d1: LocalD1
) -> None:
    tenant = world.a.id
    contacts = [world.contact(tenant) for _ in range(14)]
    rows = [mapping.to_row(c) for c in contacts]
    statements = chunked_insert(schema.contacts, rows)
    assert sum(len(s.params) for s in statements) == 14 * len(schema.contacts.columns) > 250
    assert all(len(s.params) <= MAX_PARAMS for s in statements)
    async with d1_gateway.unit_of_work(tenant) as uow:
        await uow.contacts.add_many(contacts)
        before = local_d1.requests()
        await uow.commit()
    assert local_d1.requests() - before == 1
    async with d1_gateway.unit_of_work(tenant) as uow:
        assert await uow.contacts.count(ContactQuery()) == 14


async def test_throttled_commit_is_retried(
    world: World, d1_gateway: D1Gateway, local_d1: LocalD1
) -> None:
    tenant = world.a.id
    contact = world.contact(tenant)
    async with d1_gateway.unit_of_work(tenant) as uow:
        await uow.contacts.add(contact)
        local_d1.fail_next(1, status=429, retry_after=0)
        await uow.commit()
    async with d1_gateway.unit_of_work(tenant) as uow:
        assert (await uow.contacts.get(contact.id)).id == contact.id


async def test_audit_race_between_processes_is_relinked(
    world: World, d1_gateway: D1Gateway, local_d1: LocalD1
) -> None:
    # A second gateway has its own in-process chain locks: like another server process.
    tenant = world.a.id
    other_gateway = D1Gateway(local_d1.client())
    try:
        first = d1_gateway.unit_of_work(tenant)
        second = other_gateway.unit_of_work(tenant)
        async with first, second:
            one = await first.audit.append(world.audit(tenant, detail="first"))
            two = await second.audit.append(world.audit(tenant, detail="second"))
            assert one.sequence == two.sequence == 1  # both read the same head
            await first.commit()
            await second.commit()  # sequence 1 is taken: relinked after it and sent again
    finally:
        await other_gateway.client.close()
    async with d1_gateway.unit_of_work(tenant) as uow:
        chain = list(await uow.audit.chain())
    assert [(e.sequence, e.detail) for e in chain] == [(1, "first"), (2, "second")]
    assert verify_chain(chain, tenant) is None


async def test_migrations_come_from_the_sql_gateways_alembic_revisions(
    d1_gateway: D1Gateway, local_d1: LocalD1
) -> None:
    assert await current_revision(d1_gateway.client) == "0004_suppressions"
    before = local_d1.requests()
    assert await upgrade(d1_gateway.client) == 0  # already at head: nothing sent
    await d1_gateway.migrate()
    assert local_d1.requests() - before == 4  # two revision reads per run, no writes
    names = {
        r["name"] for r in (await d1_gateway.client.query("SELECT name FROM sqlite_master")).rows
    }
    assert {"contacts", "hipaa_audit_log", "hipaa_audit_log_no_update"} <= names


async def test_the_audit_log_is_append_only_in_d1(world: World, d1_gateway: D1Gateway) -> None:
    await world.save(world.a.id, world.audit(world.a.id))
    for sql in ("UPDATE hipaa_audit_log SET detail = 'x'", "DELETE FROM hipaa_audit_log"):
        with pytest.raises(ValidationError, match="append-only"):
            await d1_gateway.client.query(sql)


async def test_an_audit_entry_edited_to_an_undecodable_value_is_the_break(
    world: World, d1_gateway: D1Gateway
) -> None:
    for _ in range(3):
        await world.save(world.a.id, world.audit(world.a.id))
    await d1_gateway.client.query("DROP TRIGGER hipaa_audit_log_no_update")
    await d1_gateway.client.query(
        "UPDATE hipaa_audit_log SET outcome = 'failure' WHERE chain = ? AND sequence = 2",
        [world.a.id],
    )
    async with d1_gateway.unit_of_work(world.a.id) as uow:
        checked, broken = await verify_stored_chain(uow.audit, world.a.id)
    assert broken is not None
    assert (checked, broken.sequence) == (1, 2)
    assert broken.entry_id is not None
    assert "cannot be decoded (outcome: 'failure'" in broken.reason


async def test_d1_url_selects_the_gateway_by_entry_point(local_d1: LocalD1) -> None:
    gateway = load_gateway(
        local_d1.database_url,
        env={"CRM_D1_API_TOKEN": local_d1.token, "CRM_D1_API_BASE": local_d1.api_base},
    )
    try:
        assert isinstance(gateway, D1Gateway)
        assert (await gateway.client.query("SELECT 1 AS one")).rows[0]["one"] == 1
    finally:
        await gateway.close()


def test_d1_urls_are_checked() -> None:
    assert parse_url("d1://acct/db-uuid") == ("acct", "db-uuid")
    for bad in ("d1://acct", "d1:///db", "d1://acct/db/extra", "sqlite:///x.db"):
        with pytest.raises(ValidationError, match="CRM_DATABASE_URL"):
            parse_url(bad)
    with pytest.raises(ValidationError, match="CRM_D1_API_TOKEN"):
        create_gateway("d1://acct/db", env={})


async def test_an_unreachable_d1_is_unavailable() -> None:
    client = D1Client(
        "a", "b", api_token="t", api_base="http://127.0.0.1:9/client/v4", max_attempts=1
    )
    gateway = D1Gateway(client)
    try:
        async with gateway.unit_of_work("x") as uow:
            with pytest.raises(Unavailable):
                await uow.contacts.get("nope")
    finally:
        await gateway.close()


async def test_data_survives_a_restart_of_the_local_d1(
    tmp_path: Path, start_local: Callable[[LocalD1], None]
) -> None:
    local = LocalD1(tmp_path / "d1", token="restart-token")
    start_local(local)
    try:
        gateway = D1Gateway(local.client())
        await gateway.migrate()
        world = await World(gateway).setup()
        contact = world.contact(world.a.id)
        await world.save(world.a.id, contact, world.audit(world.a.id))
        await gateway.close()

        local.restart()

        gateway = D1Gateway(local.client())
        async with gateway.unit_of_work(world.a.id) as uow:
            assert (await uow.contacts.get(contact.id)).first_name == contact.first_name
            chain = list(await uow.audit.chain())
        await gateway.close()
        assert verify_chain(chain, world.a.id) is None and len(chain) == 1
    finally:
        local.stop()


async def test_reports_use_sql_and_include_buffered_writes(
    world: World, d1_gateway: D1Gateway
) -> None:
    from datetime import timedelta

    from crm_domain.ports.analytics import Metric, MetricQuery

    tenant = world.a.id
    await world.save(tenant, world.contact(tenant), world.contact(tenant))
    query = MetricQuery(
        metric=Metric.NEW_CONTACTS,
        start=world.now - timedelta(days=30),
        end=world.now + timedelta(days=30),
        dimensions=("location",),
    )
    async with d1_gateway.unit_of_work(tenant) as uow:
        committed = await uow.analytics.metric(query)  # the SQL gateway's select, on D1
        await uow.contacts.add(world.contact(tenant))
        buffered = await uow.analytics.metric(query)  # overlay: the new contact counts
    assert [(r.keys, r.value) for r in committed] == [({"location": tenant}, 2.0)]
    assert [(r.keys, r.value) for r in buffered] == [({"location": tenant}, 3.0)]


async def test_a_closed_gateway_is_unavailable(local_d1: LocalD1) -> None:
    gateway = D1Gateway(local_d1.client())
    uow = gateway.unit_of_work("x")
    await gateway.close()
    with pytest.raises(Unavailable, match="closed"):
        await uow.contacts.get("nope")
    with pytest.raises(Unavailable, match="closed"):
        gateway.unit_of_work()


async def test_idempotency_compare_and_set_is_rechecked_in_the_batch(
    world: World, d1_gateway: D1Gateway
) -> None:
    """A completion or release read before a take-over (or completion) commits fails at commit.

    D1 cannot branch on a row count inside a batch: the conditional UPDATE/DELETE
    is followed by ``unless_changed``, which must turn "matched no row" into a
    rejected batch.  The interleaving is forced here, not left to the scheduler.
    """
    a = world.a.id
    stale = world.reservation(a, key="cas", created_at=world.at(hours=-30))
    await world.save(a, stale)
    newer = world.reservation(a, key="cas", request_fingerprint="c" * 64)
    async with d1_gateway.unit_of_work(a) as late:
        await late.idempotency.complete(
            stale, status_code=201, response_body='{"late": true}', completed_at=world.now
        )
        async with d1_gateway.unit_of_work(a) as uow:
            await uow.idempotency.reserve(newer, stale_before=world.at(hours=-24))
            await uow.commit()
        with pytest.raises(Conflict):
            await late.commit()
    async with d1_gateway.unit_of_work(a) as late:
        await late.idempotency.release(newer)
        async with d1_gateway.unit_of_work(a) as uow:
            await uow.idempotency.complete(
                newer, status_code=201, response_body='{"id": "1"}', completed_at=world.now
            )
            await uow.commit()
        with pytest.raises(Conflict):
            await late.commit()
    async with d1_gateway.unit_of_work(a) as uow:
        stored = await uow.idempotency.get("cas", "user-1")
    assert stored is not None
    assert (stored.request_fingerprint, stored.response_body) == ("c" * 64, '{"id": "1"}')


async def test_revision_0002_replays_on_d1_with_stored_answers(d1_gateway: D1Gateway) -> None:
    """Upgrading a D1 at 0001 rebuilds ``idempotency_keys`` and keeps old answers as answers."""
    client = d1_gateway.client
    await client.batch(drop_statements())
    await upgrade(client, "0001_baseline")
    created = datetime(2026, 11, 1, 9, 30, 15, 123456, tzinfo=UTC)
    await client.batch(
        [
            D1Statement(
                "INSERT INTO locations (id, name, code, timezone, settings, is_active, created_at)"
                " SELECT 'loc-1', 'Sydney', 'sydney', 'Australia/Sydney', '{}', 1, 0",
            ),
            D1Statement(
                "INSERT INTO idempotency_keys (tenant_id, user_id, key, request_fingerprint,"
                " status_code, response_body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    "loc-1",
                    "user-1",
                    "old-key",
                    "a" * 64,
                    201,
                    '{"id": "c-1"}',
                    (created - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
                ),
            ),
        ]
    )
    assert await upgrade(client) > 0
    assert await current_revision(client) == "0004_suppressions"
    async with d1_gateway.unit_of_work("loc-1") as uow:
        old = await uow.idempotency.get("old-key", "user-1")
    assert old is not None
    assert (old.state, old.status_code, old.response_body) == (
        IdempotencyState.COMPLETED,
        201,
        '{"id": "c-1"}',
    )
    assert old.created_at == old.completed_at == created
