"""The location's suppression list: the service, and every send that must honour it.

End state is asserted on the in-memory gateway (the kit proves the same table on
every store): what is stored, the outbox events and the audit chain.
"""

from __future__ import annotations

from typing import Any

import pytest

from crm_domain.context import Context
from crm_domain.entities import (
    DeliveryStatus,
    Role,
    SmsStatus,
    SuppressionChannel,
    SuppressionReason,
)
from crm_domain.errors import Conflict, NotFound, PermissionDenied, ValidationError
from crm_domain.memory import RecordingMailer, RecordingSmsSender
from crm_domain.queries import DeliveryQuery, SmsQuery, SuppressionQuery
from crm_domain.services import OPT_OUT_CONFIRMATION, AddSuppression, CreateContact
from crm_domain.services.campaigns import SUPPRESSED, CampaignDraft

pytestmark = pytest.mark.anyio

CLINIC = "+61292000000"
PATIENT = "+61412345678"


def _service(world: Any) -> Any:
    assert world.services.suppressions is not None
    return world.services.suppressions


async def _stored(world: Any, location: Any = None) -> list[Any]:
    async with world.gateway.unit_of_work((location or world.sydney).id) as uow:
        return list((await uow.suppressions.list(SuppressionQuery(limit=200))).items)


async def test_add_normalises_the_address_and_commits_with_event_and_audit(world: Any) -> None:
    service = _service(world)
    sms = await service.add(world.ctx(), AddSuppression(channel="sms", address="0412 345 678"))
    email = await service.add(
        world.ctx(Role.RECEPTIONIST),
        AddSuppression(channel="email", address="  Ann.Lee@Example.ORG ", reason="bounce"),
    )
    assert (sms.address, sms.reason, sms.created_by) == (
        PATIENT,
        SuppressionReason.MANUAL,
        "user-admin",
    )
    assert (email.channel, email.address, email.reason) == (
        SuppressionChannel.EMAIL,
        "ann.lee@example.org",
        SuppressionReason.BOUNCE,
    )
    events = await world.events("SuppressionAdded")
    assert [e.aggregate_id for e in events] == [sms.id, email.id]
    # Events carry the id, channel and reason: never the address (PHI).
    assert events[1].payload["channel"] == "email"
    assert all(PATIENT not in str(e.payload) and "ann.lee" not in str(e.payload) for e in events)
    created = [e for e in await world.audit() if e.resource_type == "suppression"]
    assert [(e.action, e.resource_id, e.outcome.value) for e in created] == [
        ("CREATE", sms.id, "success"),
        ("CREATE", email.id, "success"),
    ]


async def test_a_duplicate_or_bad_input_is_refused_and_nothing_is_stored(world: Any) -> None:
    service = _service(world)
    first = await service.add(world.ctx(), AddSuppression(channel="sms", address=PATIENT))
    with pytest.raises(Conflict, match="already on the location's suppression list"):
        # The same number typed another way is the same suppression.
        await service.add(world.ctx(), AddSuppression(channel="sms", address="+61 412 345 678"))
    bad = [
        ("channel", AddSuppression(channel="fax", address=PATIENT)),
        ("address", AddSuppression(channel="sms", address="not a number")),
        ("address", AddSuppression(channel="email", address="no-at-sign")),
        ("address", AddSuppression(channel="sms", address="ann@example.org")),
        ("reason", AddSuppression(channel="sms", address="0412 000 111", reason="annoyed")),
        ("note", AddSuppression(channel="sms", address="0412 000 111", note="x" * 501)),
    ]
    for field, command in bad:
        with pytest.raises(ValidationError) as info:
            await service.add(world.ctx(), command)
        assert info.value.field == field, command
    assert [s.id for s in await _stored(world)] == [first.id]
    assert len(await world.events("SuppressionAdded")) == 1


