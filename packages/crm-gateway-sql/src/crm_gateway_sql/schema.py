"""The CRM's tables as SQLAlchemy Core ``MetaData`` (no ORM).

This module is public and stable: the D1 gateway compiles the same tables with
the SQLite dialect, and the Alembic baseline was generated from it.  A change
here needs a new migration revision.

Storage conventions (chosen so that one set of statements and row mappings
works unchanged on SQLite, PostgreSQL and D1, with no dialect type processing):

* ids are text (ULIDs); lists are keyset-paginated on ``(tenant_id, id DESC)``;
* timestamps are ``BIGINT`` microseconds since the Unix epoch, UTC — ordered,
  exact, and the same number on every engine (the seed used integers too);
* dates are ISO ``YYYY-MM-DD`` text; booleans are ``BOOLEAN`` (0/1 on SQLite);
* nested values (settings, tags, payloads) are JSON text.

Every tenant-owned table has a non-null ``tenant_id`` referencing
``locations.id``; :data:`TENANT_TABLES` lists them (row-level security on
PostgreSQL is enabled for exactly these).
"""

from __future__ import annotations

import sqlalchemy as sa

#: Naming convention so constraint names are stable across engines and migrations.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

ID = sa.String(64)
#: Microseconds since the epoch, UTC.
TIMESTAMP = sa.BigInteger()


def _id(primary_key: bool = True) -> sa.Column[str]:
    return sa.Column("id", ID, primary_key=primary_key)


def _scoped_set_null(name: str, parent: str) -> sa.ForeignKeyConstraint:
    """A same-location reference that is cleared when its target is deleted.

    ``(tenant_id, x_id)`` cannot be the key: ``ON DELETE SET NULL`` would clear
    ``tenant_id`` too (SQLite has no column list for it).  So the row carries
    ``x_scope`` — its own tenant id while ``x_id`` is set, else NULL — and
    ``(x_scope, x_id)`` references ``(tenant_id, id)`` of the target: a reference
    across locations cannot resolve, and deleting the target nulls both.
    """
    return sa.ForeignKeyConstraint(
        [f"{name}_scope", f"{name}_id"],
        [f"{parent}.tenant_id", f"{parent}.id"],
        ondelete="SET NULL",
    )


def _tenant() -> sa.Column[str]:
    return sa.Column(
        "tenant_id", ID, sa.ForeignKey("locations.id", ondelete="RESTRICT"), nullable=False
    )


