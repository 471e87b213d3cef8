"""The location's suppression list: addresses never to text or send campaign email to.

Sending checks it in one place per channel — :meth:`SmsService.send` and
:meth:`SmsService.deliver` (with :func:`sms_suppression`), the reminder and
automation SMS through :meth:`SmsService.refusal`, and the campaign audience and
send-time claim through :func:`suppressed_emails` / :func:`email_suppression` —
so a suppressed address is refused whatever its contact's consent says.

It is fed by staff (:class:`SuppressionService`, ``/api/suppressions``), by a
STOP reply (with or without a matching contact) and by a campaign unsubscribe
link; both of the latter go through :func:`suppress`, inside the use case
that took the opt-out, so the suppression commits with it.
"""

from __future__ import annotations

from typing import Any

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import (
    Action,
    Contact,
    Resource,
    Suppression,
    SuppressionChannel,
    SuppressionReason,
    normalise_address,
)
from crm_domain.errors import Conflict
from crm_domain.pagination import Page
from crm_domain.policies.messaging import ON_SUPPRESSION_LIST
from crm_domain.policies.rbac import Authorizer
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.queries import MAX_LIMIT, SuppressionQuery
from crm_domain.services._base import Call, ServiceBase
from crm_domain.services.events import EventName

#: ``created_by`` of a suppression no staff member added (a STOP, an unsubscribe link).
SYSTEM_ACTOR = "system"


@attrs.frozen(slots=True, kw_only=True)
class AddSuppression:
    """Put an address on the caller's location's suppression list.

    ``address`` as typed: a phone number (read as Australian without a country
    code) for ``sms``, an email address for ``email``; it is normalised.
    """

    channel: SuppressionChannel | str
    address: str
    reason: SuppressionReason | str = SuppressionReason.MANUAL
    note: str | None = None


def _facts(suppression: Suppression) -> dict[str, Any]:
    """Non-PHI facts about a suppression (the address itself is PHI: never in events)."""
    return {
        "suppression_id": suppression.id,
        "channel": suppression.channel.value,
        "reason": suppression.reason.value,
    }


async def sms_suppression(uow: UnitOfWork, phone: str | None) -> Suppression | None:
    """The location's ``sms`` suppression of ``phone`` (E.164), or ``None``."""
    if phone is None:
        return None
    return await uow.suppressions.find_address(SuppressionChannel.SMS, phone)


async def email_suppression(uow: UnitOfWork, email: str | None) -> Suppression | None:
    """The location's ``email`` suppression of ``email`` (normalised), or ``None``."""
    if email is None:
        return None
    return await uow.suppressions.find_address(SuppressionChannel.EMAIL, email)


async def suppressed_emails(uow: UnitOfWork) -> frozenset[str]:
    """Every email address on the location's list (one read per page, for an audience)."""
    query = SuppressionQuery(channel=SuppressionChannel.EMAIL.value, limit=MAX_LIMIT)
    found: set[str] = set()
    while True:
        page = await uow.suppressions.list(query)
        found.update(s.address for s in page.items)
        if page.next_cursor is None:
            return frozenset(found)
        query = attrs.evolve(query, cursor=page.next_cursor)


async def suppress(
    base: ServiceBase,
    call: Call,
    tenant_id: str,
    channel: SuppressionChannel,
    address: str,
    reason: SuppressionReason,
    *,
    created_by: str = SYSTEM_ACTOR,
    note: str | None = None,
) -> tuple[Suppression, bool]:
    """Put ``address`` (already normalised) on the list inside ``call``'s unit of work.

    Idempotent: an address already listed is returned as it is (``False``);
    a new one is stored with a ``SuppressionAdded`` event (``True``).  The
    caller's audit entry covers it.
    """
    uow = call.uow
    existing = await uow.suppressions.find_address(channel, address)
    if existing is not None:
        return existing, False
    suppression = Suppression(
        id=base.ids.new_id(),
        tenant_id=tenant_id,
        channel=channel,
        address=address,
        reason=reason,
        note=note,
        created_at=base.clock.now(),
        created_by=created_by,
    )
    await uow.suppressions.add(suppression)
    await call.emit(EventName.SUPPRESSION_ADDED, "suppression", suppression.id, _facts(suppression))
    return suppression, True


