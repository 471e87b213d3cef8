"""The in-memory :class:`~crm_domain.ports.gateway.DatabaseGateway`: the reference store.

Its :class:`MemoryTableStore` is the reference
:class:`~crm_domain.storage.TableStore`: every other store must behave like it
(the conformance kit :mod:`crm_domain.testing` checks it).  The repositories
and their rules are :mod:`crm_domain.storage.repositories`, shared by every
gateway; what is particular to this store is in :mod:`crm_domain.memory._store`:

**Units of work** are read committed: changes are invisible to others until
``commit()``, which is atomic, and are discarded by ``rollback()`` or by leaving
the ``async with`` block without committing.  Commits are serialised by a
lock, and re-check keys against what others committed meanwhile.

**Audit** chains are locked from a unit of work's first append to its end (as
a row lock on the chain head would), for at most ``chain_lock_timeout``
seconds of waiting.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from crm_domain.entities import AuditEntry, OutboxMessage, OutboxStatus
from crm_domain.errors import Conflict, Unavailable, ValidationError
from crm_domain.memory._store import Store, Tx
from crm_domain.pagination import Page
from crm_domain.ports.analytics import MetricQuery, MetricRow
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.queries import AuditQuery, ListQuery, matches
from crm_domain.relations import TABLES
from crm_domain.storage import (
    StoredUnitOfWork,
    TableStore,
    failed,
    is_due,
    leased,
    matching,
    page_of,
)

#: How long an audit append waits for another unit of work holding the same chain.
CHAIN_LOCK_TIMEOUT = 10.0


class MemoryTableStore:
    """The :class:`~crm_domain.storage.TableStore` of one in-memory unit of work."""

    def __init__(self, store: Store, chain_lock_timeout: float = CHAIN_LOCK_TIMEOUT) -> None:
        self._store = store
        self.tx = Tx(store)
        self.chain_lock_timeout = chain_lock_timeout

    def check_open(self) -> None:
        """``Unavailable`` once the gateway is closed."""
        if self._store.closed:
            raise Unavailable("the in-memory gateway is closed")

    def _tx(self) -> Tx:
        self.check_open()
        return self.tx

    @staticmethod
    def _out(table: str, row: Any) -> Any:
        # Rows holding dicts are copied out, so a caller cannot edit the store.
        return copy.deepcopy(row) if TABLES[table].mutable else row

    # -- rows ----------------------------------------------------------------

    async def get(self, table: str, key: Hashable, tenant: str | None = None) -> Any | None:
        """The row with this key (of ``tenant`` when given), or ``None``."""
        row = self._tx().get(table, key)
        if row is None or (tenant is not None and row.tenant_id != tenant):
            return None
        return self._out(table, row)

    async def find(self, table: str, equal: Mapping[str, Any]) -> list[Any]:
        """Rows whose attributes equal ``equal``."""
        items = equal.items()
        return [
            self._out(table, r)
            for r in self._tx().rows(table)
            if all(getattr(r, name) == value for name, value in items)
        ]

    async def page(self, table: str, tenant: str | None, query: ListQuery) -> Page[Any]:
        """One page of matching rows, newest id first."""
        page = page_of(matching(self._tx().rows(table), tenant, query), query)
        return Page(tuple(self._out(table, r) for r in page.items), page.next_cursor)

    async def count(self, table: str, tenant: str | None, query: ListQuery) -> int:
        """How many rows match."""
        return len(matching(self._tx().rows(table), tenant, query))

    async def insert(self, table: str, row: Any) -> None:
        """Add a row (keys checked now and again at commit)."""
        self._tx().insert(table, row)

    async def insert_new(self, table: str, row: Any) -> bool:
        """Add a row unless its key is taken."""
        tx = self._tx()
        if tx.get(table, TABLES[table].primary_key(row)) is not None:
            return False
        tx.insert(table, row)
        return True

    async def insert_many(self, table: str, rows: Sequence[Any]) -> None:
        """Add every row or none."""
        tx = self._tx()
        saved = tx.savepoint()
        try:
            for row in rows:
                tx.insert(table, row)
        except BaseException:
            tx.restore(saved)
            raise

    async def update(self, table: str, row: Any, tenant: str | None = None) -> bool:
        """Replace a row; ``False`` when there is none (of ``tenant``)."""
        if await self.get(table, TABLES[table].primary_key(row), tenant) is None:
            return False
        self.tx.update(table, row)
        return True

    async def patch(
        self, table: str, key: Hashable, changes: Mapping[str, Any], tenant: str | None = None
    ) -> bool:
        """Set some attributes of a row."""
        row = self._tx().get(table, key)
        if row is None or (tenant is not None and row.tenant_id != tenant):
            return False
        self.tx.update(table, attrs.evolve(row, **changes))
        return True

    async def delete(self, table: str, key: Hashable, tenant: str | None = None) -> bool:
        """Delete a row with the relations' rules; ``False`` when there is none."""
        if await self.get(table, key, tenant) is None:
            return False
        self.tx.delete(table, key)
        return True

    async def compare_and_set(self, table: str, expected: Any, new: Any | None) -> bool:
        """Replace or delete a row that still equals ``expected`` (re-checked at commit)."""
        tx = self._tx()
        key = TABLES[table].primary_key(expected)
        current = tx.get(table, key)
        if current != expected:
            return False
        tx.expect(table, key, current)
        if new is None:
            tx.delete(table, key)
        else:
            tx.update(table, new)
        return True

    # -- audit chain -----------------------------------------------------------

    async def lock_chain(self, chain: str | None) -> None:
        """Hold the chain's lock until the unit of work ends."""
        await self._tx().lock_chain(chain, self.chain_lock_timeout)

    async def chain_head(self, chain: str | None) -> AuditEntry | None:
        """The chain's last entry, pending ones included."""
        return self._tx().chain_head(chain)

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Keep linked entries until commit, after checking ids and the location."""
        tx = self._tx()
        chain = entries[0].tenant_id
        if chain is not None and tx.get("locations", chain) is None:
            raise ValidationError("tenant_id", f"no location {chain!r}")
        taken = {e.id for e in tx.audit}
        for entry in entries:
            if entry.id in tx.store.audit_by_id or entry.id in taken:
                raise Conflict(f"an audit entry with id {entry.id!r} already exists")
            taken.add(entry.id)
        tx.audit.extend(entries)

    async def audit_get(self, chain: str | None, entry_id: str) -> AuditEntry | None:
        """One entry of the chain."""
        for entry in self._tx().chain_entries(chain):
            if entry.id == entry_id:
                return entry
        return None

    async def audit_page(self, chain: str | None, query: AuditQuery) -> Page[AuditEntry]:
        """One page of the chain's matching entries."""
        return page_of([e for e in self._tx().chain_entries(chain) if matches(query, e)], query)

    async def audit_count(self, chain: str | None, query: AuditQuery) -> int:
        """How many of the chain's entries match."""
        return sum(1 for e in self._tx().chain_entries(chain) if matches(query, e))

    async def audit_chain(
        self, chain: str | None, after_sequence: int, limit: int
    ) -> Sequence[AuditEntry]:
        """The chain in sequence order after ``after_sequence``."""
        entries = self._tx().chain_entries(chain)
        return [e for e in entries if e.sequence > after_sequence][:limit]

    # -- outbox ------------------------------------------------------------------

    async def outbox_add(self, message: OutboxMessage) -> None:
        """Queue a message until commit."""
        self._tx().insert("outbox", message)

    def _messages(self, status: OutboxStatus) -> list[OutboxMessage]:
        rows = [m for m in self._tx().rows("outbox") if m.status is status]
        return sorted(rows, key=lambda m: m.event.id)

    async def outbox_claim(
        self, now: datetime, until: datetime, limit: int
    ) -> Sequence[OutboxMessage]:
        """Lease due pending messages; skips ones another open unit of work holds."""
        tx = self._tx()
        claimed: list[OutboxMessage] = []
        for message in self._messages(OutboxStatus.PENDING):
            if len(claimed) >= limit:
                break
            owner = tx.store.claimed_by.get(message.event.id)
            if (owner is not None and owner is not tx) or not is_due(message, now):
                continue
            lease = leased(message, until)
            tx.update("outbox", lease)
            tx.store.claimed_by[message.event.id] = tx
            claimed.append(copy.deepcopy(lease))
        return claimed

    async def outbox_complete(self, event_ids: Sequence[str]) -> bool:
        """Mark messages done (none when one is missing)."""
        tx = self._tx()
        messages = [tx.get("outbox", event_id) for event_id in event_ids]
        found = [m for m in messages if m is not None]
        if len(found) != len(messages):
            return False
        for message in found:
            tx.update("outbox", attrs.evolve(message, status=OutboxStatus.DONE))
        return True

    async def outbox_fail(
        self, event_id: str, error: str, retry_at: datetime, *, dead: bool
    ) -> bool:
        """Record a failed attempt."""
        tx = self._tx()
        message = tx.get("outbox", event_id)
        if message is None:
            return False
        tx.update("outbox", failed(message, error, retry_at, dead=dead))
        return True

    async def outbox_list(self, status: OutboxStatus, limit: int) -> Sequence[OutboxMessage]:
        """Messages in one status, oldest event first."""
        return [copy.deepcopy(m) for m in self._messages(status)[:limit]]

    # -- analytics and the transaction ----------------------------------------------

    async def metric(self, tenant: str, query: MetricQuery) -> Sequence[MetricRow] | None:
        """No pushdown: the repository computes reports from the rows."""
        return None

    async def commit(self) -> None:
        """Apply every pending change at once, or raise ``Conflict`` and apply none."""
        tx = self._tx()
        async with self._store.commit_lock:
            try:
                tx.check_commit()
            except BaseException:
                tx.clear()
                raise
            tx.apply()

    async def rollback(self) -> None:
        """Discard every pending change."""
        self.tx.clear()


