"""Use cases: ports in the constructor, a :class:`~crm_domain.context.Context` per call.

Every call checks RBAC itself, runs in one unit of work bound to
``ctx.tenant_id``, emits its domain events through the outbox of that unit of
work and produces exactly one audit entry (see :mod:`crm_domain.audit`).
:func:`crm_domain.bootstrap.bootstrap` wires them all.
"""

from crm_domain.services._base import Call, ServiceBase
from crm_domain.services.access import AccessService, Member
from crm_domain.services.audit import AuditService, ChainReport
from crm_domain.services.bookings import MAX_BOOKING_LENGTH, BookingService
from crm_domain.services.commands import (
    UNSET,
    AddTouchpoint,
    AddUser,
    AllowIp,
    CancelBooking,
    CreateBooking,
    CreateContact,
    CreateLocation,
    CreateTask,
    RescheduleBooking,
    Unset,
    UpdateContact,
    UpdateLocation,
    UpdateTask,
    UpsertExternalBooking,
)
from crm_domain.services.contacts import ContactService
from crm_domain.services.events import EventName
from crm_domain.services.tasks import TaskService

__all__ = [
    "MAX_BOOKING_LENGTH",
    "UNSET",
    "AccessService",
    "AddTouchpoint",
    "AddUser",
    "AllowIp",
    "AuditService",
    "BookingService",
    "Call",
    "CancelBooking",
    "ChainReport",
    "ContactService",
    "CreateBooking",
    "CreateContact",
    "CreateLocation",
    "CreateTask",
    "EventName",
    "Member",
    "RescheduleBooking",
    "ServiceBase",
    "TaskService",
    "Unset",
    "UpdateContact",
    "UpdateLocation",
    "UpdateTask",
    "UpsertExternalBooking",
]