async def suppress_contact_sms(base: ServiceBase, call: Call, contact: Contact) -> bool:
    """Suppress a contact's number after their SMS opt-out; whether it was new."""
    if contact.phone is None:
        return False
    _, added = await suppress(
        base,
        call,
        contact.tenant_id,
        SuppressionChannel.SMS,
        contact.phone,
        SuppressionReason.OPT_OUT,
    )
    return added


class SuppressionService:
    """Use cases on the location's suppression list.

    Permissions (``suppressions``): ``read`` to list and get, ``create`` to
    add, ``delete`` to remove (admins; reception may add, not remove).  Every
    change is audited and emits ``SuppressionAdded`` / ``SuppressionRemoved``
    in the same unit of work; events and audit entries name the suppression,
    its channel and reason, never the address.
    """

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)

    async def add(self, ctx: Context, command: AddSuppression) -> Suppression:
        """Suppress an address: ``ValidationError`` naming ``channel``, ``address``,
        ``reason`` or ``note``; ``Conflict`` when it is already on the list."""
        base = self._base
        async with base.use_case(
            ctx,
            Resource.SUPPRESSIONS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="suppression",
            write=True,
        ) as call:
            # Every field checked (named in the error) before anything is read or stored.
            suppression = Suppression.create(
                id=base.ids.new_id(),
                tenant_id=ctx.tenant_id,
                channel=command.channel,
                address=command.address,
                reason=command.reason,
                note=command.note,
                created_at=base.clock.now(),
                created_by=ctx.user_id or SYSTEM_ACTOR,
            )
            channel = suppression.channel
            existing = await call.uow.suppressions.find_address(channel, suppression.address)
            if existing is not None:
                call.resource_id = existing.id
                raise Conflict(
                    f"this {channel.value} address is already {ON_SUPPRESSION_LIST} "
                    f"(suppression {existing.id})"
                )
            call.resource_id = suppression.id
            # The store's unique key settles a race with a concurrent add (Conflict).
            await call.uow.suppressions.add(suppression)
            await call.emit(
                EventName.SUPPRESSION_ADDED, "suppression", suppression.id, _facts(suppression)
            )
            call.detail = f"{channel.value} suppressed: {suppression.reason.value}"
            return suppression

    async def get(self, ctx: Context, suppression_id: str) -> Suppression:
        """One suppression of the caller's location (``NotFound`` otherwise)."""
        async with self._base.use_case(
            ctx,
            Resource.SUPPRESSIONS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="suppression",
            resource_id=suppression_id,
            write=False,
        ) as call:
            return await call.uow.suppressions.get(suppression_id)

    async def list(
        self,
        ctx: Context,
        query: SuppressionQuery | None = None,
    ) -> Page[Suppression]:
        """One page of the location's suppressions matching ``query``, newest first.

        The ``address`` filter is normalised for the query's ``channel`` (without
        one: as an email address when it has an ``@``, else as a phone number), so
        ``0412 345 678`` finds ``+61412345678``.
        """
        query = query or SuppressionQuery()
        async with self._base.use_case(
            ctx,
            Resource.SUPPRESSIONS,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="suppression",
            write=False,
        ) as call:
            if query.address is not None:
                channel = query.channel or (
                    SuppressionChannel.EMAIL if "@" in query.address else SuppressionChannel.SMS
                )
                query = attrs.evolve(query, address=normalise_address(channel, query.address))
            page = await call.uow.suppressions.list(query)
            call.detail = f"{len(page.items)} returned"
            return page

    async def remove(self, ctx: Context, suppression_id: str) -> None:
        """Take an address off the list (``NotFound`` for an unknown or another location's id).

        Removing it does not give consent back: a contact who opted out stays
        opted out until they agree again.
        """
        async with self._base.use_case(
            ctx,
            Resource.SUPPRESSIONS,
            Action.DELETE,
            audit=AuditAction.DELETE,
            resource_type="suppression",
            resource_id=suppression_id,
            write=True,
        ) as call:
            suppression = await call.uow.suppressions.get(suppression_id)
            await call.uow.suppressions.delete(suppression_id)
            await call.emit(
                EventName.SUPPRESSION_REMOVED, "suppression", suppression_id, _facts(suppression)
            )
            call.detail = f"{suppression.channel.value} suppression removed"


__all__ = [
    "SYSTEM_ACTOR",
    "AddSuppression",
    "SuppressionService",
    "email_suppression",
    "sms_suppression",
    "suppress",
    "suppress_contact_sms",
    "suppressed_emails",
]
