"""Fixtures for the service tests: the services wired on the in-memory gateway.

Assertions are on the gateway's end state (rows, outbox, audit chain), read
back through ordinary units of work — no mocks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from crm_domain.bootstrap import Services, bootstrap
from crm_domain.clock import FixedClock, UlidFactory
from crm_domain.context import Context
from crm_domain.entities import AuditEntry, DomainEvent, Location, Role
from crm_domain.memory import InMemoryGateway
from crm_domain.services import CreateContact, CreateLocation


class ServiceWorld:
    """Two locations (sydney, melbourne) with seeded permissions, and helpers."""

    def __init__(self) -> None:
        self.gateway = InMemoryGateway()
        self.clock = FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
        self.ids = UlidFactory()
        self.services: Services = bootstrap(self.gateway, clock=self.clock, ids=self.ids)
        self.sydney: Location
        self.melbourne: Location

    async def setup(self) -> ServiceWorld:
        """Create the locations and seed the permission matrix."""
        operator = Context.system("bootstrap")
        access = self.services.access
        self.sydney = await access.create_location(
            operator, CreateLocation(code="sydney", name="Sydney", timezone="Australia/Sydney")
        )
        self.melbourne = await access.create_location(
            operator,
            CreateLocation(code="melbourne", name="Melbourne", timezone="Australia/Melbourne"),
        )
        await access.seed_permissions(Context.system(self.sydney.id))
        return self

    def ctx(self, role: Role | str = Role.ADMIN, location: Location | None = None) -> Context:
        """A signed-in user's context with ``role`` at ``location`` (default sydney)."""
        where = location or self.sydney
        return Context(
            tenant_id=where.id,
            user_id=f"user-{role}",
            roles=frozenset({Role(role)}),
            client_ip="127.0.0.1",
            user_agent="pytest",
            request_id=self.ids.new_id(),
            request_method="POST",
            request_path="/api/test",
        )

    def wire_sms(self, sender: Any, numbers: dict[str, str]) -> Services:
        """Rewire the services with an SMS sender, the heuristic AI and clinic numbers."""
        from crm_domain.memory import RuleOfThumbAI

        self.services = bootstrap(
            self.gateway,
            clock=self.clock,
            ids=self.ids,
            ai=RuleOfThumbAI(),
            sms_sender=sender,
            sms_numbers=numbers,
        )
        return self.services

    async def relay(self, *, deliveries: int = 1) -> list[str]:
        """Do what the worker does at the clock's now: claim what is due, hand it to the
        services' handlers (``deliveries`` times, as after a crash), complete it; until
        nothing is due.  Returns the names of the events handled."""
        handlers = self.services.event_handlers()
        handled: list[str] = []
        while True:
            async with self.gateway.unit_of_work(None) as uow:
                claimed = list(await uow.outbox.claim(self.clock.now(), 100, 60.0))
                await uow.commit()
            if not claimed:
                return handled
            for message in claimed:
                for _ in range(deliveries):
                    for handler in handlers.get(message.event.name, ()):
                        await handler(message)
                handled.append(message.event.name)
                async with self.gateway.unit_of_work(None) as uow:
                    await uow.outbox.complete([message.event.id])
                    await uow.commit()

    async def audit(self, location: Location | None = None) -> list[AuditEntry]:
        """The committed audit chain of ``location`` (default sydney), in order."""
        tenant = (location or self.sydney).id
        async with self.gateway.unit_of_work(tenant) as uow:
            return list(await uow.audit.chain(limit=100_000))

    async def events(self, name: str | None = None) -> list[DomainEvent]:
        """Committed outbox events (optionally of one name), oldest first."""
        async with self.gateway.unit_of_work(None) as uow:
            messages = await uow.outbox.list_status("pending", limit=100_000)
        return [m.event for m in messages if name is None or m.event.name == name]

    async def new_contact(
        self,
        location: Location | None = None,
        *,
        first_name: str = "Ada",
        email: str | None = None,
        phone: str | None = "+61412345678",
        status: str = "new",
    ) -> str:
        """Create a contact through the service and return its id."""
        command = CreateContact(first_name=first_name, email=email, phone=phone, status=status)
        contact = await self.services.contacts.create(self.ctx(Role.ADMIN, location), command)
        return contact.id

    async def event_names(self) -> list[str]:
        """Names of the committed outbox events, oldest first."""
        return [e.name for e in await self.events()]


@pytest.fixture
async def world() -> AsyncIterator[ServiceWorld]:
    """A fresh :class:`ServiceWorld`."""
    world = await ServiceWorld().setup()
    yield world
    await world.gateway.close()
