"""What the services share around the AI port: PHI-free profiles and safe calls.

A provider's answer is advice: every helper here turns ``Unavailable`` (or any
other failure of a provider) into a safe default, so an AI outage never fails a
use case.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from crm_domain.entities import Booking, Contact, TaskPriority, Touchpoint
from crm_domain.ports.ai import AIProvider, LeadProfile, TouchpointFact
from crm_domain.ports.gateway import UnitOfWork
from crm_domain.queries import MAX_LIMIT, BookingQuery, TouchpointQuery

logger = logging.getLogger("crm_domain.services")

#: How many recent touchpoints and bookings a profile carries (one page each).
RECENT = MAX_LIMIT


def lead_profile(
    contact: Contact,
    touchpoints: Iterable[Touchpoint] = (),
    bookings: Iterable[Booking] = (),
) -> LeadProfile:
    """A contact reduced to non-identifying facts (no name, email, phone, birth date, note)."""
    return LeadProfile(
        source=contact.source.value,
        status=contact.status.value,
        service_interest=contact.service_interest,
        has_email=contact.email is not None,
        has_phone=contact.phone is not None,
        email_opt_in=contact.email_opt_in,
        sms_opt_in=contact.sms_opt_in,
        tags=contact.tags,
        created_at=contact.created_at,
        touchpoints=tuple(
            TouchpointFact(kind=t.kind, occurred_at=t.occurred_at)
            for t in sorted(touchpoints, key=lambda t: t.occurred_at)
        ),
        booking_statuses=tuple(b.status for b in sorted(bookings, key=lambda b: b.starts_at)),
    )


async def load_lead_profile(uow: UnitOfWork, contact: Contact) -> LeadProfile:
    """The profile of ``contact`` with its most recent touchpoints and bookings."""
    touchpoints = await uow.touchpoints.list(TouchpointQuery(contact_id=contact.id, limit=RECENT))
    bookings = await uow.bookings.list(BookingQuery(contact_id=contact.id, limit=RECENT))
    return lead_profile(contact, touchpoints.items, bookings.items)


async def suggest_priority(
    ai: AIProvider | None, title: str, profile: LeadProfile | None
) -> TaskPriority:
    """The provider's priority for a new task; ``NORMAL`` without one or when it fails."""
    if ai is None:
        return TaskPriority.NORMAL
    try:
        return (await ai.prioritize_task(title, profile)).priority
    except Exception:  # advice only: a broken provider must never fail creating a task
        logger.warning("AI provider %r could not prioritise a task", ai.name, exc_info=True)
        return TaskPriority.NORMAL


__all__ = ["RECENT", "lead_profile", "load_lead_profile", "suggest_priority"]
