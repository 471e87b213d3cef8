"""Duplicate contacts: finding them, and merging one into another.

* :meth:`ContactMergeService.duplicates` (``contacts:read``) — the contacts
  of the same location that are likely the same person: the same email, the
  same phone, or a similar name (RapidFuzz ``token_sort_ratio`` ≥
  :data:`NAME_SIMILARITY`) with the same date of birth.  Name candidates are
  the contacts whose name contains the first or last name (the store's
  search); a misspelt *both* names is not found.
* :meth:`ContactMergeService.merge` (``contacts:delete``: the duplicate is
  removed) — previewed, or applied in one unit of work: the duplicate's
  touchpoints, bookings, tasks, SMS messages and campaign deliveries move to
  the survivor, the survivor's empty fields are filled from the duplicate,
  tags are united, the consent most recently given wins (by
  ``consent_updated_at``), the duplicate is deleted, one ``ContactsMerged``
  event and one audit entry (``UPDATE`` of the survivor, naming the
  duplicate) are written.  The survivor's id, and so its audit history, stays.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs
from rapidfuzz import fuzz

from crm_domain.audit import AuditAction
from crm_domain.context import Context
from crm_domain.entities import Action, Contact, Resource
from crm_domain.errors import ValidationError
from crm_domain.ports.gateway import UnitOfWork
from crm_domain.queries import (
    MAX_LIMIT,
    BookingQuery,
    ContactQuery,
    DeliveryQuery,
    ListQuery,
    SmsQuery,
    TaskQuery,
    TouchpointQuery,
)
from crm_domain.services._ported import PortedService, every
from crm_domain.services.events import EventName

#: The least RapidFuzz ``token_sort_ratio`` (0–100) of two full names called similar.
NAME_SIMILARITY = 85
#: Fields a survivor takes from the duplicate when its own is empty.
_FILLED = ("last_name", "email", "phone", "date_of_birth", "service_interest", "notes")

E = TypeVar("E")
Q = TypeVar("Q", bound=ListQuery)


@attrs.frozen(slots=True, kw_only=True)
class DuplicateCandidate:
    """A contact that is probably the same person, and why."""

    contact: Contact
    reasons: tuple[str, ...]
    #: 100 for an exact email or phone match, else the name similarity.
    score: int


@attrs.frozen(slots=True, kw_only=True)
class MergePlan:
    """What a merge does (or did, when ``applied``)."""

    survivor: Contact
    merged_id: str
    touchpoints: int
    bookings: int
    tasks: int
    messages: int
    deliveries: int
    #: Deliveries not moved: the survivor already has one for that campaign.
    deliveries_dropped: int
    #: Survivor fields that change, by name.
    changed: tuple[str, ...]
    applied: bool


def full_name(contact: Contact) -> str:
    """First and last name, as compared."""
    return f"{contact.first_name} {contact.last_name}".strip().lower()


def merged_fields(survivor: Contact, duplicate: Contact) -> dict[str, Any]:
    """The survivor's fields that change when ``duplicate`` merges into it."""
    changes: dict[str, Any] = {}
    for name in _FILLED:
        if not getattr(survivor, name) and getattr(duplicate, name):
            changes[name] = getattr(duplicate, name)
    tags = tuple(dict.fromkeys((*survivor.tags, *duplicate.tags)))
    if tags != survivor.tags:
        changes["tags"] = tags
    newer = duplicate.consent_updated_at is not None and (
        survivor.consent_updated_at is None
        or duplicate.consent_updated_at > survivor.consent_updated_at
    )
    if newer:
        for name in ("email_opt_in", "sms_opt_in", "consent_updated_at"):
            if getattr(duplicate, name) != getattr(survivor, name):
                changes[name] = getattr(duplicate, name)
    if duplicate.warmness > survivor.warmness:
        changes["warmness"] = duplicate.warmness
    return changes