class InMemoryUnitOfWork(StoredUnitOfWork):
    """One transaction over the in-memory store; rolls back unless committed."""

    def __init__(self, gateway: InMemoryGateway, tenant_id: str | None) -> None:
        self.chain_lock_timeout = gateway.chain_lock_timeout
        super().__init__(MemoryTableStore(gateway._store, gateway.chain_lock_timeout), tenant_id)


class InMemoryGateway:
    """A :class:`~crm_domain.ports.gateway.DatabaseGateway` that keeps everything in memory.

    Used by the unit tests, the examples and ``CRM_DATABASE_URL=memory://``.
    Data lives as long as the object; nothing is shared between instances.
    """

    def __init__(self, *, chain_lock_timeout: float = CHAIN_LOCK_TIMEOUT) -> None:
        self._store = Store()
        self.chain_lock_timeout = chain_lock_timeout

    def unit_of_work(self, tenant_id: str | None = None) -> InMemoryUnitOfWork:
        """Open a unit of work bound to ``tenant_id`` (or to no location)."""
        if self._store.closed:
            raise Unavailable("the in-memory gateway is closed")
        return InMemoryUnitOfWork(self, tenant_id)

    async def migrate(self) -> None:
        """Nothing to migrate: the in-memory schema is always current."""

    async def close(self) -> None:
        """Refuse further use (data is dropped with the object)."""
        self._store.closed = True


def create_gateway(url: str = "memory://", **options: Any) -> InMemoryGateway:
    """Entry-point factory for ``memory://`` (group ``crm.gateways``, name ``memory``)."""
    if not url.lower().startswith("memory://"):
        raise ValidationError("CRM_DATABASE_URL", f"not a memory:// URL: {url!r}")
    timeout = options.pop("chain_lock_timeout", CHAIN_LOCK_TIMEOUT)
    if options:
        raise ValidationError("options", f"unknown options {sorted(options)}")
    return InMemoryGateway(chain_lock_timeout=float(timeout))


__all__ = [
    "CHAIN_LOCK_TIMEOUT",
    "InMemoryGateway",
    "InMemoryUnitOfWork",
    "MemoryTableStore",
    "create_gateway",
]


if TYPE_CHECKING:  # mypy proves the classes satisfy the ports structurally

    def _is_gateway(gateway: InMemoryGateway) -> DatabaseGateway:
        return gateway

    def _is_uow(uow: InMemoryUnitOfWork) -> UnitOfWork:
        return uow

    def _is_store(store: MemoryTableStore) -> TableStore:
        return store
