"""A ``DatabaseGateway`` over a plain key-value :class:`~objectstore.ObjectStore`.

The worked example for adapter authors (see README.md).  It passes the
conformance kit, ``crm_domain.testing.GatewayConformance``, unchanged.  What
it writes is a *table store* (:class:`crm_domain.storage.TableStore`):
rows by table name, the audit chain, the outbox, commit and rollback.  The
nineteen repositories and their rules are the shared ones
(:class:`crm_domain.storage.StoredUnitOfWork`).

Layout of the keys (every value is JSON from :mod:`codec`)::

    t/{table}/{pk}                     a row of a global table (locations, users, …)
    t/{table}/{tenant}/{pk}            a row of a location's table (contacts, …)
    u/{table}/{unique key}/{values}    unique index: points at the row's key
    a/{chain}/{sequence:012d}          the audit chain of a location (or ``~system``)
    a-id/{entry id}                    audit entry id → its chain key
    o/{event id}                       an outbox message

The relational rules (unique keys, foreign keys, what a delete does) are not
re-invented here: they are the data in :data:`crm_domain.relations.TABLES`,
interpreted the way the in-memory reference store interprets them.

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
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote

import attrs
from codec import decode, encode
from crm_domain.entities import (
    AuditEntry,
    OutboxMessage,
    OutboxStatus,
)
from crm_domain.errors import Conflict, NotFound, Unavailable, ValidationError
from crm_domain.pagination import Page
from crm_domain.ports.analytics import MetricQuery, MetricRow
from crm_domain.queries import AuditQuery, ListQuery, matches
from crm_domain.relations import AUDIT_KIND, TABLES, ForeignKey, still_referenced
from crm_domain.relations import Table as Rules
from crm_domain.storage import (
    ENTITIES,
    StoredUnitOfWork,
    failed,
    is_due,
    leased,
    matching,
    page_of,
    relink,
)
from objectstore import InMemoryObjectStore, ObjectStore, Version, VersionMismatch

if TYPE_CHECKING:
    from crm_domain.storage import TableStore

#: How often a commit re-links its audit entries after losing the race for a chain's head.
CHAIN_RETRIES = 50


def _part(value: Hashable) -> str:
    if isinstance(value, tuple):
        return "/".join(quote(str(v), safe="") for v in value)
    return quote(str(value), safe="")


def row_prefix(table: Rules, tenant: str | None) -> str:
    """Where the rows of ``table`` live (a location's rows when ``tenant`` is given)."""
    if table.tenant_owned and tenant is not None:
        return f"t/{table.name}/{_part(tenant)}/"
    return f"t/{table.name}/"


def row_key(table: Rules, pk: Hashable, tenant: str | None) -> str:
    """The key of one row (``tenant`` is the row's location for tenant-owned tables)."""
    return row_prefix(table, tenant) + _part(pk)


def _index_keys(table: Rules, entity: Any) -> list[str]:
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


class ObjectStoreTableStore:
    """One unit of work's table store: reads through, buffers writes, one ``put_many``."""

    def __init__(self, gateway: ObjectStoreGateway) -> None:
        self._gateway = gateway
        self._store = gateway.store
        self._read: dict[str, Version | None] = {}
        self._writes: dict[str, bytes | None] = {}
        self._audit: list[AuditEntry] = []
        self._leases: dict[str, tuple[bytes, OutboxMessage]] = {}

    # -- reading through the buffer -------------------------------------------------

    def check_open(self) -> None:
        """``Unavailable`` once the gateway is closed."""
        if self._gateway.closed:
            raise Unavailable("the object store gateway is closed")

    async def load(self, key: str) -> bytes | None:
        """The value of ``key`` as this unit of work sees it (remembering its version)."""
        self.check_open()
        if key in self._writes:
            return self._writes[key]
        found = await self._store.get(key)
        self._read.setdefault(key, None if found is None else found[1])
        return None if found is None else found[0]

    async def keys(self, prefix: str) -> list[str]:
        """Keys with ``prefix`` as this unit of work sees them."""
        self.check_open()
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

    # -- writing with the reference rules -------------------------------------------

    def _key_of(self, table: Rules, entity: Any) -> str:
        tenant = entity.tenant_id if table.tenant_owned else None
        return row_key(table, table.primary_key(entity), tenant)

    async def validate(self, table: Rules, entity: Any) -> None:
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

    async def insert(self, table: str, row: Any) -> None:
        """Add a row: ``Conflict`` on a taken key, ``ValidationError`` on a bad reference."""
        rules = TABLES[table]
        key = self._key_of(rules, row)
        if await self.load(key) is not None:
            raise Conflict(f"a {rules.noun} with id {rules.primary_key(row)!r} already exists")
        await self.validate(rules, row)
        self.write(key, encode(row))
        for index in _index_keys(rules, row):
            self.write(index, key.encode())

    async def _update(self, name: str, entity: Any) -> None:
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

    async def _delete_row(self, name: str, pk: Hashable, tenant: str | None) -> None:
        """Delete a row applying every referencing key's rule, all or nothing."""
        saved = (dict(self._writes), list(self._audit))
        try:
            await self._delete(TABLES[name], pk, tenant)
        except BaseException:
            self._writes, self._audit = saved
            raise

    async def _delete(self, table: Rules, pk: Hashable, tenant: str | None) -> None:
        entity = await self.row(table.name, pk, tenant)
        if entity is None:
            raise NotFound(f"{table.noun} {pk!r} not found")
        referring = [
            (child, fk)
            for child in TABLES.values()
            for fk in child.foreign_keys
            if fk.parent == table.name
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
                    await self._update(child.name, attrs.evolve(row, **{fk.column: None}))
        for index in _index_keys(table, entity):
            await self.load(index)
            self.write(index, None)
        self.write(row_key(table, pk, tenant), None)

    # -- the table store --------------------------------------------------------------

    async def _owner(self, table: Rules, pk: Hashable) -> str | None:
        """The location of a tenant-owned row found by key alone (a prefix scan)."""
        suffix = "/" + _part(pk)
        for key in await self.keys(f"t/{table.name}/"):
            if key.endswith(suffix):
                return unquote(key[len(f"t/{table.name}/") :].split("/", 1)[0])
        return None

    async def get(self, table: str, key: Hashable, tenant: str | None = None) -> Any | None:
        """The row with this key (under ``tenant``'s prefix for a location's table)."""
        rules = TABLES[table]
        if rules.tenant_owned and tenant is None:
            tenant = await self._owner(rules, key)
        return await self.row(table, key, tenant)

    async def find(self, table: str, equal: Mapping[str, Any]) -> list[Any]:
        """Rows whose attributes equal ``equal`` (a prefix scan)."""
        tenant = equal.get("tenant_id") if TABLES[table].tenant_owned else None
        rows = await self.rows(table, tenant)
        return [r for r in rows if all(getattr(r, n) == v for n, v in equal.items())]

    async def page(self, table: str, tenant: str | None, query: ListQuery) -> Page[Any]:
        """One page: a prefix scan, the reference filters, id descending."""
        return page_of(matching(await self.rows(table, tenant), tenant, query), query)

    async def count(self, table: str, tenant: str | None, query: ListQuery) -> int:
        """How many rows match."""
        return len(matching(await self.rows(table, tenant), tenant, query))

    async def insert_new(self, table: str, row: Any) -> bool:
        """Add a row unless its key is taken."""
        rules = TABLES[table]
        if await self.load(self._key_of(rules, row)) is not None:
            return False
        await self.insert(table, row)
        return True

    async def insert_many(self, table: str, rows: Sequence[Any]) -> None:
        """Add every row or none."""
        saved = dict(self._writes)
        try:
            for row in rows:
                await self.insert(table, row)
        except BaseException:
            self._writes = saved
            raise

    async def update(self, table: str, row: Any, tenant: str | None = None) -> bool:
        """Replace a row (of ``tenant``); ``False`` when there is none."""
        rules = TABLES[table]
        if tenant is not None and row.tenant_id != tenant:
            return False
        if await self.load(self._key_of(rules, row)) is None:
            return False
        await self._update(table, row)
        return True

    async def patch(
        self, table: str, key: Hashable, changes: Mapping[str, Any], tenant: str | None = None
    ) -> bool:
        """Set some attributes of a row (commit checks the version read)."""
        row = await self.get(table, key, tenant)
        if row is None:
            return False
        await self._update(table, attrs.evolve(row, **changes))
        return True

    async def delete(self, table: str, key: Hashable, tenant: str | None = None) -> bool:
        """Delete a row with the relations' rules; ``False`` when there is none."""
        rules = TABLES[table]
        if rules.tenant_owned and tenant is None:
            tenant = await self._owner(rules, key)
        if await self.row(table, key, tenant) is None:
            return False
        await self._delete_row(table, key, tenant)
        return True

    async def compare_and_set(self, table: str, expected: Any, new: Any | None) -> bool:
        """Replace or delete a row still equal to ``expected``: commit expects the
        version read here, so a concurrent change makes one of the two commits fail."""
        rules = TABLES[table]
        tenant = expected.tenant_id if rules.tenant_owned else None
        pk = rules.primary_key(expected)
        if await self.row(table, pk, tenant) != expected:
            return False
        if new is None:
            await self._delete_row(table, pk, tenant)
        else:
            await self._update(table, new)
        return True

    async def metric(self, tenant: str, query: MetricQuery) -> Sequence[MetricRow] | None:
        """No pushdown: the shared repository computes reports from the rows."""
        return None

    # -- audit chain ------------------------------------------------------------------

    async def lock_chain(self, chain: str | None) -> None:
        """Nothing to lock: commit re-links entries that lost the race for the head."""
        self.check_open()

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Buffer linked entries after checking ids and the location."""
        chain = entries[0].tenant_id
        if chain is not None and await self.row("locations", chain, None) is None:
            raise ValidationError("tenant_id", f"no location {chain!r}")
        taken = {e.id for e in self._audit}
        for entry in entries:
            if entry.id in taken or await self.load(f"a-id/{_part(entry.id)}") is not None:
                raise Conflict(f"an audit entry with id {entry.id!r} already exists")
            taken.add(entry.id)
        self._audit.extend(entries)

    async def audit_get(self, chain: str | None, entry_id: str) -> AuditEntry | None:
        """One entry of the chain."""
        for entry in await self.chain_entries(chain):
            if entry.id == entry_id:
                return entry
        return None

    async def audit_page(self, chain: str | None, query: AuditQuery) -> Page[AuditEntry]:
        """One page of the chain's matching entries."""
        return page_of([e for e in await self.chain_entries(chain) if matches(query, e)], query)

    async def audit_count(self, chain: str | None, query: AuditQuery) -> int:
        """How many of the chain's entries match."""
        return sum(1 for e in await self.chain_entries(chain) if matches(query, e))

    async def audit_chain(
        self, chain: str | None, after_sequence: int, limit: int
    ) -> Sequence[AuditEntry]:
        """The chain in sequence order after ``after_sequence``."""
        entries = await self.chain_entries(chain)
        return [e for e in entries if e.sequence > after_sequence][:limit]

    # -- outbox ------------------------------------------------------------------------

    async def outbox_add(self, message: OutboxMessage) -> None:
        """Queue a message; written at commit."""
        key = f"o/{_part(message.event.id)}"
        if await self.load(key) is not None:
            raise Conflict(f"an outbox message with id {message.event.id!r} already exists")
        self.write(key, encode(message))

    async def outbox_claim(
        self, now: datetime, until: datetime, limit: int
    ) -> Sequence[OutboxMessage]:
        """Lease due pending messages now (each write conditional on the version read)."""
        self.check_open()
        claimed: list[OutboxMessage] = []
        for key in await self._store.list("o/"):
            if len(claimed) >= limit:
                break
            found = await self._store.get(key)
            if found is None:
                continue
            message = decode(OutboxMessage, found[0])
            if not is_due(message, now):
                continue
            lease = leased(message, until)
            try:
                await self._store.put_many({key: encode(lease)}, {key: found[1]})
            except VersionMismatch:
                continue  # another consumer leased it first
            self._leases[key] = (found[0], lease)
            claimed.append(lease)
        return claimed

    async def _outbox_get(self, event_id: str) -> tuple[str, OutboxMessage | None]:
        key = f"o/{_part(event_id)}"
        value = await self.load(key)
        return key, None if value is None else decode(OutboxMessage, value)

    async def outbox_complete(self, event_ids: Sequence[str]) -> bool:
        """Mark messages done (none when one is missing)."""
        found = [await self._outbox_get(event_id) for event_id in event_ids]
        done = [(key, m) for key, m in found if m is not None]
        if len(done) != len(found):
            return False
        for key, message in done:
            self.write(key, encode(attrs.evolve(message, status=OutboxStatus.DONE)))
        return True

    async def outbox_fail(
        self, event_id: str, error: str, retry_at: datetime, *, dead: bool
    ) -> bool:
        """Record a failed attempt: pending again at ``retry_at``, or dead."""
        key, message = await self._outbox_get(event_id)
        if message is None:
            return False
        self.write(key, encode(failed(message, error, retry_at, dead=dead)))
        return True

    async def outbox_list(self, status: OutboxStatus, limit: int) -> Sequence[OutboxMessage]:
        """Messages in one status, oldest event first."""
        messages = []
        for key in await self.keys("o/"):
            value = await self.load(key)
            if value is not None:
                messages.append(decode(OutboxMessage, value))
        chosen = sorted((m for m in messages if m.status is status), key=lambda m: m.event.id)
        return chosen[:limit]

    async def chain_head(self, tenant: str | None) -> AuditEntry | None:
        """The last entry of a chain, buffered ones included."""
        for entry in reversed(self._audit):
            if entry.tenant_id == tenant:
                return entry
        return await self._committed_head(tenant)

    async def _committed_head(self, tenant: str | None) -> AuditEntry | None:
        keys = await self._store.list(_chain_prefix(tenant))
        found = await self._store.get(keys[-1]) if keys else None
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

    # -- commit -------------------------------------------------------------------------

    async def commit(self) -> None:
        """Write everything at once, if nothing this unit of work read has changed."""
        self.check_open()
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
                    self._audit = await relink(self._audit, self._committed_head)
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
        for key, (previous, lease) in leases.items():
            found = await self._store.get(key)
            if found is not None and decode(OutboxMessage, found[0]) == lease:
                # If someone took the lapsed lease meanwhile, it is theirs now.
                with contextlib.suppress(VersionMismatch):
                    await self._store.put_many({key: previous}, {key: found[1]})


class ObjectStoreGateway:
    """A ``DatabaseGateway`` storing everything in an :class:`~objectstore.ObjectStore`."""

    def __init__(self, store: ObjectStore | None = None) -> None:
        self.store: ObjectStore = store if store is not None else InMemoryObjectStore()
        self.closed = False

    def unit_of_work(self, tenant_id: str | None = None) -> StoredUnitOfWork:
        """Open a unit of work bound to ``tenant_id``: the shared repositories over a store."""
        if self.closed:
            raise Unavailable("the object store gateway is closed")
        return StoredUnitOfWork(ObjectStoreTableStore(self), tenant_id)

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


if TYPE_CHECKING:  # mypy proves the class satisfies the storage port structurally

    def _is_store(store: ObjectStoreTableStore) -> TableStore:
        return store
