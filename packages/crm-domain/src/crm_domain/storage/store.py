"""The storage port: :class:`TableStore`, what a gateway author implements.

A table store is one transaction's access to the stored tables, named as in
:data:`crm_domain.relations.TABLES`.  It stores and finds rows (the domain
entities themselves: a SQL store maps them to columns, an object store
encodes them) and keeps the relational rules of :mod:`crm_domain.relations`
— primary and unique keys, foreign keys, what deleting a referenced row does
— as a SQL schema would.  Everything else (which unit of work may touch what,
``NotFound`` for a missing or another location's id, finders, the idempotency
and session rules, linking the audit chain, outbox consumer rules) is written
once, over this port, in :mod:`crm_domain.storage.repositories`.

The operations are narrow so that a SQL store can push them down: ``page`` and
``count`` take the list query (filters and keyset paging), ``insert_many`` is
the bulk path, ``metric`` an optional analytics pushdown, ``append_audit`` one
multi-row insert.  Conventions:

* ``key`` is the table's primary key as :class:`crm_domain.relations.Table`
  computes it: the ``id`` string for most tables, a tuple for composite keys
  (``webhook_receipts``: ``(source, event_id)``; ``idempotency``:
  ``(tenant_id, key, user_id)``);
* ``tenant`` given to ``get``/``update``/``delete``/``page``/``count`` limits
  the operation to that location's rows (``None``: any row); a row of another
  location is treated as absent;
* ``equal`` maps entity attribute names to domain values (enums, booleans,
  datetimes as the entities hold them);
* the audit ``chain`` is the ``tenant_id`` of its entries (``None`` for the
  system chain);
* reads see this transaction's own writes; nothing is visible to other units
  of work before :meth:`TableStore.commit`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from crm_domain.entities import AuditEntry, OutboxMessage, OutboxStatus
from crm_domain.pagination import Page
from crm_domain.ports.analytics import MetricQuery, MetricRow
from crm_domain.queries import AuditQuery, ListQuery


@runtime_checkable
class TableStore(Protocol):
    """One transaction over the stored tables (see the module docstring)."""

    def check_open(self) -> None:
        """Raise :class:`~crm_domain.errors.Unavailable` once the store is closed."""
        ...

    # -- rows --------------------------------------------------------------

    async def get(self, table: str, key: Hashable, tenant: str | None = None) -> Any | None:
        """The row with this primary key (of ``tenant`` when given), or ``None``."""
        ...

    async def find(self, table: str, equal: Mapping[str, Any]) -> list[Any]:
        """Every row whose attributes equal ``equal`` (unordered; ``{}`` is every row)."""
        ...

    async def page(self, table: str, tenant: str | None, query: ListQuery) -> Page[Any]:
        """One page of the rows matching ``query``: newest ``id`` first, after its cursor.

        Filters mean what :func:`crm_domain.queries.matches` says; the page
        holds at most ``query.limit`` rows and a cursor when more follow
        (:func:`crm_domain.pagination.page_from_rows`).
        """
        ...

    async def count(self, table: str, tenant: str | None, query: ListQuery) -> int:
        """How many rows match ``query`` (paging ignored)."""
        ...

    async def insert(self, table: str, row: Any) -> None:
        """Add a row: ``Conflict`` on a taken primary or unique key, ``ValidationError``
        naming the column on a reference to a missing row (or, for a ``same_tenant`` key,
        to another location's row)."""
        ...

    async def insert_new(self, table: str, row: Any) -> bool:
        """Add a row unless its primary key is taken; whether it was added."""
        ...

    async def insert_many(self, table: str, rows: Sequence[Any]) -> None:
        """Add every row or none (the bulk path: one ``COPY``, one ``executemany``)."""
        ...

    async def update(self, table: str, row: Any, tenant: str | None = None) -> bool:
        """Replace the stored row with ``row``'s key; ``False`` when there is none.

        Keys are checked as by :meth:`insert`.
        """
        ...

    async def patch(
        self, table: str, key: Hashable, changes: Mapping[str, Any], tenant: str | None = None
    ) -> bool:
        """Set only the attributes in ``changes`` of one row (of ``tenant`` when given);
        ``False`` when there is none.

        A SQL store sets only those columns (``UPDATE … SET``), so a concurrent
        write to other attributes is not lost; a store may also read the row
        and write it whole.
        """
        ...

    async def delete(self, table: str, key: Hashable, tenant: str | None = None) -> bool:
        """Delete a row applying each referencing key's rule, all or nothing.

        ``False`` when there is no such row; a ``restrict`` key that still
        refers raises :func:`crm_domain.relations.still_referenced`'s
        ``Conflict`` (a location's audit entries count as references).
        """
        ...

    async def compare_and_set(self, table: str, expected: Any, new: Any | None) -> bool:
        """Replace (``new``) or delete (``None``) the row with ``expected``'s key, if it
        still equals ``expected`` — at commit too: a unit of work that raced another one
        on that row fails with ``Conflict``.  ``False`` when it does not equal it now.

        A SQL store compares the columns of ``expected`` that are not null.
        """
        ...

    # -- audit chain ---------------------------------------------------------

    async def lock_chain(self, chain: str | None) -> None:
        """Hold ``chain``'s append lock until the transaction ends.

        ``Unavailable`` when it cannot be had in time, or the store is closed.
        """
        ...

    async def chain_head(self, chain: str | None) -> AuditEntry | None:
        """The last entry of ``chain`` (this transaction's included), under its lock."""
        ...

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Store linked entries (sequence and hashes set), one chain, all or nothing.

        ``Conflict`` when an id is taken (or repeats), ``ValidationError``
        naming ``tenant_id`` when the location does not exist.
        """
        ...

    async def audit_get(self, chain: str | None, entry_id: str) -> AuditEntry | None:
        """One entry of ``chain``, or ``None``."""
        ...

    async def audit_page(self, chain: str | None, query: AuditQuery) -> Page[AuditEntry]:
        """One page of ``chain``'s entries matching ``query``, newest ``id`` first."""
        ...

    async def audit_count(self, chain: str | None, query: AuditQuery) -> int:
        """How many entries of ``chain`` match ``query``."""
        ...

    async def audit_chain(
        self, chain: str | None, after_sequence: int, limit: int
    ) -> Sequence[AuditEntry]:
        """At most ``limit`` entries of ``chain`` after ``after_sequence``, in sequence order.

        An entry that no longer decodes raises
        :class:`~crm_domain.audit_chain.UndecodableEntry` (verification reports it).
        """
        ...

    # -- outbox ----------------------------------------------------------------

    async def outbox_add(self, message: OutboxMessage) -> None:
        """Queue a message; ``Conflict`` when its event id is taken."""
        ...

    async def outbox_claim(
        self, now: datetime, until: datetime, limit: int
    ) -> Sequence[OutboxMessage]:
        """Lease up to ``limit`` due pending messages until ``until``, counting the attempt.

        Due: pending, ``available_at <= now`` and no lease running at ``now``;
        oldest event first; messages another open transaction claimed are
        skipped, and a rollback gives this transaction's leases back.
        """
        ...

    async def outbox_complete(self, event_ids: Sequence[str]) -> bool:
        """Mark messages done; ``False`` (and nothing changed) when one does not exist."""
        ...

    async def outbox_fail(
        self, event_id: str, error: str, retry_at: datetime, *, dead: bool
    ) -> bool:
        """Record a failed attempt (pending again at ``retry_at``, or dead; lease cleared)."""
        ...

    async def outbox_list(self, status: OutboxStatus, limit: int) -> Sequence[OutboxMessage]:
        """Messages in one status, oldest event first."""
        ...

    # -- analytics -----------------------------------------------------------------

    async def metric(self, tenant: str, query: MetricQuery) -> Sequence[MetricRow] | None:
        """The store's own computation of a report, or ``None`` to have it computed.

        ``None`` makes the repository read the location's rows with
        :meth:`find` and apply :func:`crm_domain.metrics.compute_metric`; a SQL
        store answers with aggregates it pushes down instead.
        """
        ...

    # -- the transaction -------------------------------------------------------------

    async def commit(self) -> None:
        """Make every change durable at once, or raise (``Conflict`` on a race) and keep none."""
        ...

    async def rollback(self) -> None:
        """Discard every change and release the transaction's locks and leases."""
        ...


__all__ = ["TableStore"]
