"""Helpers for stores that hold entities themselves (memory, D1's buffer, object stores).

A SQL store pushes the same work down into ``WHERE … ORDER BY id DESC
LIMIT``; these give the reference semantics for a store that holds its rows
as entities.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs

from crm_domain.audit_chain import chained
from crm_domain.entities import (
    AuditEntry,
    AutomationRule,
    Booking,
    CampaignDelivery,
    Contact,
    EmailCampaign,
    IdempotencyRecord,
    IpRule,
    Location,
    Membership,
    OutboxMessage,
    OutboxStatus,
    Permission,
    Session,
    SmsMessage,
    StaffUser,
    Suppression,
    Task,
    Touchpoint,
    WebhookReceipt,
)
from crm_domain.pagination import Page, page_from_rows
from crm_domain.queries import ListQuery, matches

#: The entity stored in each table of :data:`crm_domain.relations.TABLES`.
ENTITIES: dict[str, type[Any]] = {
    "locations": Location,
    "users": StaffUser,
    "memberships": Membership,
    "permissions": Permission,
    "sessions": Session,
    "webhook_receipts": WebhookReceipt,
    "ip_rules": IpRule,
    "contacts": Contact,
    "campaigns": EmailCampaign,
    "touchpoints": Touchpoint,
    "bookings": Booking,
    "tasks": Task,
    "sms": SmsMessage,
    "deliveries": CampaignDelivery,
    "automations": AutomationRule,
    "suppressions": Suppression,
    "idempotency": IdempotencyRecord,
    "outbox": OutboxMessage,
}

#: The attributes making up each composite primary key of the relations, in key order.
_COMPOSITE_KEYS: dict[str, tuple[str, ...]] = {
    "webhook_receipts": ("source", "event_id"),
    "idempotency": ("tenant_id", "key", "user_id"),
}


def key_attributes(table: str) -> tuple[str, ...]:
    """The attributes of ``table``'s primary key, in the order its key tuple has them."""
    return _COMPOSITE_KEYS.get(table, ("id",))


def matching(rows: Iterable[Any], tenant: str | None, query: ListQuery) -> list[Any]:
    """The rows of ``tenant`` (any when ``None``) that ``query``'s filters match."""
    return [r for r in rows if (tenant is None or r.tenant_id == tenant) and matches(query, r)]


def page_of(rows: list[Any], query: ListQuery) -> Page[Any]:
    """Order ``rows`` by id descending, skip to the cursor and cut one page."""
    rows.sort(key=lambda r: r.id, reverse=True)
    after = query.after_id
    if after is not None:
        rows = [r for r in rows if r.id < after]
    return page_from_rows(rows[: query.limit + 1], query.limit)


def is_due(message: OutboxMessage, now: datetime) -> bool:
    """Pending, available at ``now`` and not leased at ``now`` (a lapsed lease is free)."""
    return (
        message.status is OutboxStatus.PENDING
        and message.available_at <= now
        and (message.claimed_until is None or message.claimed_until < now)
    )


def leased(message: OutboxMessage, until: datetime) -> OutboxMessage:
    """``message`` claimed until ``until``, its attempt counted."""
    return attrs.evolve(message, attempts=message.attempts + 1, claimed_until=until)


def failed(message: OutboxMessage, error: str, retry_at: datetime, *, dead: bool) -> OutboxMessage:
    """``message`` after a failed attempt: pending again at ``retry_at`` (or dead), unleased."""
    return attrs.evolve(
        message,
        status=OutboxStatus.DEAD if dead else OutboxStatus.PENDING,
        available_at=retry_at,
        claimed_until=None,
        last_error=error,
    )


async def relink(
    entries: Sequence[AuditEntry],
    committed_head: Callable[[str | None], Awaitable[AuditEntry | None]],
) -> list[AuditEntry]:
    """Buffered audit entries linked again after their chains' committed heads.

    For a store without a chain lock across processes (D1, an object store):
    a commit that lost the race for the next sequence re-reads each chain's
    head with ``committed_head`` and tries again with these.
    """
    heads = {chain: await committed_head(chain) for chain in {e.tenant_id for e in entries}}
    out = []
    for entry in entries:
        heads[entry.tenant_id] = stored = chained(entry, heads[entry.tenant_id])
        out.append(stored)
    return out


__all__ = [
    "ENTITIES",
    "failed",
    "is_due",
    "key_attributes",
    "leased",
    "matching",
    "page_of",
    "relink",
]