locations = sa.Table(
    "locations",
    metadata,
    _id(),
    sa.Column("code", sa.String(32), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("address", sa.String(500)),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("settings", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
)

staff_users = sa.Table(
    "staff_users",
    metadata,
    _id(),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("google_sub", sa.String(255)),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("last_login_at", TIMESTAMP),
)

permissions = sa.Table(
    "permissions",
    metadata,
    _id(),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("resource", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("conditions", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.UniqueConstraint("role", "resource", "action"),
)

#: Memberships (the seed's name): a user's role at one location.
user_permissions = sa.Table(
    "user_permissions",
    metadata,
    _id(),
    sa.Column("user_id", ID, sa.ForeignKey("staff_users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("location_id", ID, sa.ForeignKey("locations.id"), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("custom_permissions", sa.Text, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.UniqueConstraint("user_id", "location_id"),
    sa.Index(None, "location_id", "id"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    _id(),
    sa.Column("user_id", ID, sa.ForeignKey("staff_users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("location_id", ID, sa.ForeignKey("locations.id")),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("last_seen_at", TIMESTAMP, nullable=False),
    sa.Column("expires_at", TIMESTAMP, nullable=False),
    sa.Column("revoked_at", TIMESTAMP),
    sa.Index(None, "user_id"),
)

processed_webhook_events = sa.Table(
    "processed_webhook_events",
    metadata,
    sa.Column("source", sa.String(50), primary_key=True),
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("tenant_id", ID),
    sa.Column("received_at", TIMESTAMP, nullable=False),
)

ip_whitelist = sa.Table(
    "ip_whitelist",
    metadata,
    _id(),
    _tenant(),
    sa.Column("cidr", sa.String(64), nullable=False),
    sa.Column("ip_version", sa.SmallInteger, nullable=False),
    sa.Column("description", sa.String(500)),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.UniqueConstraint("tenant_id", "cidr"),
    sa.Index(None, "tenant_id", "id"),
)

contacts = sa.Table(
    "contacts",
    metadata,
    _id(),
    _tenant(),
    sa.Column("first_name", sa.String(100), nullable=False),
    sa.Column("last_name", sa.String(100), nullable=False),
    sa.Column("email", sa.String(320)),
    sa.Column("phone", sa.String(32)),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("warmness", sa.SmallInteger, nullable=False),
    sa.Column("warmness_reasons", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("email_opt_in", sa.Boolean, nullable=False),
    sa.Column("sms_opt_in", sa.Boolean, nullable=False),
    sa.Column("consent_updated_at", TIMESTAMP),
    sa.Column("service_interest", sa.String(100)),
    sa.Column("date_of_birth", sa.String(10)),
    sa.Column("notes", sa.Text),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    # (tenant_id, id) serves the keyset list and is the target of child tables'
    # composite foreign keys, which stop a row pointing at another location's contact.
    sa.UniqueConstraint("tenant_id", "id"),
    sa.Index(None, "tenant_id", "status", "id"),
    sa.Index(None, "tenant_id", "source", "id"),
    sa.Index(None, "tenant_id", "email"),
    sa.Index(None, "tenant_id", "phone"),
    sa.Index(None, "tenant_id", "created_at"),
)

email_campaigns = sa.Table(
    "email_campaigns",
    metadata,
    _id(),
    _tenant(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Column("body_html", sa.Text, nullable=False),
    sa.Column("body_text", sa.Text, nullable=False),
    sa.Column("audience", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("scheduled_at", TIMESTAMP),
    sa.Column("sent_count", sa.Integer, nullable=False),
    sa.Column("opened_count", sa.Integer, nullable=False),
    sa.Column("clicked_count", sa.Integer, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.UniqueConstraint("tenant_id", "id"),
    sa.Index(None, "tenant_id", "status", "id"),
)

touchpoints = sa.Table(
    "touchpoints",
    metadata,
    _id(),
    _tenant(),
    sa.Column("contact_id", ID, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("occurred_at", TIMESTAMP, nullable=False),
    sa.Column("campaign_id", ID),
    sa.Column("campaign_scope", ID),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(
        ["tenant_id", "contact_id"], ["contacts.tenant_id", "contacts.id"], ondelete="CASCADE"
    ),
    _scoped_set_null("campaign", "email_campaigns"),
    sa.UniqueConstraint("tenant_id", "id"),
    sa.Index(None, "tenant_id", "contact_id", "id"),
    sa.Index(None, "tenant_id", "kind", "id"),
    sa.Index(None, "tenant_id", "campaign_id"),
    sa.Index(None, "tenant_id", "occurred_at"),
)

bookings = sa.Table(
    "bookings",
    metadata,
    _id(),
    _tenant(),
    sa.Column("contact_id", ID, nullable=False),
    sa.Column("service_type", sa.String(100), nullable=False),
    sa.Column("starts_at", TIMESTAMP, nullable=False),
    sa.Column("ends_at", TIMESTAMP, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("external_id", sa.String(255)),
    sa.Column("source", sa.String(50), nullable=False),
    sa.Column("notes", sa.Text),
    sa.Column("cancellation_reason", sa.String(500)),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.Column("external_updated_at", TIMESTAMP),
    sa.ForeignKeyConstraint(["tenant_id", "contact_id"], ["contacts.tenant_id", "contacts.id"]),
    sa.UniqueConstraint("tenant_id", "id"),
    # NULLs are distinct in a unique index on both engines: only set ids collide.
    sa.UniqueConstraint("tenant_id", "external_id"),
    sa.Index(None, "tenant_id", "contact_id", "id"),
    sa.Index(None, "tenant_id", "status", "id"),
    sa.Index(None, "tenant_id", "starts_at"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    _id(),
    _tenant(),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("contact_id", ID),
    sa.Column("contact_scope", ID),
    sa.Column("booking_id", ID),
    sa.Column("booking_scope", ID),
    sa.Column("assignee_id", ID, sa.ForeignKey("staff_users.id", ondelete="SET NULL")),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("priority", sa.String(32), nullable=False),
    sa.Column("due_at", TIMESTAMP),
    sa.Column("completed_at", TIMESTAMP),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    _scoped_set_null("contact", "contacts"),
    _scoped_set_null("booking", "bookings"),
    sa.Index(None, "tenant_id", "id"),
    sa.Index(None, "tenant_id", "status", "id"),
    sa.Index(None, "tenant_id", "assignee_id", "id"),
    sa.Index(None, "tenant_id", "contact_id"),
    sa.Index(None, "tenant_id", "booking_id"),
    sa.Index(None, "tenant_id", "created_at"),
)

sms_messages = sa.Table(
    "sms_messages",
    metadata,
    _id(),
    _tenant(),
    sa.Column("contact_id", ID),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("from_number", sa.String(32), nullable=False),
    sa.Column("to_number", sa.String(32), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("provider", sa.String(50)),
    sa.Column("provider_message_id", sa.String(255)),
    sa.Column("intent", sa.String(16)),
    sa.Column("intent_confidence", sa.Float),
    sa.Column("booking_id", ID),
    sa.Column("booking_scope", ID),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("sent_at", TIMESTAMP),
    sa.Column("error", sa.String(500)),
    sa.ForeignKeyConstraint(
        ["tenant_id", "contact_id"], ["contacts.tenant_id", "contacts.id"], ondelete="CASCADE"
    ),
    _scoped_set_null("booking", "bookings"),
    sa.Index(None, "tenant_id", "id"),
    sa.Index(None, "tenant_id", "contact_id", "id"),
    sa.Index(None, "tenant_id", "provider_message_id"),
    sa.Index(None, "tenant_id", "direction", "created_at"),
)

campaign_deliveries = sa.Table(
    "campaign_deliveries",
    metadata,
    _id(),
    _tenant(),
    sa.Column("campaign_id", ID, nullable=False),
    sa.Column("contact_id", ID, nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("provider_message_id", sa.String(255)),
    sa.Column("error", sa.Text),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("sent_at", TIMESTAMP),
    sa.Column("opened_at", TIMESTAMP),
    sa.Column("clicked_at", TIMESTAMP),
    sa.ForeignKeyConstraint(
        ["tenant_id", "campaign_id"],
        ["email_campaigns.tenant_id", "email_campaigns.id"],
        ondelete="CASCADE",
    ),
    sa.ForeignKeyConstraint(
        ["tenant_id", "contact_id"], ["contacts.tenant_id", "contacts.id"], ondelete="CASCADE"
    ),
    sa.UniqueConstraint("campaign_id", "contact_id"),
    sa.Index(None, "tenant_id", "id"),
    sa.Index(None, "tenant_id", "campaign_id", "id"),
    sa.Index(None, "tenant_id", "contact_id", "id"),
)

automation_rules = sa.Table(
    "automation_rules",
    metadata,
    _id(),
    _tenant(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("trigger", sa.String(100), nullable=False),
    sa.Column("conditions", sa.Text, nullable=False),
    sa.Column("actions", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.Index(None, "tenant_id", "id"),
    sa.Index(None, "tenant_id", "trigger", "enabled"),
)

#: A location's suppression list: addresses never to text or email, whatever the
#: contacts say (kept when a contact is deleted, merged or created again).
suppressions = sa.Table(
    "suppressions",
    metadata,
    _id(),
    _tenant(),
    sa.Column("channel", sa.String(16), nullable=False),
    # E.164 for sms, a lower-cased email address for email.
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("note", sa.String(500)),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    # The send-time check looks an address up by this key.
    sa.UniqueConstraint("tenant_id", "channel", "address"),
    sa.Index(None, "tenant_id", "id"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    # The key space is per location and user: both are part of the primary key.
    sa.Column("tenant_id", ID, sa.ForeignKey("locations.id"), primary_key=True),
    sa.Column("user_id", ID, primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_fingerprint", sa.String(128), nullable=False),
    # "pending" (reserved, no answer yet: the three answer columns are NULL) or "completed".
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("response_body", sa.Text),
    # When the key was reserved: a pending reservation older than a bound may be taken over.
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("completed_at", TIMESTAMP),
)

#: The transactional outbox.  ``tenant_id`` is nullable: system events have none.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("event_id", ID, primary_key=True),
    sa.Column("tenant_id", ID),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("aggregate_type", sa.String(64), nullable=False),
    sa.Column("aggregate_id", ID, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("occurred_at", TIMESTAMP, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("available_at", TIMESTAMP, nullable=False),
    sa.Column("claimed_until", TIMESTAMP),
    sa.Column("last_error", sa.Text),
    # The claim and status queries: by status, oldest event (lowest ULID) first.
    sa.Index(None, "status", "event_id"),
)

#: The HIPAA audit trail.  ``chain`` is the tenant id, or ``""`` for the system
#: chain (entries with no location), so ``(chain, sequence)`` can be unique.
hipaa_audit_log = sa.Table(
    "hipaa_audit_log",
    metadata,
    _id(),
    sa.Column("chain", ID, nullable=False),
    # A location with audit entries cannot be deleted: the trail is kept for good.
    sa.Column("tenant_id", ID, sa.ForeignKey("locations.id", ondelete="RESTRICT")),
    sa.Column("user_id", ID),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("resource_type", sa.String(64), nullable=False),
    sa.Column("resource_id", sa.String(255)),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("ip_address", sa.String(64)),
    sa.Column("user_agent", sa.String(500)),
    sa.Column("request_id", sa.String(64)),
    sa.Column("request_method", sa.String(16)),
    sa.Column("request_path", sa.String(2000)),
    sa.Column("status_code", sa.Integer),
    sa.Column("duration_ms", sa.Integer),
    sa.Column("detail", sa.String(2000)),
    sa.Column("occurred_at", TIMESTAMP, nullable=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("chain", "sequence"),
    sa.Index(None, "tenant_id", "id"),
    sa.Index(None, "tenant_id", "user_id", "id"),
    sa.Index(None, "tenant_id", "resource_type", "resource_id"),
    sa.Index(None, "tenant_id", "occurred_at"),
)

#: Tables whose rows belong to one location (``tenant_id NOT NULL``): every
#: statement on them is scoped by tenant, and PostgreSQL enforces it with RLS.
TENANT_TABLES: tuple[sa.Table, ...] = (
    ip_whitelist,
    contacts,
    email_campaigns,
    touchpoints,
    bookings,
    tasks,
    sms_messages,
    campaign_deliveries,
    automation_rules,
    suppressions,
    idempotency_keys,
)

#: Tables a tenant-bound or system unit of work reach with special RLS policies.
OUTBOX_TABLE = outbox
AUDIT_TABLE = hipaa_audit_log

__all__ = [
    "AUDIT_TABLE",
    "NAMING_CONVENTION",
    "OUTBOX_TABLE",
    "TENANT_TABLES",
    "TIMESTAMP",
    "automation_rules",
    "bookings",
    "campaign_deliveries",
    "contacts",
    "email_campaigns",
    "hipaa_audit_log",
    "idempotency_keys",
    "ip_whitelist",
    "locations",
    "metadata",
    "outbox",
    "permissions",
    "processed_webhook_events",
    "sessions",
    "sms_messages",
    "staff_users",
    "suppressions",
    "tasks",
    "touchpoints",
    "user_permissions",
]
