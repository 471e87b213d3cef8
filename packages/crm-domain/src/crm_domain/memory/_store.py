"""Committed state of the in-memory gateway and one unit of work's pending changes.

Isolation is *read committed*, like PostgreSQL's default: a unit of work sees
the committed state as it is now plus its own pending writes, and nobody else
sees those writes until it commits.  Commit happens under the store's lock and
first re-checks every key and foreign key against the state it is about to
produce, so two units of work that raced cannot together break a constraint —
the second one gets :class:`~crm_domain.errors.Conflict`, as a SQL store would.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Hashable, Iterator
from typing import Any

import attrs

from crm_domain.entities import AuditEntry
from crm_domain.errors import Conflict, NotFound, Unavailable, ValidationError
from crm_domain.relations import (
    AUDIT_KIND,
    TABLES,
    Table,
    referencing,
    restricting,
    still_referenced,
)


class _Deleted:
    """Marks a key deleted in a unit of work's pending writes."""

    def __repr__(self) -> str:
        return "<deleted>"


DELETED = _Deleted()


class Store:
    """Everything committed, plus the locks that order writers."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[Hashable, Any]] = {name: {} for name in TABLES}
        self.audit_by_id: dict[str, AuditEntry] = {}
        self.chains: dict[str | None, list[AuditEntry]] = {}
        #: Serialises commits (the whole check-then-apply step).
        self.commit_lock = asyncio.Lock()
        #: One lock per audit chain, held from a unit of work's first append to
        #: its end, like a row lock on the chain head in SQL.
        self.chain_locks: dict[str | None, asyncio.Lock] = {}
        #: Outbox messages claimed by a unit of work that has not ended yet;
        #: other claims skip them (``FOR UPDATE SKIP LOCKED``).
        self.claimed_by: dict[str, Tx] = {}
        self.closed = False


class Tx:
    """One unit of work's pending writes over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes: dict[str, dict[Hashable, Any]] = {}
        self.inserted: dict[str, set[Hashable]] = {}
        self.audit: list[AuditEntry] = []
        self.held_chains: list[str | None] = []
        #: Rows that must still be committed as read (compare-and-set at commit).
        self.expected: dict[tuple[str, Hashable], Any] = {}

    # -- reading ---------------------------------------------------------

    def get(self, table: str, key: Hashable) -> Any | None:
        """The row with this primary key as this unit of work sees it, or ``None``."""
        pending = self.writes.get(table)
        if pending is not None and key in pending:
            row = pending[key]
            return None if row is DELETED else row
        return self.store.tables[table].get(key)

    def rows(self, table: str) -> Iterator[Any]:
        """Every row of ``table`` as this unit of work sees it (unordered)."""
        pending = self.writes.get(table, {})
        for key, row in self.store.tables[table].items():
            if key not in pending:
                yield row
        for row in pending.values():
            if row is not DELETED:
                yield row

    def expect(self, table: str, key: Hashable, row: Any) -> None:
        """Make commit fail with ``Conflict`` unless the committed row is still ``row``.

        Read committed alone lets two units of work both act on one row they
        read (last writer wins); this is the compare-and-set a conditional
        ``UPDATE … WHERE`` gives the SQL gateways.  A row this unit of work
        wrote itself is already covered by the checks of that write.
        """
        if key not in self.writes.get(table, {}):
            self.expected.setdefault((table, key), row)

    # -- writing ---------------------------------------------------------

    def _put(self, table: Table, key: Hashable, row: Any) -> None:
        if table.mutable and row is not DELETED:
            row = copy.deepcopy(row)
        self.writes.setdefault(table.name, {})[key] = row

    def insert(self, table_name: str, row: Any) -> None:
        """Add a new row; ``Conflict`` on a taken key, ``ValidationError`` on a bad reference."""
        table = TABLES[table_name]
        key = table.primary_key(row)
        if self.get(table_name, key) is not None:
            raise Conflict(f"a {table.noun} with id {key!r} already exists")
        self.validate(table, row)
        if key not in self.store.tables[table_name]:
            self.inserted.setdefault(table_name, set()).add(key)
        self._put(table, key, row)

    def update(self, table_name: str, row: Any) -> None:
        """Replace an existing row; ``NotFound`` when there is none."""
        table = TABLES[table_name]
        key = table.primary_key(row)
        if self.get(table_name, key) is None:
            raise NotFound(f"{table.noun} {key!r} not found")
        self.validate(table, row)
        self._put(table, key, row)

    def delete(self, table_name: str, key: Hashable) -> None:
        """Delete a row, applying every foreign key's ``on_delete`` rule, all or nothing."""
        table = TABLES[table_name]
        if self.get(table_name, key) is None:
            raise NotFound(f"{table.noun} {key!r} not found")
        saved = self.savepoint()
        try:
            self._delete(table, key)
        except BaseException:
            self.restore(saved)
            raise

    def _delete(self, table: Table, key: Hashable) -> None:
        # Restricting keys first, counted all together, so the refusal names
        # every kind that still refers to the row (as every gateway does).
        counts = [
            (child.kind, sum(1 for r in self.rows(child.name) if getattr(r, fk.column) == key))
            for child, fk in restricting(table.name)
        ]
        if table.name == "locations":
            chain = self.store.chains.get(str(key)) or []
            counts.append(
                (AUDIT_KIND, len(chain) + sum(1 for e in self.audit if e.tenant_id == key))
            )
        if any(n for _, n in counts):
            raise still_referenced(table.name, key, counts)
        for child, fk in referencing(table.name):
            if fk.on_delete == "restrict":
                continue
            for row in list(self.rows(child.name)):
                if getattr(row, fk.column) != key:
                    continue
                if fk.on_delete == "cascade":
                    self._delete(child, child.primary_key(row))
                else:
                    self._put(child, child.primary_key(row), attrs.evolve(row, **{fk.column: None}))
        self._put(table, key, DELETED)

    def validate(self, table: Table, row: Any) -> None:
        """Check ``row``'s unique keys and foreign keys against this unit of work's view."""
        key = table.primary_key(row)
        for unique in table.uniques:
            value = unique.key(row)
            if value is None:
                continue
            for other in self.rows(table.name):
                if unique.key(other) == value and table.primary_key(other) != key:
                    raise Conflict(f"a {table.noun} with this {unique.name} already exists")
        for fk in table.foreign_keys:
            ref = getattr(row, fk.column)
            if ref is None:
                continue
            parent = self.get(fk.parent, ref)
            if parent is None or (fk.same_tenant and parent.tenant_id != row.tenant_id):
                noun = TABLES[fk.parent].noun
                where = " in this location" if fk.same_tenant else ""
                raise ValidationError(fk.column, f"no {noun} {ref!r}{where}")

    # -- savepoints (all-or-nothing bulk operations) ----------------------

    def savepoint(self) -> tuple[dict[str, dict[Hashable, Any]], dict[str, set[Hashable]], int]:
        """A copy of the pending state to return to."""
        return (
            {name: dict(rows) for name, rows in self.writes.items()},
            {name: set(keys) for name, keys in self.inserted.items()},
            len(self.audit),
        )

    def restore(
        self, saved: tuple[dict[str, dict[Hashable, Any]], dict[str, set[Hashable]], int]
    ) -> None:
        """Return to a :meth:`savepoint`."""
        self.writes, self.inserted, audit_len = saved
        del self.audit[audit_len:]

    # -- commit ----------------------------------------------------------

    def check_commit(self) -> None:
        """Re-check pending writes against what is committed now (under the commit lock)."""
        for name, pending in self.writes.items():
            table = TABLES[name]
            committed = self.store.tables[name]
            for key, row in pending.items():
                if row is DELETED:
                    # Someone may have committed a child of this row meanwhile.
                    for child, fk in referencing(name):
                        for other in self.rows(child.name):
                            if getattr(other, fk.column) == key:
                                raise Conflict(
                                    f"{table.noun} {key!r} gained a {child.noun} "
                                    "in a concurrent unit of work"
                                )
                    continue
                if key in self.inserted.get(name, ()):
                    if key in committed:
                        raise Conflict(f"a {table.noun} with id {key!r} already exists")
                elif key not in committed:
                    raise Conflict(f"{table.noun} {key!r} was deleted by a concurrent unit of work")
                self.validate(table, row)
        for entry in self.audit:
            if entry.id in self.store.audit_by_id:
                raise Conflict(f"an audit entry with id {entry.id!r} already exists")
        for (name, key), row in self.expected.items():
            if self.store.tables[name].get(key) != row:
                raise Conflict(
                    f"{TABLES[name].noun} {key!r} was changed by a concurrent unit of work"
                )

    def apply(self) -> None:
        """Make pending writes the committed state (after :meth:`check_commit`)."""
        for name, pending in self.writes.items():
            committed = self.store.tables[name]
            for key, row in pending.items():
                if row is DELETED:
                    committed.pop(key, None)
                else:
                    committed[key] = row
        for entry in self.audit:
            self.store.audit_by_id[entry.id] = entry
            self.store.chains.setdefault(entry.tenant_id, []).append(entry)
        self.clear()

    def clear(self) -> None:
        """Forget pending writes and release every lock this unit of work holds."""
        self.writes = {}
        self.inserted = {}
        self.audit = []
        self.expected = {}
        for event_id in [k for k, owner in self.store.claimed_by.items() if owner is self]:
            del self.store.claimed_by[event_id]
        while self.held_chains:
            self.store.chain_locks[self.held_chains.pop()].release()

    # -- audit -----------------------------------------------------------

    async def lock_chain(self, chain: str | None, wait_seconds: float) -> None:
        """Hold ``chain``'s lock until this unit of work ends."""
        if chain in self.held_chains:
            return
        lock = self.store.chain_locks.setdefault(chain, asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), wait_seconds)
        except TimeoutError:
            raise Unavailable(
                "the audit chain is held by another unit of work "
                "(a unit of work waiting on another one of the same location?)"
            ) from None
        self.held_chains.append(chain)

    def chain_head(self, chain: str | None) -> AuditEntry | None:
        """The last entry of ``chain``, pending ones included."""
        for entry in reversed(self.audit):
            if entry.tenant_id == chain:
                return entry
        committed = self.store.chains.get(chain)
        return committed[-1] if committed else None

    def chain_entries(self, chain: str | None) -> list[AuditEntry]:
        """Every entry of ``chain`` in sequence order, pending ones included."""
        return [*self.store.chains.get(chain, ()), *(e for e in self.audit if e.tenant_id == chain)]


__all__ = ["DELETED", "Store", "Tx"]
