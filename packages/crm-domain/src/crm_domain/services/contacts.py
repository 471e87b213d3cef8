"""Contacts: leads and patients of a location, and their touchpoints."""

from __future__ import annotations

from typing import Any

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import (
    Action,
    Contact,
    Resource,
    Touchpoint,
    WebhookReceipt,
)
from crm_domain.errors import Conflict, Unavailable, ValidationError
from crm_domain.pagination import Page
from crm_domain.policies.rbac import Authorizer
from crm_domain.ports.ai import AIProvider, ContactDraft
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.queries import ContactQuery, TouchpointQuery
from crm_domain.services._ai import lead_profile, load_lead_profile
from crm_domain.services._base import ServiceBase
from crm_domain.services._refs import require_reference
from crm_domain.services.commands import AddTouchpoint, CreateContact, UpdateContact, changes
from crm_domain.services.events import EventName
from crm_domain.values import parse_email, parse_phone

_CONSENT_FIELDS = ("email_opt_in", "sms_opt_in")

#: ``WebhookReceipt.source`` of the outbox events already used to rescore warmness.
WARMNESS_RECEIPTS = "outbox:warmness"


def _facts(contact: Contact) -> dict[str, Any]:
    """Non-PHI facts about a contact, for event payloads (automation conditions use them)."""
    return {
        "contact_id": contact.id,
        "status": contact.status.value,
        "source": contact.source.value,
        "warmness": contact.warmness,
        "email_opt_in": contact.email_opt_in,
        "sms_opt_in": contact.sms_opt_in,
    }


