"""What every use case shares: RBAC check, unit of work, events and the audit entry.

A use case is written as::

    async with self.use_case(ctx, Resource.CONTACTS, Action.UPDATE,
                             audit=AuditAction.UPDATE, resource_type="contact",
                             resource_id=contact_id, write=True) as call:
        contact = await call.uow.contacts.get(contact_id)
        ...
        await call.emit("ContactUpdated", "contact", contact.id, {...})
        return contact

and :meth:`ServiceBase.use_case` guarantees the rules of the domain:

1. the caller's permission is checked first (``PermissionDenied`` otherwise);
2. the work runs in one unit of work bound to ``ctx.tenant_id``;
3. a write appends its audit entry in that same unit of work and commits, so
   data, outbox events and audit entry are durable together or not at all;
4. a read is recorded through the :class:`~crm_domain.audit.AuditRecorder` after
   the unit of work and before the result reaches the caller;
5. a refused or failed call is recorded (outcome ``denied``/``failed``) through
   the recorder and the error re-raised — exactly one entry per call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from crm_domain.audit import (
    AuditAction,
    AuditEntryFactory,
    AuditRecorder,
    describe_failure,
    outcome_of,
)
from crm_domain.context import Context
from crm_domain.entities import Action, AuditEntry, AuditOutcome, DomainEvent, Resource
from crm_domain.policies.rbac import Authorizer
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork


class Call:
    """One running use case: its unit of work and what its audit entry will say."""

    def __init__(
        self,
        service: ServiceBase,
        ctx: Context,
        action: AuditAction,
        resource_type: str,
        resource_id: str | None,
    ) -> None:
        self._service = service
        self._ctx = ctx
        self._uow: UnitOfWork | None = None
        #: The audit action; a use case may refine it (an upsert that updated).
        self.action = action
        self.resource_type = resource_type
        #: Set by the use case once known (e.g. the id of a created entity).
        self.resource_id = resource_id
        #: A PHI-free note for the audit entry (e.g. how many rows a list returned).
        self.detail: str | None = None

    @property
    def uow(self) -> UnitOfWork:
        """The use case's unit of work, bound to ``ctx.tenant_id``."""
        if self._uow is None:
            raise RuntimeError("the unit of work is open only inside the use case")
        return self._uow

    async def emit(
        self,
        name: str,
        aggregate_type: str,
        aggregate_id: str,
        payload: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> DomainEvent:
        """Queue a domain event in the outbox of this unit of work.

        ``payload`` holds ids and non-PHI facts only; consumers load the rest by id.
        ``at`` schedules the event: the outbox hands a message over once its
        ``occurred_at`` has come, so an event dated in the future (a booking
        reminder) is due then; by default it is now.
        """
        service = self._service
        event = DomainEvent(
            id=service.ids.new_id(),
            tenant_id=self.uow.tenant_id,
            name=name,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            payload={
                **(payload or {}),
                "actor_user_id": self._ctx.user_id,
                "request_id": self._ctx.request_id,
            },
            occurred_at=service.clock.now() if at is None else at,
        )
        await self.uow.outbox.add(event)
        return event


class ServiceBase:
    """Ports every use-case service takes in its constructor."""

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
    ) -> None:
        self.gateway = gateway
        self.authorizer = authorizer
        self.recorder = recorder
        self.clock = clock
        self.ids = ids
        self.audit_entries = AuditEntryFactory(clock, ids)

    @asynccontextmanager
    async def use_case(
        self,
        ctx: Context,
        resource: Resource,
        action: Action,
        *,
        audit: AuditAction,
        resource_type: str,
        resource_id: str | None = None,
        write: bool,
        tenant_id: str | None = None,
    ) -> AsyncIterator[Call]:
        """Run one use case (see the module docstring).

        ``tenant_id`` binds the unit of work (and the success entry's chain) to
        another location than the caller's — used when creating a location, whose
        chain starts with its own creation; a refusal or failure is then audited
        in the caller's chain, since the new location may not exist.
        """
        call = Call(self, ctx, audit, resource_type, resource_id)
        bound = ctx.tenant_id if tenant_id is None else tenant_id
        try:
            await self.authorizer.require(ctx, resource, action)
            async with self.gateway.unit_of_work(bound) as uow:
                call._uow = uow
                yield call
                if write:
                    entry = self._entry(ctx, call, AuditOutcome.SUCCESS, bound)
                    await uow.audit.append(entry)
                    await uow.commit()
        except Exception as error:
            await self._record_failure(ctx, call, error, ctx.tenant_id)
            raise
        finally:
            call._uow = None
        if not write:
            # Reads: durable before the data leaves (an audit outage is the caller's error).
            await self.recorder.record(self._entry(ctx, call, AuditOutcome.SUCCESS, bound))

    def _entry(self, ctx: Context, call: Call, outcome: AuditOutcome, bound: str) -> AuditEntry:
        return self.audit_entries.build(
            ctx,
            call.action,
            call.resource_type,
            call.resource_id,
            outcome=outcome,
            detail=call.detail,
            tenant_id=bound,
        )

    async def _record_failure(self, ctx: Context, call: Call, error: Exception, bound: str) -> None:
        call.detail = describe_failure(error)
        entry = self._entry(ctx, call, outcome_of(error), bound)
        try:
            await self.recorder.record(entry)
        except Exception as audit_error:
            # The caller must learn of the original failure; the lost entry is noted on it.
            error.add_note(f"its audit entry could not be recorded: {audit_error!r}")


__all__ = ["Call", "ServiceBase"]
