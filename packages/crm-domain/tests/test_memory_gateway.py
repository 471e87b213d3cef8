"""Smoke tests of the in-memory gateway beyond the conformance kit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_domain.entities import AuditEntry, Booking, Contact, Location, Touchpoint
from crm_domain.errors import Conflict, NotFound, PermissionDenied, Unavailable, ValidationError
from crm_domain.memory import InMemoryGateway, InMemoryQueue, RecordingMailer, RecordingSmsSender
from crm_domain.plugins import load_gateway
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.ports.messaging import Mailer, OutgoingEmail, OutgoingSms, SmsSender
from crm_domain.ports.queue import QueueGateway
from crm_domain.queries import ContactQuery

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
pytestmark = pytest.mark.anyio


def _location(lid: str, code: str) -> Location:
    return Location(id=lid, code=code, name=code.title(), timezone="UTC", created_at=NOW)


def _contact(cid: str, tenant: str = "loc-a") -> Contact:
    return Contact(
        id=cid,
        tenant_id=tenant,
        first_name="Ann",
        email=f"{cid}@example.com",
        created_at=NOW,
        updated_at=NOW,
    )


async def _gateway() -> InMemoryGateway:
    gateway = InMemoryGateway()
    async with gateway.unit_of_work() as uow:
        await uow.locations.add(_location("loc-a", "a"))
        await uow.locations.add(_location("loc-b", "b"))
        await uow.commit()
    return gateway


async def test_entry_point_builds_a_gateway_that_satisfies_the_port() -> None:
    gateway = load_gateway("memory://")
    assert isinstance(gateway, InMemoryGateway)
    assert isinstance(gateway, DatabaseGateway)
    assert isinstance(gateway.unit_of_work("x"), UnitOfWork)


async def test_tenant_scoping_and_commit_visibility() -> None:
    gateway = await _gateway()
    async with gateway.unit_of_work("loc-a") as uow:
        await uow.contacts.add(_contact("c1"))
        async with gateway.unit_of_work("loc-a") as other:
            with pytest.raises(NotFound):
                await other.contacts.get("c1")
        await uow.commit()
    async with gateway.unit_of_work("loc-b") as uow:
        with pytest.raises(NotFound):
            await uow.contacts.get("c1")
        assert await uow.contacts.count(ContactQuery()) == 0
        with pytest.raises(PermissionDenied):
            await uow.contacts.add(_contact("c2", tenant="loc-a"))
    async with gateway.unit_of_work() as uow:
        with pytest.raises(PermissionDenied):
            await uow.contacts.get("c1")


async def test_contact_delete_cascades_touchpoints_but_not_bookings() -> None:
    gateway = await _gateway()
    async with gateway.unit_of_work("loc-a") as uow:
        await uow.contacts.add(_contact("c1"))
        await uow.touchpoints.add(
            Touchpoint(
                id="t1",
                tenant_id="loc-a",
                contact_id="c1",
                kind="note",
                occurred_at=NOW,
                created_at=NOW,
            )
        )
        with pytest.raises(ValidationError) as info:
            await uow.touchpoints.add(
                Touchpoint(
                    id="t2",
                    tenant_id="loc-a",
                    contact_id="nope",
                    kind="note",
                    occurred_at=NOW,
                    created_at=NOW,
                )
            )
        assert info.value.field == "contact_id"
        await uow.bookings.add(
            Booking(
                id="b1",
                tenant_id="loc-a",
                contact_id="c1",
                service_type="mri",
                starts_at=NOW,
                ends_at=NOW + timedelta(hours=1),
                created_at=NOW,
                updated_at=NOW,
            )
        )
        with pytest.raises(Conflict):
            await uow.contacts.delete("c1")
        assert (await uow.touchpoints.get("t1")).contact_id == "c1"  # refused delete undone
        await uow.bookings.delete("b1")
        await uow.contacts.delete("c1")
        with pytest.raises(NotFound):
            await uow.touchpoints.get("t1")


async def test_audit_chain_is_assigned() -> None:
    gateway = await _gateway()
    async with gateway.unit_of_work("loc-a") as uow:
        first = await uow.audit.append(
            AuditEntry(
                id="a1", tenant_id="loc-a", action="READ", resource_type="contact", occurred_at=NOW
            )
        )
        second = await uow.audit.append(
            AuditEntry(
                id="a2", tenant_id="loc-a", action="READ", resource_type="contact", occurred_at=NOW
            )
        )
        await uow.commit()
    assert (first.sequence, second.sequence) == (1, 2)
    assert second.prev_hash == first.hash


async def test_closed_gateway_is_unavailable() -> None:
    gateway = await _gateway()
    await gateway.close()
    with pytest.raises(Unavailable):
        gateway.unit_of_work("loc-a")


async def test_recording_adapters_satisfy_their_ports() -> None:
    assert isinstance(InMemoryQueue(), QueueGateway)
    assert isinstance(RecordingMailer(), Mailer)
    assert isinstance(RecordingSmsSender(), SmsSender)
    sender = RecordingSmsSender(provider="clicksend")
    result = await sender.send(OutgoingSms(to="+61412345678", body="Hi"))
    assert (result.provider, result.provider_message_id) == ("clicksend", "sms-1")
    assert [m.body for m in sender.sent] == ["Hi"]


async def test_recording_adapters_keep_messages_and_fail_on_demand() -> None:
    mailer = RecordingMailer()
    mail = OutgoingEmail(to="a@example.com", subject="Hi", html="<p>Hi</p>", text="Hi")
    result = await mailer.send(mail)
    assert result.provider_message_id == "email-1"
    mailer.fail(times=1)
    with pytest.raises(Unavailable):
        await mailer.send(mail)
    await mailer.send(mail)
    assert mailer.sent == [mail, mail]
    queue = InMemoryQueue()
    queue.fail()
    with pytest.raises(Unavailable):
        await queue.publish("q", [])
    assert queue.events("q") == []
