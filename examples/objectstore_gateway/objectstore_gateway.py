"""A ``DatabaseGateway`` over a plain key-value :class:`~objectstore.ObjectStore`.

The worked example for adapter authors (see README.md).  It passes the
conformance kit, ``crm_domain.testing.GatewayConformance``, unchanged.

Layout of the keys (every value is JSON from :mod:`codec`)::

    t/{table}/{pk}                     a row of a global table (locations, users, …)
    t/{table}/{tenant}/{pk}            a row of a location's table (contacts, …)
    u/{table}/{unique key}/{values}    unique index: points at the row's key
    a/{chain}/{sequence:012d}          the audit chain of a location (or ``~system``)
    a-id/{entry id}                    audit entry id → its chain key
    o/{event id}                       an outbox message

The relational rules (unique keys, foreign keys, what a delete does) are not
re-invented here: they are the data in :data:`crm_domain.memory.TABLES`,
interpreted the way the in-memory reference gateway interprets them.

A unit of work reads through to the store, remembering the version of each
key it read, and buffers its writes over what it read (so it reads its own
writes).  ``commit()`` is ONE :meth:`~objectstore.ObjectStore.put_many`
expecting every written key to still have the version it read (absent keys:
still absent).  So the commit is atomic, and a unit of work that raced
another one fails with ``Conflict`` instead of overwriting it — except for
the audit chain, where losing the race for ``a/{chain}/{n}`` just means
re-linking the buffered entries after the new head and trying again.

Outbox claims are written at once (each one conditional on the version
read), so two consumers never hold the same message; a rollback gives the
leases back.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Hashable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast
from urllib.parse import quote

import attrs
from codec import decode, encode
from crm_domain.audit_chain import chained
from crm_domain.entities import (
    AuditEntry,
    AutomationRule,
    Booking,
    CampaignDelivery,
    Contact,
    DomainEvent,
    EmailCampaign,
    IdempotencyRecord,
    IpRule,
    Location,
    Membership,
    OutboxMessage,
    OutboxStatus,
    Permission,
    Role,
    Session,
    SmsMessage,
    StaffUser,
    Task,
    Touchpoint,
    WebhookReceipt,
)
from crm_domain.entities.session import require_held, require_reservation
from crm_domain.errors import Conflict, NotFound, PermissionDenied, Unavailable, ValidationError
from crm_domain.metrics import compute_metric
from crm_domain.pagination import Page, page_from_rows
from crm_domain.ports.analytics import MetricQuery, MetricRow
from crm_domain.queries import (
    AuditQuery,
    AutomationQuery,
    BookingQuery,
    CampaignQuery,
    ContactQuery,
    DeliveryQuery,
    IpRuleQuery,
    ListQuery,
    LocationQuery,
    MembershipQuery,
    SmsQuery,
    TaskQuery,
    TouchpointQuery,
    UserQuery,
    matches,
)
from crm_domain.relations import AUDIT_KIND, TABLES, ForeignKey, Table, still_referenced
from objectstore import InMemoryObjectStore, ObjectStore, Version, VersionMismatch

E = TypeVar("E")
Q = TypeVar("Q", bound=ListQuery)

#: The entity class stored in each table of the reference rules.
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
    "idempotency": IdempotencyRecord,
}

#: How often a commit re-links its audit entries after losing the race for a chain's head.
CHAIN_RETRIES = 50


def _part(value: Hashable) -> str:
    if isinstance(value, tuple):
        return "/".join(quote(str(v), safe="") for v in value)
    return quote(str(value), safe="")


def row_prefix(table: Table, tenant: str | None) -> str:
    """Where the rows of ``table`` live (a location's rows when ``tenant`` is given)."""
    if table.tenant_owned and tenant is not None:
        return f"t/{table.name}/{_part(tenant)}/"
    return f"t/{table.name}/"


def row_key(table: Table, pk: Hashable, tenant: str | None) -> str:
    """The key of one row (``tenant`` is the row's location for tenant-owned tables)."""
    return row_prefix(table, tenant) + _part(pk)


def _index_keys(table: Table, entity: Any) -> list[str]:
    return [
        f"u/{table.name}/{_part(u.name)}/{_part(value)}"
        for u in table.uniques
        if (value := u.key(entity)) is not None
    ]


def _scope(fk: ForeignKey, pk: Hashable, tenant: str | None) -> str | None:
    # A location's children all live under its own prefix.
    return cast(
        "str | None", pk if fk.column == "tenant_id" else (tenant if fk.same_tenant else None)
    )


def _chain_prefix(tenant: str | None) -> str:
    return f"a/{_part(tenant) if tenant is not None else '~system'}/"


def _cut_page(rows: list[Any], query: ListQuery) -> Page[Any]:
    rows.sort(key=lambda r: r.id, reverse=True)
    after = query.after_id
    if after is not None:
        rows = [r for r in rows if r.id < after]
    return page_from_rows(rows[: query.limit + 1], query.limit)


class ObjectStoreUnitOfWork:
    """Reads through to the store, buffers writes, commits with one ``put_many``."""

    def __init__(self, gateway: ObjectStoreGateway, tenant_id: str | None) -> None:
        self.tenant_id = tenant_id
        self._gateway = gateway
        self._store = gateway.store
        self._read: dict[str, Version | None] = {}
        self._writes: dict[str, bytes | None] = {}
        self._audit: list[AuditEntry] = []
        self._leases: dict[str, tuple[bytes, OutboxMessage]] = {}
        self._locations = _Locations(self, "locations")
        self._users = _Users(self, "users")
        self._memberships = _Memberships(self, "memberships")
        self._permissions = _Permissions(self)
        self._sessions = _Sessions(self)
        self._webhook_receipts = _WebhookReceipts(self)
        self._ip_rules = _IpRules(self, "ip_rules")
        self._contacts = _Contacts(self, "contacts")
        self._touchpoints: _Repo[Touchpoint, TouchpointQuery] = _Repo(self, "touchpoints")
        self._bookings = _Bookings(self, "bookings")
        self._tasks: _Repo[Task, TaskQuery] = _Repo(self, "tasks")
        self._sms: _Repo[SmsMessage, SmsQuery] = _Repo(self, "sms")
        self._campaigns: _Repo[EmailCampaign, CampaignQuery] = _Repo(self, "campaigns")
        self._deliveries: _Repo[CampaignDelivery, DeliveryQuery] = _Repo(self, "deliveries")
        self._automations: _Repo[AutomationRule, AutomationQuery] = _Repo(self, "automations")
        self._idempotency = _Idempotency(self)
        self._audit_repo = _Audit(self)
        self._analytics = _Analytics(self)
        self._outbox_repo = _Outbox(self)

    # -- reading through the buffer -------------------------------------------------

    def _check_open(self) -> None:
        if self._gateway.closed:
            raise Unavailable("the object store gateway is closed")

    async def load(self, key: str) -> bytes | None:
        """The value of ``key`` as this unit of work sees it (remembering its version)."""
        self._check_open()
        if key in self._writes:
            return self._writes[key]
        found = await self._store.get(key)
        self._read.setdefault(key, None if found is None else found[1])
        return None if found is None else found[0]

    async def keys(self, prefix: str) -> list[str]:
        """Keys with ``prefix`` as this unit of work sees them."""
        self._check_open()
        stored = set(await self._store.list(prefix))
        for key, value in self._writes.items():
            if key.startswith(prefix):
                if value is None:
                    stored.discard(key)
                else:
                    stored.add(key)
        return sorted(stored)

    def write(self, key: str, value: bytes | None) -> None:
        """Buffer a write (``None`` deletes); ``load`` the key first so commit can check it."""
        assert key in self._read or key in self._writes, f"write of unread key {key}"
        self._writes[key] = value

    async def row(self, name: str, pk: Hashable, tenant: str | None) -> Any | None:
        """One row of a reference table, or ``None``."""
        value = await self.load(row_key(TABLES[name], pk, tenant))
        return None if value is None else decode(ENTITIES[name], value)

    async def rows(self, name: str, tenant: str | None) -> list[Any]:
        """Every row of a table (of one location when ``tenant`` is given)."""
        out = []
        for key in await self.keys(row_prefix(TABLES[name], tenant)):
            value = await self.load(key)
            if value is not None:
                out.append(decode(ENTITIES[name], value))
        return out

    def _require_tenant(self) -> str:
        if self.tenant_id is None:
            raise PermissionDenied("this repository needs a unit of work bound to a location")
        return self.tenant_id

    # -- writing with the reference rules -------------------------------------------

    def _key_of(self, table: Table, entity: Any) -> str:
        tenant = entity.tenant_id if table.tenant_owned else None
        return row_key(table, table.primary_key(entity), tenant)

    async def validate(self, table: Table, entity: Any) -> None:
        """Unique keys (through the index) and foreign keys, as the reference does."""
        own = self._key_of(table, entity)
        for unique, index in zip(
            [u for u in table.uniques if u.key(entity) is not None],
            _index_keys(table, entity),
            strict=True,
        ):
            holder = await self.load(index)
            if holder is not None and holder.decode() != own:
                raise Conflict(f"a {table.noun} with this {unique.name} already exists")
        for fk in table.foreign_keys:
            ref = getattr(entity, fk.column)
            if ref is None:
                continue
            tenant = entity.tenant_id if fk.same_tenant else None
            if await self.row(fk.parent, ref, tenant) is None:
                where = " in this location" if fk.same_tenant else ""
                raise ValidationError(fk.column, f"no {TABLES[fk.parent].noun} {ref!r}{where}")

    async def insert(self, name: str, entity: Any) -> None:
        """Add a row: ``Conflict`` on a taken key, ``ValidationError`` on a bad reference."""
        table = TABLES[name]
        key = self._key_of(table, entity)
        if await self.load(key) is not None:
            raise Conflict(f"a {table.noun} with id {table.primary_key(entity)!r} already exists")
        await self.validate(table, entity)
        self.write(key, encode(entity))
        for index in _index_keys(table, entity):
            self.write(index, key.encode())

    async def update(self, name: str, entity: Any) -> None:
        """Replace a row, moving its unique-index entries."""
        table = TABLES[name]
        key = self._key_of(table, entity)
        old_value = await self.load(key)
        if old_value is None:
            raise NotFound(f"{table.noun} {table.primary_key(entity)!r} not found")
        await self.validate(table, entity)
        old = decode(ENTITIES[name], old_value)
        new_indexes = _index_keys(table, entity)
        for index in _index_keys(table, old):
            if index not in new_indexes:
                await self.load(index)
                self.write(index, None)
        for index in new_indexes:
            self.write(index, key.encode())
        self.write(key, encode(entity))

    async def delete(self, name: str, pk: Hashable, tenant: str | None) -> None:
        """Delete a row applying every referencing key's rule, all or nothing."""
        saved = (dict(self._writes), list(self._audit))
        try:
            await self._delete(TABLES[name], pk, tenant)
        except BaseException:
            self._writes, self._audit = saved
            raise

    async def _delete(self, table: Table, pk: Hashable, tenant: str | None) -> None:
        entity = await self.row(table.name, pk, tenant)
        if entity is None:
            raise NotFound(f"{table.noun} {pk!r} not found")
        referring = [
            (child, fk)
            for child in TABLES.values()
            for fk in child.foreign_keys
            if fk.parent == table.name and child.name in ENTITIES
        ]
        # Restricting keys first, all counted, so the refusal names every kind
        # that still refers (an object store has no COUNT: the rows are listed).
        counts: list[tuple[str, int]] = []
        for child, fk in referring:
            if fk.on_delete == "restrict":
                rows = await self.rows(child.name, _scope(fk, pk, tenant))
                counts.append((child.kind, sum(1 for r in rows if getattr(r, fk.column) == pk)))
        if table.name == "locations":
            stored = len(await self.keys(_chain_prefix(str(pk))))
            counts.append((AUDIT_KIND, stored + sum(1 for e in self._audit if e.tenant_id == pk)))
        if any(n for _, n in counts):
            raise still_referenced(table.name, pk, counts)
        for child, fk in referring:
            if fk.on_delete == "restrict":
                continue
            for row in await self.rows(child.name, _scope(fk, pk, tenant)):
                if getattr(row, fk.column) != pk:
                    continue
                row_tenant = row.tenant_id if child.tenant_owned else None
                if fk.on_delete == "cascade":
                    await self._delete(child, child.primary_key(row), row_tenant)
                else:
                    await self.update(child.name, attrs.evolve(row, **{fk.column: None}))
        for index in _index_keys(table, entity):
            await self.load(index)
            self.write(index, None)
        self.write(row_key(table, pk, tenant), None)

    # -- audit chain ------------------------------------------------------------------

    async def chain_head(self, tenant: str | None) -> AuditEntry | None:
        """The last entry of a chain, buffered ones included."""
        for entry in reversed(self._audit):
            if entry.tenant_id == tenant:
                return entry
        keys = await self._store.list(_chain_prefix(tenant))
        if not keys:
            return None
        found = await self._store.get(keys[-1])
        return None if found is None else decode(AuditEntry, found[0])

    async def chain_entries(self, tenant: str | None) -> list[AuditEntry]:
        """A chain in sequence order, buffered entries included."""
        out = []
        for key in await self._store.list(_chain_prefix(tenant)):
            found = await self._store.get(key)
            if found is not None:
                out.append(decode(AuditEntry, found[0]))
        return out + [e for e in self._audit if e.tenant_id == tenant]

    def _audit_writes(self) -> tuple[dict[str, bytes | None], dict[str, Version | None]]:
        writes: dict[str, bytes | None] = {}
        expect: dict[str, Version | None] = {}
        for entry in self._audit:
            key = f"{_chain_prefix(entry.tenant_id)}{entry.sequence:012d}"
            writes[key] = encode(entry)
            writes[f"a-id/{_part(entry.id)}"] = key.encode()
            expect[key] = None
            expect[f"a-id/{_part(entry.id)}"] = None
        return writes, expect

    async def _relink(self) -> None:
        heads: dict[str | None, AuditEntry | None] = {}
        relinked = []
        for entry in self._audit:
            if entry.tenant_id not in heads:
                keys = await self._store.list(_chain_prefix(entry.tenant_id))
                found = await self._store.get(keys[-1]) if keys else None
                heads[entry.tenant_id] = None if found is None else decode(AuditEntry, found[0])
            stored = chained(entry, heads[entry.tenant_id])
            heads[entry.tenant_id] = stored
            relinked.append(stored)
        self._audit = relinked

    # -- commit -------------------------------------------------------------------------

    async def commit(self) -> None:
        """Write everything at once, if nothing this unit of work read has changed."""
        self._check_open()
        try:
            expect = {key: self._read.get(key) for key in self._writes}
            for attempt in range(CHAIN_RETRIES + 1):
                audit_writes, audit_expect = self._audit_writes()
                changes = {**self._writes, **audit_writes}
                if not changes:
                    break
                try:
                    await self._store.put_many(changes, {**expect, **audit_expect})
                    break
                except VersionMismatch as exc:
                    chain_race = all(k.startswith("a/") for k in exc.keys)
                    if not chain_race or attempt == CHAIN_RETRIES:
                        raise Conflict(
                            f"changed by a concurrent unit of work: {', '.join(exc.keys)}"
                        ) from None
                    await self._relink()
        except BaseException:
            await self.rollback()
            raise
        self._leases.clear()
        self._clear()

    def _clear(self) -> None:
        self._read = {}
        self._writes = {}
        self._audit = []

    async def rollback(self) -> None:
        """Discard the buffer and give back outbox leases taken by this unit of work."""
        self._clear()
        leases, self._leases = self._leases, {}
        for key, (previous, leased) in leases.items():
            found = await self._store.get(key)
            if found is not None and decode(OutboxMessage, found[0]) == leased:
                # If someone took the lapsed lease meanwhile, it is theirs now.
                with contextlib.suppress(VersionMismatch):
                    await self._store.put_many({key: previous}, {key: found[1]})

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()

    # -- repositories -----------------------------------------------------------------

    @property
    def locations(self) -> _Locations:
        """Locations (global)."""
        return self._locations

    @property
    def users(self) -> _Users:
        """Staff users (global)."""
        return self._users

    @property
    def memberships(self) -> _Memberships:
        """Memberships (global)."""
        return self._memberships

    @property
    def permissions(self) -> _Permissions:
        """Role grants (global)."""
        return self._permissions

    @property
    def sessions(self) -> _Sessions:
        """Sessions (global)."""
        return self._sessions

    @property
    def webhook_receipts(self) -> _WebhookReceipts:
        """Processed webhook events (global)."""
        return self._webhook_receipts

    @property
    def ip_rules(self) -> _IpRules:
        """The location's IP allowlist."""
        return self._ip_rules

    @property
    def contacts(self) -> _Contacts:
        """The location's contacts."""
        return self._contacts

    @property
    def touchpoints(self) -> _Repo[Touchpoint, TouchpointQuery]:
        """The location's touchpoints."""
        return self._touchpoints

    @property
    def bookings(self) -> _Bookings:
        """The location's bookings."""
        return self._bookings

    @property
    def tasks(self) -> _Repo[Task, TaskQuery]:
        """The location's tasks."""
        return self._tasks

    @property
    def sms(self) -> _Repo[SmsMessage, SmsQuery]:
        """The location's SMS messages."""
        return self._sms

    @property
    def campaigns(self) -> _Repo[EmailCampaign, CampaignQuery]:
        """The location's email campaigns."""
        return self._campaigns

    @property
    def deliveries(self) -> _Repo[CampaignDelivery, DeliveryQuery]:
        """The location's campaign deliveries."""
        return self._deliveries

    @property
    def automations(self) -> _Repo[AutomationRule, AutomationQuery]:
        """The location's automation rules."""
        return self._automations

    @property
    def idempotency(self) -> _Idempotency:
        """Stored idempotent answers of the location."""
        return self._idempotency

    @property
    def audit(self) -> _Audit:
        """The location's audit chain (the system chain when unbound)."""
        return self._audit_repo

    @property
    def analytics(self) -> _Analytics:
        """Report aggregates of the location."""
        return self._analytics

    @property
    def outbox(self) -> _Outbox:
        """The transactional outbox."""
        return self._outbox_repo


class _Repo(Generic[E, Q]):
    """CRUD over one table; tenant-owned tables are read under the bound location's prefix."""

    def __init__(self, uow: ObjectStoreUnitOfWork, name: str) -> None:
        self._uow = uow
        self._name = name
        self._table = TABLES[name]

    def _scope(self) -> str | None:
        return self._uow._require_tenant() if self._table.tenant_owned else None

    def _check_owner(self, entity: Any) -> None:
        tenant = self._scope()
        if tenant is not None and entity.tenant_id != tenant:
            raise PermissionDenied(f"this {self._table.noun} belongs to another location")

    async def add(self, entity: E) -> None:
        """Insert; ``Conflict`` on a duplicate id or unique key."""
        self._check_owner(entity)
        await self._uow.insert(self._name, entity)

    async def get(self, entity_id: str) -> E:
        """The entity, or ``NotFound`` (also for another location's id)."""
        found = await self._uow.row(self._name, entity_id, self._scope())
        if found is None:
            raise NotFound(f"{self._table.noun} {entity_id!r} not found")
        return cast("E", found)

    async def update(self, entity: E) -> None:
        """Replace the stored entity with the same id."""
        self._check_owner(entity)
        await self.get(cast("Any", entity).id)
        await self._uow.update(self._name, entity)

    async def delete(self, entity_id: str) -> None:
        """Delete, applying the reference rules' on-delete actions."""
        await self._uow.delete(self._name, entity_id, self._scope())

    async def list(self, query: Q) -> Page[E]:
        """One page of matching entities, newest id first."""
        rows = await self._uow.rows(self._name, self._scope())
        return _cut_page([r for r in rows if matches(query, r)], query)

    async def count(self, query: Q) -> int:
        """How many entities match (paging ignored)."""
        return sum(1 for r in await self._uow.rows(self._name, self._scope()) if matches(query, r))

    async def _by_index(self, unique_name: str, value: Hashable, what: str) -> E:
        """Find a row through its unique index."""
        holder = await self._uow.load(f"u/{self._name}/{_part(unique_name)}/{_part(value)}")
        stored = None if holder is None else await self._uow.load(holder.decode())
        if stored is None:
            raise NotFound(f"{self._table.noun} with {what} not found")
        return cast("E", decode(ENTITIES[self._name], stored))


class _Locations(_Repo[Location, LocationQuery]):
    async def get_by_code(self, code: str) -> Location:
        """The location with this code."""
        return await self._by_index("code", code, f"code {code!r}")


class _Users(_Repo[StaffUser, UserQuery]):
    async def get_by_email(self, email: str) -> StaffUser:
        """The user with this email (compared normalised: trimmed, lower-cased)."""
        return await self._by_index("email", email.strip().lower(), "this email")


class _Memberships(_Repo[Membership, MembershipQuery]):
    async def for_user(self, user_id: str) -> Sequence[Membership]:
        """Every membership of the user, ordered by id."""
        rows = await self._uow.rows("memberships", None)
        return sorted((r for r in rows if r.user_id == user_id), key=lambda r: r.id)


class _IpRules(_Repo[IpRule, IpRuleQuery]):
    async def active(self) -> Sequence[IpRule]:
        """The location's active rules, ordered by id."""
        rows = await self._uow.rows("ip_rules", self._uow._require_tenant())
        return sorted((r for r in rows if r.is_active), key=lambda r: r.id)


class _Contacts(_Repo[Contact, ContactQuery]):
    async def add_many(self, contacts: Sequence[Contact]) -> None:
        """Insert all contacts or none."""
        saved = dict(self._uow._writes)
        try:
            for contact in contacts:
                await self.add(contact)
        except BaseException:
            self._uow._writes = saved
            raise


class _Bookings(_Repo[Booking, BookingQuery]):
    async def get_by_external_id(self, external_id: str) -> Booking:
        """The booking with the sender's id."""
        tenant = self._uow._require_tenant()
        return await self._by_index(
            "tenant_id, external_id", (tenant, external_id), "this external id"
        )


class _Permissions:
    def __init__(self, uow: ObjectStoreUnitOfWork) -> None:
        self._uow = uow

    async def add(self, permission: Permission) -> None:
        """Store a grant; ``Conflict`` if the role already has it."""
        await self._uow.insert("permissions", permission)

    async def remove(self, role: Role, resource: str, action: str) -> None:
        """Remove a grant; ``NotFound`` if absent."""
        wanted = (Role(role).value, str(resource), str(action))
        for row in await self.all():
            if (row.role.value, row.resource.value, row.action.value) == wanted:
                await self._uow.delete("permissions", row.id, None)
                return
        raise NotFound(f"role {Role(role).value} has no grant {resource}:{action}")

    async def for_roles(self, roles: Sequence[Role]) -> Sequence[Permission]:
        """Every grant of any of ``roles``, ordered by id."""
        wanted = {Role(r) for r in roles}
        return [p for p in await self.all() if p.role in wanted]

    async def all(self) -> Sequence[Permission]:
        """Every grant, ordered by id."""
        return sorted(await self._uow.rows("permissions", None), key=lambda r: r.id)


class _Sessions:
    def __init__(self, uow: ObjectStoreUnitOfWork) -> None:
        self._uow = uow

    async def add(self, session: Session) -> None:
        """Store a new session."""
        await self._uow.insert("sessions", session)

    async def get(self, session_id: str) -> Session:
        """The session, or ``NotFound``."""
        found = await self._uow.row("sessions", session_id, None)
        if found is None:
            raise NotFound(f"session {session_id!r} not found")
        return cast("Session", found)

    async def touch(self, session_id: str, seen_at: datetime) -> None:
        """Record activity."""
        session = await self.get(session_id)
        await self._uow.update("sessions", attrs.evolve(session, last_seen_at=seen_at))

    async def revoke(self, session_id: str, revoked_at: datetime) -> None:
        """End the session for good."""
        session = await self.get(session_id)
        await self._uow.update("sessions", attrs.evolve(session, revoked_at=revoked_at))


class _WebhookReceipts:
    def __init__(self, uow: ObjectStoreUnitOfWork) -> None:
        self._uow = uow

    async def record(self, receipt: WebhookReceipt) -> bool:
        """Store the receipt; ``False`` when (source, event_id) was seen before."""
        if await self._uow.row("webhook_receipts", (receipt.source, receipt.event_id), None):
            return False
        await self._uow.insert("webhook_receipts", receipt)
        return True


class _Idempotency:
    def __init__(self, uow: ObjectStoreUnitOfWork) -> None:
        self._uow = uow

    async def get(self, key: str, user_id: str) -> IdempotencyRecord | None:
        """The record for this key and user in the bound location, if any."""
        tenant = self._uow._require_tenant()
        found = await self._uow.row("idempotency", (tenant, key, user_id), tenant)
        return cast("IdempotencyRecord | None", found)

    def _check_owner(self, reservation: IdempotencyRecord) -> None:
        if reservation.tenant_id != self._uow._require_tenant():
            raise PermissionDenied("this idempotency record belongs to another location")

    async def reserve(
        self, reservation: IdempotencyRecord, *, stale_before: datetime | None = None
    ) -> None:
        """Store a pending reservation, or take over a stale one (see the port).

        No extra care for races: commit expects the record's key to still have
        the version read here, so a concurrent reservation or take-over makes
        one of the two commits fail with ``Conflict``.
        """
        self._check_owner(reservation)
        require_reservation(reservation)
        stored = await self.get(reservation.key, reservation.user_id)
        if stored is None:
            await self._uow.insert("idempotency", reservation)
        elif stored.is_stale(stale_before):
            await self._uow.update("idempotency", reservation)
        else:
            raise Conflict("this idempotency key is already stored for this user")

    async def complete(
        self,
        reservation: IdempotencyRecord,
        *,
        status_code: int,
        response_body: str,
        completed_at: datetime,
    ) -> IdempotencyRecord:
        """Store the answer of a reservation that is still held (see the port)."""
        self._check_owner(reservation)
        stored = require_held(await self.get(reservation.key, reservation.user_id), reservation)
        done = stored.completed(
            status_code=status_code, response_body=response_body, completed_at=completed_at
        )
        await self._uow.update("idempotency", done)
        return done

    async def release(self, reservation: IdempotencyRecord) -> None:
        """Delete a reservation that is still held (see the port)."""
        self._check_owner(reservation)
        require_held(await self.get(reservation.key, reservation.user_id), reservation)
        tenant = reservation.tenant_id
        await self._uow.delete(
            "idempotency", (tenant, reservation.key, reservation.user_id), tenant
        )


class _Audit:
    def __init__(self, uow: ObjectStoreUnitOfWork) -> None:
        self._uow = uow

    async def append(self, entry: AuditEntry) -> AuditEntry:
        """Append to the entry's chain, assigning sequence and hashes."""
        uow = self._uow
        if entry.tenant_id != uow.tenant_id:
            raise PermissionDenied("an audit entry must belong to the unit of work's location")
        if (
            entry.tenant_id is not None
            and await uow.row("locations", entry.tenant_id, None) is None
        ):
            raise ValidationError("tenant_id", f"no location {entry.tenant_id!r}")
        if await uow.load(f"a-id/{_part(entry.id)}") is not None or any(
            e.id == entry.id for e in uow._audit
        ):
            raise Conflict(f"an audit entry with id {entry.id!r} already exists")
        stored = chained(entry, await uow.chain_head(entry.tenant_id))
        uow._audit.append(stored)
        return stored

    async def append_many(self, entries: Sequence[AuditEntry]) -> Sequence[AuditEntry]:
        """Append in order, all or nothing."""
        saved = list(self._uow._audit)
        try:
            return [await self.append(e) for e in entries]
        except BaseException:
            self._uow._audit = saved
            raise

    async def _entries(self) -> list[AuditEntry]:
        self._uow._check_open()
        return await self._uow.chain_entries(self._uow.tenant_id)

    async def get(self, entry_id: str) -> AuditEntry:
        """One entry of the bound chain."""
        for entry in await self._entries():
            if entry.id == entry_id:
                return entry
        raise NotFound(f"audit entry {entry_id!r} not found")

    async def list(self, query: AuditQuery) -> Page[AuditEntry]:
        """One page of the bound chain's matching entries, newest id first."""
        return _cut_page([e for e in await self._entries() if matches(query, e)], query)

    async def count(self, query: AuditQuery) -> int:
        """How many entries of the bound chain match."""
        return sum(1 for e in await self._entries() if matches(query, e))

    async def chain(self, after_sequence: int = 0, limit: int = 1000) -> Sequence[AuditEntry]:
        """The bound chain in sequence order, after ``after_sequence``."""
        return [e for e in await self._entries() if e.sequence > after_sequence][:limit]


class _Analytics:
    def __init__(self, uow: ObjectStoreUnitOfWork) -> None:
        self._uow = uow

    async def metric(self, query: MetricQuery) -> Sequence[MetricRow]:
        """Compute ``query`` over the bound location with the reference rules."""
        tenant = self._uow._require_tenant()
        return compute_metric(
            query,
            tenant_id=tenant,
            contacts=await self._uow.rows("contacts", tenant),
            bookings=await self._uow.rows("bookings", tenant),
            sms=await self._uow.rows("sms", tenant),
            tasks=await self._uow.rows("tasks", tenant),
        )


class _Outbox:
    def __init__(self, uow: ObjectStoreUnitOfWork) -> None:
        self._uow = uow

    def _consumer(self) -> ObjectStoreUnitOfWork:
        if self._uow.tenant_id is not None:
            raise PermissionDenied("the outbox is consumed through a unit of work with no location")
        self._uow._check_open()
        return self._uow

    async def add(self, event: DomainEvent) -> None:
        """Queue an event of the bound location; written at commit."""
        uow = self._uow
        if event.tenant_id != uow.tenant_id:
            raise PermissionDenied("an event must belong to the unit of work's location")
        key = f"o/{_part(event.id)}"
        if await uow.load(key) is not None:
            raise Conflict(f"an outbox message with id {event.id!r} already exists")
        uow.write(key, encode(OutboxMessage(event=event, available_at=event.occurred_at)))

    async def _messages(self) -> list[tuple[str, OutboxMessage]]:
        uow = self._uow
        out = []
        for key in await uow.keys("o/"):
            value = await uow.load(key)
            if value is not None:
                out.append((key, decode(OutboxMessage, value)))
        return sorted(out, key=lambda km: km[1].event.id)

    async def claim(
        self, now: datetime, limit: int = 100, lease_seconds: float = 60.0
    ) -> Sequence[OutboxMessage]:
        """Lease due pending messages now (each write conditional), oldest event first."""
        uow = self._consumer()
        claimed: list[OutboxMessage] = []
        for key in await uow._store.list("o/"):
            if len(claimed) >= limit:
                break
            found = await uow._store.get(key)
            if found is None:
                continue
            message = decode(OutboxMessage, found[0])
            if message.status is not OutboxStatus.PENDING or message.available_at > now:
                continue
            if message.claimed_until is not None and message.claimed_until >= now:
                continue
            leased = attrs.evolve(
                message,
                attempts=message.attempts + 1,
                claimed_until=now + timedelta(seconds=lease_seconds),
            )
            try:
                await uow._store.put_many({key: encode(leased)}, {key: found[1]})
            except VersionMismatch:
                continue  # another consumer leased it first
            uow._leases[key] = (found[0], leased)
            claimed.append(copy.deepcopy(leased))
        return sorted(claimed, key=lambda m: m.event.id)

    async def _get(self, event_id: str) -> tuple[str, OutboxMessage]:
        key = f"o/{_part(event_id)}"
        value = await self._uow.load(key)
        if value is None:
            raise NotFound(f"outbox message {event_id!r} not found")
        return key, decode(OutboxMessage, value)

    async def complete(self, event_ids: Sequence[str]) -> None:
        """Mark messages done."""
        uow = self._consumer()
        for event_id in event_ids:
            key, message = await self._get(event_id)
            uow.write(key, encode(attrs.evolve(message, status=OutboxStatus.DONE)))

    async def fail(
        self, event_id: str, error: str, retry_at: datetime, *, dead: bool = False
    ) -> None:
        """Record a failed attempt: pending again at ``retry_at``, or dead."""
        uow = self._consumer()
        key, message = await self._get(event_id)
        failed = attrs.evolve(
            message,
            status=OutboxStatus.DEAD if dead else OutboxStatus.PENDING,
            available_at=retry_at,
            claimed_until=None,
            last_error=error,
        )
        uow.write(key, encode(failed))

    async def list_status(self, status: str, limit: int = 100) -> Sequence[OutboxMessage]:
        """Messages in one status, oldest event first."""
        self._consumer()
        try:
            wanted = OutboxStatus(status)
        except ValueError:
            raise ValidationError("status", f"{status!r} is not an outbox status") from None
        return [m for _k, m in await self._messages() if m.status is wanted][:limit]


class ObjectStoreGateway:
    """A ``DatabaseGateway`` storing everything in an :class:`~objectstore.ObjectStore`."""

    def __init__(self, store: ObjectStore | None = None) -> None:
        self.store: ObjectStore = store if store is not None else InMemoryObjectStore()
        self.closed = False

    def unit_of_work(self, tenant_id: str | None = None) -> ObjectStoreUnitOfWork:
        """Open a unit of work bound to ``tenant_id`` (or to no location)."""
        if self.closed:
            raise Unavailable("the object store gateway is closed")
        return ObjectStoreUnitOfWork(self, tenant_id)

    async def migrate(self) -> None:
        """Nothing to migrate: keys are created as they are written."""

    async def close(self) -> None:
        """Refuse further use."""
        self.closed = True


def create_gateway(url: str = "objectstore://", **options: Any) -> ObjectStoreGateway:
    """Entry-point factory for ``objectstore://`` (in-memory store; pass ``store=`` for another)."""
    if not url.lower().startswith("objectstore://"):
        raise ValidationError("CRM_DATABASE_URL", f"not an objectstore:// URL: {url!r}")
    store = options.pop("store", None)
    if options:
        raise ValidationError("options", f"unknown options {sorted(options)}")
    return ObjectStoreGateway(cast("ObjectStore | None", store))
