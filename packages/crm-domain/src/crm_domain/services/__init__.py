"""Use cases: ports in the constructor, a :class:`~crm_domain.context.Context` per call.

Every call checks RBAC itself, runs in one unit of work bound to
``ctx.tenant_id``, emits its domain events through the outbox of that unit of
work and produces exactly one audit entry (see :mod:`crm_domain.audit`).
:func:`crm_domain.bootstrap.bootstrap` wires them all.
"""

from crm_domain.services._ai import lead_profile
from crm_domain.services._base import Call, ServiceBase
from crm_domain.services.access import Access, AccessService, Member, NoAccess
from crm_domain.services.audit import AuditService, ChainReport
from crm_domain.services.automations import AutomationService, DryRun, RuleSpec
from crm_domain.services.bookings import MAX_BOOKING_LENGTH, BookingService
from crm_domain.services.campaigns import (
    AudiencePreview,
    CampaignChanges,
    CampaignDraft,
    CampaignProgress,
    EmailMarketingService,
    UnsubscribeLinks,
)
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
from crm_domain.services.contacts import WARMNESS_RECEIPTS, ContactService
from crm_domain.services.events import EventName
from crm_domain.services.exports import ContactExportService, ContactRecord
from crm_domain.services.handlers import (
    WARMNESS_EVENTS,
    DeliverSms,
    EventHandler,
    RescoreWarmness,
    SendCampaign,
    automation_handlers,
    campaign_handlers,
    merge_handlers,
    reminder_handlers,
    sms_handlers,
    warmness_handlers,
    webhook_handlers,
)
from crm_domain.services.history import HISTORY_RESOURCE, History, HistoryImportService
from crm_domain.services.imports import (
    ContactImportService,
    ImportSummary,
    Rejection,
    RejectionSink,
)
from crm_domain.services.lifecycle import LEGAL_HOLD_TAG, Erasure, LifecycleService, PurgeReport
from crm_domain.services.merge import ContactMergeService, DuplicateCandidate, MergePlan
from crm_domain.services.reminders import REMINDER_REPLY_HINT, ReminderService
from crm_domain.services.reports import (
    ALL_LOCATIONS,
    Report,
    ReportAnswer,
    ReportingService,
    ReportLocation,
    ReportQuery,
)
from crm_domain.services.sms import CANCELLED_BY_SMS, OPT_OUT_CONFIRMATION, SmsService
from crm_domain.services.suppressions import AddSuppression, SuppressionService
from crm_domain.services.tasks import TaskService
from crm_domain.services.webhooks import (
    ExternalBookingEvent,
    LeadMessage,
    PersonDetails,
    WebhookService,
)

__all__ = [
    "ALL_LOCATIONS",
    "CANCELLED_BY_SMS",
    "HISTORY_RESOURCE",
    "LEGAL_HOLD_TAG",
    "MAX_BOOKING_LENGTH",
    "OPT_OUT_CONFIRMATION",
    "REMINDER_REPLY_HINT",
    "UNSET",
    "WARMNESS_EVENTS",
    "WARMNESS_RECEIPTS",
    "Access",
    "AccessService",
    "AddSuppression",
    "AddTouchpoint",
    "AddUser",
    "AllowIp",
    "AudiencePreview",
    "AuditService",
    "AutomationService",
    "BookingService",
    "Call",
    "CampaignChanges",
    "CampaignDraft",
    "CampaignProgress",
    "CancelBooking",
    "ChainReport",
    "ContactExportService",
    "ContactImportService",
    "ContactMergeService",
    "ContactRecord",
    "ContactService",
    "CreateBooking",
    "CreateContact",
    "CreateLocation",
    "CreateTask",
    "DeliverSms",
    "DryRun",
    "DuplicateCandidate",
    "EmailMarketingService",
    "Erasure",
    "EventHandler",
    "EventName",
    "ExternalBookingEvent",
    "History",
    "HistoryImportService",
    "ImportSummary",
    "LeadMessage",
    "LifecycleService",
    "Member",
    "MergePlan",
    "NoAccess",
    "PersonDetails",
    "PurgeReport",
    "Rejection",
    "RejectionSink",
    "ReminderService",
    "Report",
    "ReportAnswer",
    "ReportLocation",
    "ReportQuery",
    "ReportingService",
    "RescheduleBooking",
    "RescoreWarmness",
    "RuleSpec",
    "SendCampaign",
    "ServiceBase",
    "SmsService",
    "SuppressionService",
    "TaskService",
    "Unset",
    "UnsubscribeLinks",
    "UpdateContact",
    "UpdateLocation",
    "UpdateTask",
    "UpsertExternalBooking",
    "WebhookService",
    "automation_handlers",
    "campaign_handlers",
    "lead_profile",
    "merge_handlers",
    "reminder_handlers",
    "sms_handlers",
    "warmness_handlers",
    "webhook_handlers",
]
