"""The relational rules every gateway enforces, written down once as data.

The in-memory gateway interprets these tables; SQL gateways are expected to
declare the same keys and foreign keys in their schema, so that both stores
refuse and cascade exactly alike (the conformance kit checks the behaviour).

Deleting a row applies each foreign key that points at it:

* ``restrict`` — the delete is refused with :class:`~crm_domain.errors.Conflict`
  while a referencing row exists (a location that still owns data, a contact
  that still has bookings: bookings are clinical records and are cancelled,
  not erased with the patient).  Every gateway builds that ``Conflict`` with
  :func:`still_referenced` from one count per restricting key
  (:func:`restricting`), so it says the same on every store: ``contact 'c1' is
  still referenced by 3 bookings``, with ``references`` (kind, count) for
  machines.  A location's audit entries restrict its delete too (kind
  :data:`AUDIT_KIND`): the trail is kept for good;
* ``cascade`` — referencing rows are deleted too (a contact's touchpoints, SMS
  and campaign deliveries; a user's memberships and sessions; a campaign's
  deliveries);
* ``set_null`` — the reference is cleared (a task keeps existing when its
  contact, booking or assignee goes away).

A reference to a row that does not exist (or, for ``same_tenant`` keys, exists
only in another location) is refused with
:class:`~crm_domain.errors.ValidationError` naming the column.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal, cast

import attrs

from crm_domain.errors import Conflict, Reference

OnDelete = Literal["restrict", "cascade", "set_null"]


@attrs.frozen(slots=True)
class ForeignKey:
    """``column`` references the primary key of ``parent``."""

    column: str
    parent: str
    on_delete: OnDelete
    #: The parent must belong to the same location as the child (a composite
    #: ``(tenant_id, id)`` key in SQL), so no row can point across tenants.
    same_tenant: bool = False


@attrs.frozen(slots=True)
class Unique:
    """A unique key: ``key(row)`` (``None`` means the row does not take part)."""

    name: str
    key: Callable[[Any], Hashable | None]


@attrs.frozen(slots=True)
class Table:
    """One stored collection: its primary key, unique keys and foreign keys."""

    name: str
    #: Singular noun used in error messages.
    noun: str
    primary_key: Callable[[Any], Hashable]
    #: Scoped to the unit of work's location by ``tenant_id``.
    tenant_owned: bool = False
    uniques: tuple[Unique, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    #: Rows hold mutable containers (dicts), so they are copied in and out.
    mutable: bool = False

    @property
    def kind(self) -> str:
        """The machine name of one row, e.g. ``"booking"``, ``"ip_rule"`` (from :attr:`noun`)."""
        return _kind(self.noun)


def _id(row: Any) -> Hashable:
    return cast("Hashable", row.id)


_TENANT = ForeignKey("tenant_id", "locations", "restrict")

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "locations",
            "location",
            _id,
            uniques=(Unique("code", lambda r: r.code),),
        ),
        Table(
            "users",
            "user",
            _id,
            uniques=(Unique("email", lambda r: r.email),),
        ),
        Table(
            "memberships",
            "membership",
            _id,
            uniques=(Unique("user_id, location_id", lambda r: (r.user_id, r.location_id)),),
            foreign_keys=(
                ForeignKey("user_id", "users", "cascade"),
                ForeignKey("location_id", "locations", "restrict"),
            ),
        ),
        Table(
            "permissions",
            "permission",
            _id,
            uniques=(
                Unique(
                    "role, resource, action",
                    lambda r: (r.role.value, r.resource.value, r.action.value),
                ),
            ),
        ),
        Table(
            "sessions",
            "session",
            _id,
            foreign_keys=(
                ForeignKey("user_id", "users", "cascade"),
                ForeignKey("location_id", "locations", "restrict"),
            ),
        ),
        Table(
            "webhook_receipts",
            "webhook receipt",
            lambda r: (r.source, r.event_id),
        ),
        Table(
            "ip_rules",
            "IP rule",
            _id,
            tenant_owned=True,
            uniques=(Unique("tenant_id, cidr", lambda r: (r.tenant_id, r.cidr)),),
            foreign_keys=(_TENANT,),
        ),
        Table("contacts", "contact", _id, tenant_owned=True, foreign_keys=(_TENANT,)),
        Table(
            "campaigns",
            "campaign",
            _id,
            tenant_owned=True,
            foreign_keys=(_TENANT,),
        ),
        Table(
            "touchpoints",
            "touchpoint",
            _id,
            tenant_owned=True,
            mutable=True,
            foreign_keys=(
                _TENANT,
                ForeignKey("contact_id", "contacts", "cascade", same_tenant=True),
                ForeignKey("campaign_id", "campaigns", "set_null", same_tenant=True),
            ),
        ),
        Table(
            "bookings",
            "booking",
            _id,
            tenant_owned=True,
            uniques=(
                Unique(
                    "tenant_id, external_id",
                    lambda r: None if r.external_id is None else (r.tenant_id, r.external_id),
                ),
            ),
            foreign_keys=(
                _TENANT,
                ForeignKey("contact_id", "contacts", "restrict", same_tenant=True),
            ),
        ),
        Table(
            "tasks",
            "task",
            _id,
            tenant_owned=True,
            foreign_keys=(
                _TENANT,
                ForeignKey("contact_id", "contacts", "set_null", same_tenant=True),
                ForeignKey("booking_id", "bookings", "set_null", same_tenant=True),
                ForeignKey("assignee_id", "users", "set_null"),
            ),
        ),
        Table(
            "sms",
            "SMS message",
            _id,
            tenant_owned=True,
            foreign_keys=(
                _TENANT,
                ForeignKey("contact_id", "contacts", "cascade", same_tenant=True),
                ForeignKey("booking_id", "bookings", "set_null", same_tenant=True),
            ),
        ),
        Table(
            "deliveries",
            "delivery",
            _id,
            tenant_owned=True,
            uniques=(Unique("campaign_id, contact_id", lambda r: (r.campaign_id, r.contact_id)),),
            foreign_keys=(
                _TENANT,
                ForeignKey("campaign_id", "campaigns", "cascade", same_tenant=True),
                ForeignKey("contact_id", "contacts", "cascade", same_tenant=True),
            ),
        ),
        Table(
            "automations",
            "automation rule",
            _id,
            tenant_owned=True,
            mutable=True,
            foreign_keys=(_TENANT,),
        ),
        Table(
            "suppressions",
            "suppression",
            _id,
            tenant_owned=True,
            uniques=(
                Unique(
                    "tenant_id, channel, address",
                    lambda r: (r.tenant_id, r.channel.value, r.address),
                ),
            ),
            foreign_keys=(_TENANT,),
        ),
        Table(
            "idempotency",
            "idempotency record",
            lambda r: (r.tenant_id, r.key, r.user_id),
            tenant_owned=True,
            foreign_keys=(_TENANT,),
        ),
        Table(
            "outbox",
            "outbox message",
            lambda r: r.event.id,
            mutable=True,
        ),
    )
}


def referencing(parent: str) -> list[tuple[Table, ForeignKey]]:
    """Every (child table, foreign key) that points at ``parent``."""
    return [
        (table, fk) for table in TABLES.values() for fk in table.foreign_keys if fk.parent == parent
    ]


def restricting(parent: str) -> list[tuple[Table, ForeignKey]]:
    """The ``restrict`` keys pointing at ``parent``, in rule order: what a gateway counts."""
    return [(table, fk) for table, fk in referencing(parent) if fk.on_delete == "restrict"]


#: The kind under which a location's audit entries are reported as references.
AUDIT_KIND = "audit_entry"
_AUDIT_NOUN = "audit entry"


def still_referenced(parent: str, key: object, counts: Sequence[tuple[str, int]]) -> Conflict:
    """The ``Conflict`` refusing to delete row ``key`` of ``parent`` while others refer to it.

    ``counts`` are (kind, count) pairs — one per :func:`restricting` key, plus
    :data:`AUDIT_KIND` for a location — in that order; zero counts are left out.
    Every gateway raises this, so the refusal reads the same on every store.
    """
    references = tuple(Reference(kind, n) for kind, n in counts if n > 0)
    noun = TABLES[parent].noun
    shown = key[0] if isinstance(key, tuple) and len(key) == 1 else key
    if not references:
        # A cascade further down met a restrict of its own: say so without counts.
        return Conflict(f"{noun} {shown!r} is still referenced by other records")
    nouns = {t.kind: t.noun for t in TABLES.values()} | {AUDIT_KIND: _AUDIT_NOUN}
    parts = [_counted(r.count, nouns.get(r.kind, r.kind)) for r in references]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    hint = (
        "; audit entries are kept for good"
        if any(r.kind == AUDIT_KIND for r in references)
        else "; delete or move those first"
    )
    return Conflict(
        f"{noun} {shown!r} is still referenced by {listed}{hint}", references=references
    )


def _kind(noun: str) -> str:
    return noun.lower().replace(" ", "_")


def _counted(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    plural = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"
    return f"{count} {plural}"


__all__ = [
    "AUDIT_KIND",
    "TABLES",
    "ForeignKey",
    "OnDelete",
    "Table",
    "Unique",
    "referencing",
    "restricting",
    "still_referenced",
]
