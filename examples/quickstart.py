"""Quickstart: the CRM's use cases on the in-memory gateway, no server, no database.

Creates a location, a staff user, a contact and a booking through the services
(each call checked against RBAC, audited and emitting its domain events), then
prints them and verifies the audit chain.

    uv run python examples/quickstart.py
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
from crm_domain import Context, PermissionDenied
from crm_domain.bootstrap import bootstrap
from crm_domain.clock import FixedClock
from crm_domain.entities import Role
from crm_domain.memory import InMemoryGateway
from crm_domain.services import AddUser, AllowIp, CreateBooking, CreateContact, CreateLocation


async def main() -> None:
    """Run the walk-through and print what it made."""
    gateway = InMemoryGateway()
    clock = FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    services = bootstrap(gateway, clock=clock)

    # An operator (like the ``crm`` CLI) acts as the system: admin, no user.
    operator = Context.system("bootstrap")
    sydney = await services.access.create_location(
        operator,
        CreateLocation(code="sydney", name="Avatar Imaging Sydney", timezone="Australia/Sydney"),
    )
    admin = Context.system(sydney.id)
    await services.access.seed_permissions(admin)
    await services.access.allow_ip(admin, AllowIp(cidr="127.0.0.0/8", description="this machine"))
    member = await services.access.add_user(
        admin,
        AddUser(email="Reception.Sydney@Avatar-Imaging.example", role="receptionist", name="Sam"),
    )

    # The receptionist, as the HTTP layer would resolve them from a session token.
    access = await services.access.resolve_access(member.user.id, "sydney")
    location = access.location
    reception = Context.for_roles(location.id, member.user.id, access.roles, client_ip="127.0.0.1")
    contact = await services.contacts.create(
        reception,
        CreateContact(
            first_name="Jane",
            last_name="Citizen",
            email="Jane.Citizen@Example.com",
            phone="0412 345 678",
            source="website",
            sms_opt_in=True,
        ),
    )
    starts = clock.now() + timedelta(days=2)
    booking = await services.bookings.create(
        reception,
        CreateBooking(
            contact_id=contact.id,
            service_type="MRI",
            starts_at=starts,
            ends_at=starts + timedelta(minutes=45),
        ),
    )

    allowlist = await services.access.allowlist(location.id)
    print(f"location: {location.code} ({location.name}, {location.timezone}) id={location.id}")
    print(f"user:     {member.user.email} as {access.membership.role.value} at {location.code}")
    print(f"contact:  {contact.full_name} <{contact.email}> {contact.phone} id={contact.id}")
    print(
        f"booking:  {booking.service_type} {booking.starts_at.isoformat()} "
        f"[{booking.status.value}] id={booking.id}"
    )
    print(
        f"allowlist: 127.0.0.1 allowed={allowlist.allows('127.0.0.1')}, "
        f"203.0.113.9 allowed={allowlist.allows('203.0.113.9')}"
    )

    # Deny by default: a read-only member cannot book; the refusal is audited too.
    readonly = Context.for_roles(location.id, member.user.id, [Role.READONLY])
    try:
        await services.bookings.create(
            readonly,
            CreateBooking(
                contact_id=contact.id,
                service_type="CT",
                starts_at=starts,
                ends_at=starts + timedelta(minutes=30),
            ),
        )
    except PermissionDenied as error:
        print(f"denied:   {error}")

    async with gateway.unit_of_work(location.id) as uow:
        entries = await uow.audit.chain()
    trail = ", ".join(f"{e.action} {e.resource_type} {e.outcome.value}" for e in entries)
    print(f"audit:    {len(entries)} entries at {location.code}: {trail}")
    for report in await services.audit.verify_all(Context.system(location.id)):
        state = "ok" if report.ok else f"broken: {report.broken}"
        print(f"chain:    {report.location_code or 'system'}: {report.entries} entries, {state}")


if __name__ == "__main__":
    anyio.run(main)
