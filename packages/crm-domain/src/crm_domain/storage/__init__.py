"""Storage: the port a gateway author implements, and the repositories written once over it.

* :class:`TableStore` (:mod:`crm_domain.storage.store`) — one transaction's
  access to the tables of :mod:`crm_domain.relations`: rows by table name with
  filters and keyset paging a SQL store pushes down, the audit chain's lock,
  head and append, the outbox, an idempotency compare-and-set, commit and
  rollback, an optional metric pushdown;
* :class:`StoredUnitOfWork` (:mod:`crm_domain.storage.repositories`) — every
  repository of :class:`~crm_domain.ports.gateway.UnitOfWork` and its rules
  (tenant scoping, ``NotFound`` for foreign ids, finders, idempotency,
  sessions, the audit chain's linking, the outbox consumer's rules) over a
  table store.

A gateway is then a factory of table stores: ``unit_of_work(tenant)`` returns
``StoredUnitOfWork(MyStore(...), tenant)``.  See docs/architecture.md.
"""

from crm_domain.storage.repositories import StoredUnitOfWork, TableRepository
from crm_domain.storage.rows import (
    ENTITIES,
    failed,
    is_due,
    key_attributes,
    leased,
    matching,
    page_of,
    relink,
)
from crm_domain.storage.store import TableStore

__all__ = [
    "ENTITIES",
    "StoredUnitOfWork",
    "TableRepository",
    "TableStore",
    "failed",
    "is_due",
    "key_attributes",
    "leased",
    "matching",
    "page_of",
    "relink",
]