async def test_list_filters_and_pages_and_stays_in_its_location(world: Any) -> None:
    service = _service(world)
    numbers = ["0412 000 001", "0412 000 002", "0412 000 003"]
    for number in numbers:
        await service.add(world.ctx(), AddSuppression(channel="sms", address=number))
    await service.add(world.ctx(), AddSuppression(channel="email", address="a@example.org"))
    other = await service.add(
        world.ctx(location=world.melbourne), AddSuppression(channel="sms", address=numbers[0])
    )
    ctx = world.ctx(Role.READONLY)
    sms_only = await service.list(ctx, SuppressionQuery(channel="sms", limit=2))
    assert len(sms_only.items) == 2 and sms_only.next_cursor is not None
    rest = await service.list(ctx, SuppressionQuery(channel="sms", cursor=sms_only.next_cursor))
    assert {s.address for s in [*sms_only.items, *rest.items]} == {
        "+61412000001",
        "+61412000002",
        "+61412000003",
    }
    # The address filter takes the number as typed.
    found = await service.list(ctx, SuppressionQuery(address="0412 000 002"))
    assert [s.address for s in found.items] == ["+61412000002"]
    found = await service.list(ctx, SuppressionQuery(address="A@Example.org"))
    assert [s.channel for s in found.items] == [SuppressionChannel.EMAIL]
    with pytest.raises(ValidationError) as info:
        await service.list(ctx, SuppressionQuery(address="nonsense"))
    assert info.value.field == "address"
    # Melbourne's entry is invisible from Sydney, by list and by id.
    assert other.id not in {s.id for s in (await service.list(ctx)).items}
    with pytest.raises(NotFound):
        await service.get(ctx, other.id)
    with pytest.raises(NotFound):
        await service.remove(world.ctx(), other.id)
    assert [s.id for s in await _stored(world, world.melbourne)] == [other.id]


async def test_remove_is_evented_and_audited_and_frees_the_address(world: Any) -> None:
    service = _service(world)
    entry = await service.add(world.ctx(), AddSuppression(channel="sms", address=PATIENT))
    await service.remove(world.ctx(), entry.id)
    assert await _stored(world) == []
    [removed] = await world.events("SuppressionRemoved")
    assert removed.aggregate_id == entry.id and removed.payload["channel"] == "sms"
    deletes = [e for e in await world.audit() if e.action == "DELETE"]
    assert [(e.resource_type, e.resource_id) for e in deletes] == [("suppression", entry.id)]
    again = await service.add(world.ctx(), AddSuppression(channel="sms", address=PATIENT))
    assert again.id != entry.id


async def test_permissions_follow_the_matrix(world: Any) -> None:
    service = _service(world)
    entry = await service.add(
        world.ctx(Role.RECEPTIONIST), AddSuppression(channel="sms", address=PATIENT)
    )
    with pytest.raises(PermissionDenied):
        await service.remove(world.ctx(Role.RECEPTIONIST), entry.id)
    with pytest.raises(PermissionDenied):
        await service.add(
            world.ctx(Role.READONLY), AddSuppression(channel="sms", address="0412 000 009")
        )
    assert (await service.get(world.ctx(Role.READONLY), entry.id)).id == entry.id
    with pytest.raises(PermissionDenied):
        await service.list(world.ctx(Role.DOCTOR))
    assert [s.id for s in await _stored(world)] == [entry.id]
    denied = [e for e in await world.audit() if e.outcome.value == "denied"]
    assert len(denied) == 3


# -- SMS ------------------------------------------------------------------------


async def _texting_world(world: Any) -> RecordingSmsSender:
    sender = RecordingSmsSender("clicksend")
    world.wire_sms(sender, {"sydney": CLINIC})
    return sender


async def _messages(world: Any) -> list[Any]:
    page = await world.services.sms.list(world.ctx(), SmsQuery(limit=100))
    return list(page.items)


async def test_a_suppressed_number_is_not_texted_even_a_transactional_message(
    world: Any,
) -> None:
    await _texting_world(world)
    contact = await world.services.contacts.create(
        world.ctx(), CreateContact(first_name="Ada", phone="0412 345 678", sms_opt_in=True)
    )
    await _service(world).add(world.ctx(), AddSuppression(channel="sms", address=PATIENT))
    for kind in ("transactional", "marketing"):
        with pytest.raises(Conflict, match="on the location's suppression list"):
            await world.services.sms.send(
                world.ctx(), contact.id, "Your scan", kind=kind, from_number=CLINIC
            )
    assert await _messages(world) == []
    assert await world.events("SmsQueued") == []


