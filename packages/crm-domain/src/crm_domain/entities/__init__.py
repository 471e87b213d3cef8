"""Entities of the CRM: frozen attrs classes, changed with ``attrs.evolve``."""

from crm_domain.entities.audit import AuditEntry, AuditOutcome
from crm_domain.entities.automation import (
    AutomationRule,
    ConditionOp,
    RuleAction,
    RuleActionKind,
    RuleCondition,
)
from crm_domain.entities.booking import OPEN_STATUSES, Booking, BookingStatus
from crm_domain.entities.campaign import (
    AudienceFilter,
    CampaignDelivery,
    CampaignStatus,
    DeliveryStatus,
    EmailCampaign,
)
from crm_domain.entities.contact import Contact, ContactSource, ContactStatus
from crm_domain.entities.events import DomainEvent, OutboxMessage, OutboxStatus
from crm_domain.entities.ip_rule import IpRule
from crm_domain.entities.location import Location, LocationSettings, OpeningHours
from crm_domain.entities.permission import Action, Permission, PermissionConditions, Resource
from crm_domain.entities.session import (
    IdempotencyRecord,
    IdempotencyState,
    Session,
    WebhookReceipt,
)
from crm_domain.entities.sms import SmsDirection, SmsIntent, SmsKind, SmsMessage, SmsStatus
from crm_domain.entities.staff import Effect, Membership, PermissionOverride, Role, StaffUser
from crm_domain.entities.suppression import (
    Suppression,
    SuppressionChannel,
    SuppressionReason,
    normalise_address,
)
from crm_domain.entities.task import Task, TaskPriority, TaskStatus
from crm_domain.entities.touchpoint import Channel, Touchpoint, TouchpointKind

__all__ = [
    "OPEN_STATUSES",
    "Action",
    "AudienceFilter",
    "AuditEntry",
    "AuditOutcome",
    "AutomationRule",
    "Booking",
    "BookingStatus",
    "CampaignDelivery",
    "CampaignStatus",
    "Channel",
    "ConditionOp",
    "Contact",
    "ContactSource",
    "ContactStatus",
    "DeliveryStatus",
    "DomainEvent",
    "Effect",
    "EmailCampaign",
    "IdempotencyRecord",
    "IdempotencyState",
    "IpRule",
    "Location",
    "LocationSettings",
    "Membership",
    "OpeningHours",
    "OutboxMessage",
    "OutboxStatus",
    "Permission",
    "PermissionConditions",
    "PermissionOverride",
    "Resource",
    "Role",
    "RuleAction",
    "RuleActionKind",
    "RuleCondition",
    "Session",
    "SmsDirection",
    "SmsIntent",
    "SmsKind",
    "SmsMessage",
    "SmsStatus",
    "StaffUser",
    "Suppression",
    "SuppressionChannel",
    "SuppressionReason",
    "Task",
    "TaskPriority",
    "TaskStatus",
    "Touchpoint",
    "TouchpointKind",
    "WebhookReceipt",
    "normalise_address",
]