class ContactMergeService(PortedService):
    """Use cases: duplicate candidates of a contact, and merging two contacts."""

    async def duplicates(self, ctx: Context, contact_id: str) -> list[DuplicateCandidate]:
        """Likely duplicates of a contact at its location, best first."""
        async with self._base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="contact_duplicates",
            resource_id=contact_id,
            write=False,
        ) as call:
            found = await find_duplicates(call.uow, await call.uow.contacts.get(contact_id))
            call.detail = f"{len(found)} candidates"
            return found

    async def merge(
        self, ctx: Context, survivor_id: str, duplicate_id: str, *, apply: bool
    ) -> MergePlan:
        """Preview (``apply=False``) or apply merging ``duplicate_id`` into ``survivor_id``."""
        if survivor_id == duplicate_id:
            raise ValidationError("duplicate_id", "a contact cannot be merged into itself")
        base = self._base
        async with base.use_case(
            ctx,
            Resource.CONTACTS,
            Action.DELETE,
            audit=AuditAction.UPDATE if apply else AuditAction.READ,
            resource_type="contact",
            resource_id=survivor_id,
            write=apply,
        ) as call:
            uow = call.uow
            survivor = await uow.contacts.get(survivor_id)
            duplicate = await uow.contacts.get(duplicate_id)
            changes = merged_fields(survivor, duplicate)
            touchpoints = await every(
                uow.touchpoints.list, TouchpointQuery(contact_id=duplicate_id, limit=MAX_LIMIT)
            )
            bookings = await every(
                uow.bookings.list, BookingQuery(contact_id=duplicate_id, limit=MAX_LIMIT)
            )
            tasks = await every(uow.tasks.list, TaskQuery(contact_id=duplicate_id, limit=MAX_LIMIT))
            messages = await every(uow.sms.list, SmsQuery(contact_id=duplicate_id, limit=MAX_LIMIT))
            deliveries = await every(
                uow.deliveries.list, DeliveryQuery(contact_id=duplicate_id, limit=MAX_LIMIT)
            )
            kept = {
                d.campaign_id
                for d in await every(
                    uow.deliveries.list, DeliveryQuery(contact_id=survivor_id, limit=MAX_LIMIT)
                )
            }
            movable = [d for d in deliveries if d.campaign_id not in kept]
            now = base.clock.now()
            merged = attrs.evolve(survivor, **changes, updated_at=now) if changes else survivor
            plan = MergePlan(
                survivor=merged,
                merged_id=duplicate_id,
                touchpoints=len(touchpoints),
                bookings=len(bookings),
                tasks=len(tasks),
                messages=len(messages),
                deliveries=len(movable),
                deliveries_dropped=len(deliveries) - len(movable),
                changed=tuple(sorted(changes)),
                applied=apply,
            )
            call.detail = (
                f"{'merged' if apply else 'merge preview of'} contact {duplicate_id}: "
                f"{plan.touchpoints} touchpoints, {plan.bookings} bookings, {plan.tasks} tasks, "
                f"{plan.messages} messages, {plan.deliveries} deliveries moved"
            )
            if not apply:
                return plan
            for touchpoint in touchpoints:
                await uow.touchpoints.update(attrs.evolve(touchpoint, contact_id=survivor_id))
            for booking in bookings:
                await uow.bookings.update(attrs.evolve(booking, contact_id=survivor_id))
            for task in tasks:
                await uow.tasks.update(attrs.evolve(task, contact_id=survivor_id))
            for message in messages:
                await uow.sms.update(attrs.evolve(message, contact_id=survivor_id))
            for delivery in movable:
                await uow.deliveries.update(attrs.evolve(delivery, contact_id=survivor_id))
            # The duplicate's email may be the survivor's new one: the duplicate
            # goes first so no moment holds two contacts with it.
            await uow.contacts.delete(duplicate_id)
            if changes:
                await uow.contacts.update(merged)
            await call.emit(
                EventName.CONTACTS_MERGED,
                "contact",
                survivor_id,
                {"contact_id": survivor_id, "merged_contact_id": duplicate_id},
            )
            return plan


async def find_duplicates(uow: UnitOfWork, contact: Contact) -> list[DuplicateCandidate]:
    """Contacts of ``uow``'s location that are likely ``contact`` (see the module docstring)."""
    reasons: dict[str, list[str]] = {}
    scores: dict[str, int] = {}
    others: dict[str, Contact] = {}

    def note(other: Contact, reason: str, score: int) -> None:
        if other.id == contact.id:
            return
        others[other.id] = other
        reasons.setdefault(other.id, []).append(reason)
        scores[other.id] = max(scores.get(other.id, 0), score)

    if contact.email:
        for other in await every(uow.contacts.list, ContactQuery(email=contact.email, limit=50)):
            note(other, "same email", 100)
    if contact.phone:
        for other in await every(uow.contacts.list, ContactQuery(phone=contact.phone, limit=50)):
            note(other, "same phone", 100)
    if contact.date_of_birth is not None:
        name = full_name(contact)
        for part in {contact.first_name.strip(), contact.last_name.strip()} - {""}:
            page = await uow.contacts.list(ContactQuery(search=part, limit=MAX_LIMIT))
            for other in page.items:
                if other.date_of_birth != contact.date_of_birth:
                    continue
                similarity = round(fuzz.token_sort_ratio(name, full_name(other)))
                if similarity >= NAME_SIMILARITY and other.id not in reasons:
                    note(other, f"similar name ({similarity}) and same date of birth", similarity)
    return sorted(
        (
            DuplicateCandidate(contact=others[i], reasons=tuple(reasons[i]), score=scores[i])
            for i in others
        ),
        key=lambda c: (-c.score, c.contact.id),
    )


__all__ = [
    "NAME_SIMILARITY",
    "ContactMergeService",
    "DuplicateCandidate",
    "MergePlan",
    "find_duplicates",
    "merged_fields",
]