async def test_a_number_suppressed_after_queueing_fails_the_message_unsent(world: Any) -> None:
    sender = await _texting_world(world)
    contact = await world.services.contacts.create(
        world.ctx(), CreateContact(first_name="Ada", phone=PATIENT, sms_opt_in=True)
    )
    queued = await world.services.sms.send(
        world.ctx(), contact.id, "Your scan", kind="transactional", from_number=CLINIC
    )
    await _service(world).add(world.ctx(), AddSuppression(channel="sms", address=PATIENT))
    await world.relay()
    assert sender.sent == []
    [failed] = await _messages(world)
    assert failed.id == queued.id and failed.status is SmsStatus.FAILED
    assert failed.error is not None and "suppression list" in failed.error


async def test_stop_from_an_unknown_number_suppresses_it_for_a_later_contact(
    world: Any,
) -> None:
    sender = await _texting_world(world)
    system = Context.system(world.sydney.id)
    await world.services.sms.receive_inbound(system, PATIENT, CLINIC, "STOP", "clicksend", "in-1")
    [entry] = await _stored(world)
    assert (entry.channel, entry.address, entry.reason, entry.created_by) == (
        SuppressionChannel.SMS,
        PATIENT,
        SuppressionReason.OPT_OUT,
        "system",
    )
    # The same number later becomes a contact who ticks "SMS ok": still not texted.
    contact = await world.services.contacts.create(
        world.ctx(), CreateContact(first_name="Ada", phone=PATIENT, sms_opt_in=True)
    )
    with pytest.raises(Conflict, match="suppression list"):
        await world.services.sms.send(
            world.ctx(), contact.id, "Hi", kind="transactional", from_number=CLINIC
        )
    # Now the STOP is the contact's: consent cleared and confirmed once; the list
    # already holds the number.
    await world.services.sms.receive_inbound(system, PATIENT, CLINIC, "STOP", "clicksend", "in-2")
    assert len(await _stored(world)) == 1
    assert len(await world.events("SuppressionAdded")) == 1
    await world.relay()
    assert [(s.to, s.body) for s in sender.sent] == [(PATIENT, OPT_OUT_CONFIRMATION)]


async def test_a_contacts_stop_suppresses_the_number_and_still_confirms_once(
    world: Any,
) -> None:
    sender = await _texting_world(world)
    contact = await world.services.contacts.create(
        world.ctx(), CreateContact(first_name="Ada", phone=PATIENT, sms_opt_in=True)
    )
    system = Context.system(world.sydney.id)
    await world.services.sms.receive_inbound(system, PATIENT, CLINIC, "STOP", "clicksend", "in-1")
    [entry] = await _stored(world)
    assert (entry.address, entry.reason) == (PATIENT, SuppressionReason.OPT_OUT)
    await world.relay()
    # The opt-out's own confirmation is the one message a suppressed number gets.
    assert [(s.to, s.body) for s in sender.sent] == [(PATIENT, OPT_OUT_CONFIRMATION)]
    # Deleting the contact keeps the number suppressed.
    await world.services.contacts.delete(world.ctx(), contact.id)
    assert [s.id for s in await _stored(world)] == [entry.id]


# -- campaigns ----------------------------------------------------------------------


async def test_suppressed_emails_leave_the_audience_and_are_skipped_at_send_time(
    world: Any,
) -> None:
    from crm_domain.bootstrap import bootstrap

    mailer = RecordingMailer("smtp")
    world.services = bootstrap(world.gateway, clock=world.clock, ids=world.ids, mailer=mailer)
    campaigns = world.services.campaigns
    assert campaigns is not None
    ids = {}
    for name in ("Ada", "Bob", "Cy"):
        created = await world.services.contacts.create(
            world.ctx(),
            CreateContact(first_name=name, email=f"{name.lower()}@example.org", email_opt_in=True),
        )
        ids[name] = created.id
    await _service(world).add(
        world.ctx(), AddSuppression(channel="email", address="ADA@example.org", reason="bounce")
    )
    draft = await campaigns.create(
        world.ctx(), CampaignDraft(name="Spring", subject="Hi", body_html="<p>Book now</p>")
    )
    preview = await campaigns.preview(world.ctx(), draft.id)
    assert preview.count == 2
    assert {c.id for c in preview.sample} == {ids["Bob"], ids["Cy"]}
    await campaigns.send(world.ctx(), draft.id)
    # Bob complains after the start: his delivery is skipped and says why.
    await _service(world).add(
        world.ctx(), AddSuppression(channel="email", address="bob@example.org", reason="complaint")
    )
    await world.relay()
    assert [m.to for m in mailer.sent] == ["cy@example.org"]
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        page = await uow.deliveries.list(DeliveryQuery(campaign_id=draft.id))
    by_contact = {d.contact_id: d for d in page.items}
    assert ids["Ada"] not in by_contact  # never in the audience
    assert (by_contact[ids["Bob"]].status, by_contact[ids["Bob"]].error) == (
        DeliveryStatus.FAILED,
        SUPPRESSED,
    )
    assert by_contact[ids["Cy"]].status is DeliveryStatus.SENT