class ContactService:
    """Use cases on contacts: create, get, list, update, delete, touchpoints.

    Permissions: ``contacts:create``/``read``/``update``/``delete``; adding a
    touchpoint is ``contacts:update``, listing them ``contacts:read``.

    With an :class:`~crm_domain.ports.ai.AIProvider`, a new contact without a
    warmness is scored from a PHI-free :class:`~crm_domain.ports.ai.LeadProfile`;
    its fields are enriched (names, source inference) only when the location
    allows its provider to see PHI (``LocationSettings.ai_phi_allowed``).  An
    unavailable provider never fails the use case: the contact keeps the
    defaults.  The provider is called before anything is written.
    """

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
        ai: AIProvider | None = None,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)
        self._ai = ai

    async def create(self, ctx: Context, command: CreateContact) -> Contact:
        """Create a contact; emits ``ContactCreated``."""
        base = self._base
        async with base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="contact",
            write=True,
        ) as call:
            now = base.clock.now()
            contact = Contact(
                id=base.ids.new_id(),
                tenant_id=ctx.tenant_id,
                first_name=command.first_name,
                last_name=command.last_name,
                email=None if command.email is None else parse_email(command.email),
                phone=None if command.phone is None else parse_phone(command.phone),
                source=command.source,
                status=command.status,
                warmness=0 if command.warmness is None else command.warmness,
                tags=command.tags,
                email_opt_in=command.email_opt_in,
                sms_opt_in=command.sms_opt_in,
                consent_updated_at=now if command.email_opt_in or command.sms_opt_in else None,
                service_interest=command.service_interest,
                date_of_birth=command.date_of_birth,
                notes=command.notes,
                created_at=now,
                updated_at=now,
            )
            call.resource_id = contact.id
            if contact.email is not None and not command.allow_duplicate_email:
                await self._refuse_duplicate_email(call.uow, contact)
            if self._ai is not None:
                contact = await self._with_ai(
                    self._ai, call.uow, contact, score=command.warmness is None
                )
            await call.uow.contacts.add(contact)
            await call.emit(EventName.CONTACT_CREATED, "contact", contact.id, _facts(contact))
            return contact

    async def get(self, ctx: Context, contact_id: str) -> Contact:
        """Return one contact of the caller's location (``NotFound`` otherwise)."""
        async with self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="contact",
            resource_id=contact_id,
            write=False,
        ) as call:
            return await call.uow.contacts.get(contact_id)

    async def list(self, ctx: Context, query: ContactQuery | None = None) -> Page[Contact]:
        """One page of the location's contacts matching ``query``, newest first."""
        async with self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="contact",
            write=False,
        ) as call:
            page = await call.uow.contacts.list(query or ContactQuery())
            call.detail = f"{len(page.items)} returned"
            return page

    async def update(self, ctx: Context, command: UpdateContact) -> Contact:
        """Change the set fields; emits ``ContactUpdated`` naming the changed fields."""
        base = self._base
        async with base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.UPDATE,
            audit=AuditAction.UPDATE,
            resource_type="contact",
            resource_id=command.contact_id,
            write=True,
        ) as call:
            current = await call.uow.contacts.get(command.contact_id)
            requested = changes(command, exclude=("contact_id",))
            if requested.get("email") is not None:
                requested["email"] = parse_email(requested["email"])
            if requested.get("phone") is not None:
                requested["phone"] = parse_phone(requested["phone"])
            now = base.clock.now()
            updated = attrs.evolve(current, **requested)
            changed = sorted(
                name for name in requested if getattr(updated, name) != getattr(current, name)
            )
            if not changed:
                return current
            stamps: dict[str, Any] = {"updated_at": now}
            if any(name in _CONSENT_FIELDS for name in changed):
                stamps["consent_updated_at"] = now
            updated = attrs.evolve(updated, **stamps)
            if "email" in changed and updated.email is not None:
                await self._refuse_duplicate_email(call.uow, updated)
            await call.uow.contacts.update(updated)
            await call.emit(
                EventName.CONTACT_UPDATED,
                "contact",
                updated.id,
                {**_facts(updated), "changed": changed},
            )
            return updated

    async def delete(self, ctx: Context, contact_id: str) -> None:
        """Delete a contact and its touchpoints; emits ``ContactDeleted``.

        A contact with bookings cannot be deleted (``Conflict``): bookings are
        clinical records and are cancelled, not erased.
        """
        async with self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.DELETE,
            audit=AuditAction.DELETE,
            resource_type="contact",
            resource_id=contact_id,
            write=True,
        ) as call:
            await call.uow.contacts.delete(contact_id)
            await call.emit(
                EventName.CONTACT_DELETED, "contact", contact_id, {"contact_id": contact_id}
            )

    async def add_touchpoint(self, ctx: Context, command: AddTouchpoint) -> Touchpoint:
        """Record an interaction with a contact; emits ``TouchpointAdded``.

        ``NotFound`` when the contact, or the ``campaign_id`` named (field
        ``campaign_id``), is unknown at the caller's location — also when it
        belongs to another one.
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.UPDATE,
            audit=AuditAction.CREATE,
            resource_type="touchpoint",
            write=True,
        ) as call:
            await call.uow.contacts.get(command.contact_id)
            if command.campaign_id is not None:
                await require_reference(
                    call.uow.campaigns.get, "campaign_id", "campaign", command.campaign_id
                )
            now = base.clock.now()
            touchpoint = Touchpoint(
                id=base.ids.new_id(),
                tenant_id=ctx.tenant_id,
                contact_id=command.contact_id,
                kind=command.kind,
                channel=command.channel,
                occurred_at=now if command.occurred_at is None else command.occurred_at,
                campaign_id=command.campaign_id,
                metadata=command.metadata,
                created_at=now,
            )
            call.resource_id = touchpoint.id
            call.detail = f"contact {command.contact_id}"
            await call.uow.touchpoints.add(touchpoint)
            await call.emit(
                EventName.TOUCHPOINT_ADDED,
                "contact",
                command.contact_id,
                {
                    "contact_id": command.contact_id,
                    "touchpoint_id": touchpoint.id,
                    "kind": touchpoint.kind.value,
                    "channel": touchpoint.channel.value,
                },
            )
            return touchpoint

    async def list_touchpoints(
        self, ctx: Context, contact_id: str, query: TouchpointQuery | None = None
    ) -> Page[Touchpoint]:
        """One page of a contact's touchpoints, newest first.

        ``NotFound`` for a contact unknown at the caller's location.
        """
        async with self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="touchpoint",
            resource_id=contact_id,
            write=False,
        ) as call:
            await call.uow.contacts.get(contact_id)
            scoped = attrs.evolve(query or TouchpointQuery(), contact_id=contact_id)
            page = await call.uow.touchpoints.list(scoped)
            call.detail = f"{len(page.items)} returned"
            return page

    async def rescore_warmness(
        self, ctx: Context, contact_id: str, *, event_id: str | None = None
    ) -> Contact:
        """Score a contact again from its recent touchpoints and bookings.

        Stores ``warmness`` and ``warmness_reasons`` (audited as an UPDATE) and
        emits ``ContactWarmnessChanged`` when the score moved.  The provider sees
        a PHI-free :class:`~crm_domain.ports.ai.LeadProfile` only.  Without a
        provider the contact is returned unchanged; an unavailable provider
        raises ``Unavailable`` and stores nothing, so an outbox consumer retries.

        ``event_id`` makes the call idempotent for an at-least-once consumer: the
        event is recorded (``WebhookReceipt`` of source :data:`WARMNESS_RECEIPTS`)
        in the same unit of work, and a second call with it changes nothing —
        not even a score that time decay would have moved since.
        """
        base = self._base
        async with base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.UPDATE,
            audit=AuditAction.UPDATE,
            resource_type="contact",
            resource_id=contact_id,
            write=True,
        ) as call:
            contact = await call.uow.contacts.get(contact_id)
            if self._ai is None:
                call.detail = "warmness: no AI provider"
                return contact
            now = base.clock.now()
            # Ask the provider before the first write: a remote model can take
            # seconds, and a unit of work that has written holds the store's
            # write lock (SQLite: the whole file) until it ends.  A duplicate
            # event then costs one wasted call instead of stalling every writer.
            profile = await load_lead_profile(call.uow, contact)
            assessment = await self._ai.analyze_warmness(profile, now)
            if event_id is not None:
                receipt = WebhookReceipt(
                    source=WARMNESS_RECEIPTS,
                    event_id=event_id,
                    tenant_id=ctx.tenant_id,
                    received_at=now,
                )
                if not await call.uow.webhook_receipts.record(receipt):
                    call.detail = "warmness: event already processed"
                    return contact
            call.detail = f"warmness rescored by {assessment.provider}"
            if (contact.warmness, contact.warmness_reasons) == (
                assessment.score,
                assessment.reasons,
            ):
                return contact
            updated = attrs.evolve(
                contact,
                warmness=assessment.score,
                warmness_reasons=assessment.reasons,
                updated_at=now,
            )
            # Conditional: the model ran after the read, and a change made meanwhile (a
            # consent withdrawn by STOP) must not be written back over.  Losing the race
            # rolls back (receipt included) so the outbox retries on the fresh contact.
            if not await call.uow.contacts.replace_if_unchanged(contact, updated):
                raise Conflict("the contact changed while its warmness was computed; retry")
            if updated.warmness != contact.warmness:
                await call.emit(
                    EventName.CONTACT_WARMNESS_CHANGED,
                    "contact",
                    updated.id,
                    {
                        **_facts(updated),
                        "previous_warmness": contact.warmness,
                        "band": assessment.band.value,
                        "provider": assessment.provider,
                        "event_id": event_id,
                    },
                )
            return updated

    # -- helpers --------------------------------------------------------------

    async def _refuse_duplicate_email(self, uow: UnitOfWork, contact: Contact) -> None:
        page = await uow.contacts.list(ContactQuery(email=contact.email, limit=2))
        others = [c.id for c in page.items if c.id != contact.id]
        if others:
            raise Conflict(f"contact {others[0]} at this location already has this email")

    async def _with_ai(
        self, ai: AIProvider, uow: UnitOfWork, contact: Contact, *, score: bool
    ) -> Contact:
        location = await uow.locations.get(contact.tenant_id)
        if location.settings.ai_phi_allowed:
            contact = await self._enriched(ai, contact)
        if score:
            profile = lead_profile(contact)
            try:
                assessment = await ai.analyze_warmness(profile, self._base.clock.now())
            except Unavailable:
                return contact
            contact = attrs.evolve(
                contact, warmness=assessment.score, warmness_reasons=assessment.reasons
            )
        return contact

    async def _enriched(self, ai: AIProvider, contact: Contact) -> Contact:
        draft = ContactDraft(
            first_name=contact.first_name,
            last_name=contact.last_name or None,
            email=contact.email,
            phone=contact.phone,
            source=contact.source.value,
            service_interest=contact.service_interest,
        )
        try:
            enrichment = await ai.enrich_contact(draft)
        except Unavailable:
            return contact
        try:
            return attrs.evolve(
                contact,
                first_name=enrichment.first_name or contact.first_name,
                last_name=enrichment.last_name or contact.last_name,
                email=contact.email if enrichment.email is None else parse_email(enrichment.email),
                phone=contact.phone if enrichment.phone is None else parse_phone(enrichment.phone),
                source=enrichment.source if contact.source.value == "other" else contact.source,
                service_interest=contact.service_interest or enrichment.service_interest,
            )
        except ValidationError:
            # A suggestion the entity refuses is dropped; the caller's input stands.
            return contact


__all__ = ["WARMNESS_RECEIPTS", "ContactService"]
