"""Names of the domain events the services emit (past tense).

Payloads hold ids and non-PHI facts (status, source, warmness, times); a
consumer that needs more loads the aggregate by id.  Every payload also
carries ``actor_user_id`` and ``request_id``.
"""

from __future__ import annotations

import enum


class EventName(enum.StrEnum):
    """Every event a core service emits; ``DomainEvent.name`` is the value."""

    CONTACT_CREATED = "ContactCreated"
    CONTACT_UPDATED = "ContactUpdated"
    CONTACT_DELETED = "ContactDeleted"
    CONTACT_WARMNESS_CHANGED = "ContactWarmnessChanged"
    TOUCHPOINT_ADDED = "TouchpointAdded"
    BOOKING_CREATED = "BookingCreated"
    BOOKING_RESCHEDULED = "BookingRescheduled"
    BOOKING_CONFIRMED = "BookingConfirmed"
    BOOKING_CANCELLED = "BookingCancelled"
    BOOKING_MARKED_NO_SHOW = "BookingMarkedNoShow"
    BOOKING_COMPLETED = "BookingCompleted"
    TASK_CREATED = "TaskCreated"
    TASK_UPDATED = "TaskUpdated"
    TASK_COMPLETED = "TaskCompleted"
    TASK_DELETED = "TaskDeleted"
    SMS_RECEIVED = "SmsReceived"
    SMS_SENT = "SmsSent"
    SMS_QUEUED = "SmsQueued"
    SMS_FAILED = "SmsFailed"
    LOCATION_CREATED = "LocationCreated"
    LOCATION_UPDATED = "LocationUpdated"
    MEMBERSHIP_GRANTED = "MembershipGranted"
    MEMBERSHIP_DEACTIVATED = "MembershipDeactivated"
    IP_RULE_ADDED = "IpRuleAdded"
    IP_RULE_REMOVED = "IpRuleRemoved"
    CONTACTS_IMPORTED = "ContactsImported"
    HISTORY_IMPORTED = "HistoryImported"
    CONTACTS_MERGED = "ContactsMerged"
    CONTACT_ERASED = "ContactErased"
    CAMPAIGN_CREATED = "CampaignCreated"
    CAMPAIGN_UPDATED = "CampaignUpdated"
    CAMPAIGN_SCHEDULED = "CampaignScheduled"
    CAMPAIGN_SENDING = "CampaignSending"
    CAMPAIGN_PAUSED = "CampaignPaused"
    CAMPAIGN_CANCELLED = "CampaignCancelled"
    CAMPAIGN_COMPLETED = "CampaignCompleted"
    SUPPRESSION_ADDED = "SuppressionAdded"
    SUPPRESSION_REMOVED = "SuppressionRemoved"
    #: Scheduled: dated at a campaign's ``scheduled_at`` (the outbox holds it until then).
    CAMPAIGN_DUE = "CampaignDue"
    #: Scheduled: dated when a booking's SMS reminder is due (the outbox holds it until then).
    BOOKING_REMINDER_DUE = "BookingReminderDue"


__all__ = ["EventName"]