async def test_a_suppressed_number_gets_no_booking_reminder(world: Any) -> None:
    from datetime import timedelta

    from crm_domain.services import CreateBooking

    sender = await _texting_world(world)
    contact = await world.services.contacts.create(
        world.ctx(), CreateContact(first_name="Ada", phone=PATIENT, sms_opt_in=True)
    )
    starts = world.clock.now() + timedelta(days=2)
    await world.services.bookings.create(
        world.ctx(),
        CreateBooking(
            contact_id=contact.id,
            service_type="mri",
            starts_at=starts,
            ends_at=starts + timedelta(minutes=45),
        ),
    )
    await _service(world).add(world.ctx(), AddSuppression(channel="sms", address=PATIENT))
    world.clock.set(starts - timedelta(hours=1))
    handled = await world.relay()
    assert handled.count("BookingReminderDue") == 2
    # Consent is still given: only the list stops the reminders.
    assert sender.sent == []
    assert await _messages(world) == []
    audit = await world.audit()
    skipped = [e.detail for e in audit if e.detail and e.detail.startswith("reminder skipped")]
    assert len(skipped) == 2 and all("suppression list" in d for d in skipped)


async def test_an_unsubscribe_link_suppresses_the_email(world: Any) -> None:
    from crm_domain.bootstrap import bootstrap

    mailer = RecordingMailer("smtp")
    world.services = bootstrap(world.gateway, clock=world.clock, ids=world.ids, mailer=mailer)
    campaigns = world.services.campaigns
    assert campaigns is not None
    await world.services.contacts.create(
        world.ctx(),
        CreateContact(first_name="Ada", email="ada@example.org", email_opt_in=True),
    )
    draft = await campaigns.create(
        world.ctx(), CampaignDraft(name="Spring", subject="Hi", body_html="<p>Book now</p>")
    )
    await campaigns.send(world.ctx(), draft.id)
    await world.relay()
    [message] = mailer.sent
    token = message.headers["List-Unsubscribe"].strip("<>").rsplit("/", 1)[-1]
    await campaigns.unsubscribe(Context.system(world.sydney.id), token)
    [entry] = await _stored(world)
    assert (entry.channel, entry.address, entry.reason, entry.created_by) == (
        SuppressionChannel.EMAIL,
        "ada@example.org",
        SuppressionReason.OPT_OUT,
        "system",
    )
    # Clicking again changes nothing more.
    await campaigns.unsubscribe(Context.system(world.sydney.id), token)
    assert len(await world.events("SuppressionAdded")) == 1


def test_the_entity_holds_only_normalised_addresses() -> None:
    from datetime import UTC, datetime

    from crm_domain.entities import Suppression

    fields: dict[str, Any] = {
        "id": "s1",
        "tenant_id": "loc",
        "channel": "sms",
        "reason": "manual",
        "created_at": datetime(2026, 3, 2, tzinfo=UTC),
        "created_by": "system",
    }
    for channel, address in [("sms", "0412 345 678"), ("email", "Ann@example.org")]:
        with pytest.raises(ValidationError) as info:
            Suppression(**{**fields, "channel": channel, "address": address})
        assert info.value.field == "address"
    made = Suppression.create(**{**fields, "channel": "email", "address": " Ann@Example.org "})
    assert made.address == "ann@example.org"
