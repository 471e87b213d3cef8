"""In-memory adapters for every storage and delivery port.

* :class:`InMemoryGateway` — the reference :class:`~crm_domain.ports.gateway.DatabaseGateway`
  (``CRM_DATABASE_URL=memory://``), the shared repositories of
  :mod:`crm_domain.storage` over :class:`MemoryTableStore`, the reference
  table store; the semantics every gateway shares are stated in
  :mod:`crm_domain.storage.repositories`, the keys and foreign keys every
  store enforces are :mod:`crm_domain.relations`, and the report metrics
  :mod:`crm_domain.metrics`;
* :class:`InMemoryQueue`, :class:`RecordingMailer`, :class:`RecordingSmsSender`
  — record what they are given, and can be told to fail;
* :class:`RuleOfThumbAI` — a tiny deterministic AI provider (``crm-ai`` holds the real ones).

Clocks and id factories live in :mod:`crm_domain.clock` (``FixedClock``,
``UlidFactory``).
"""

from crm_domain.memory.adapters import InMemoryQueue, RecordingMailer, RecordingSmsSender
from crm_domain.memory.ai import RuleOfThumbAI
from crm_domain.memory.gateway import (
    CHAIN_LOCK_TIMEOUT,
    InMemoryGateway,
    InMemoryUnitOfWork,
    MemoryTableStore,
    create_gateway,
)

__all__ = [
    "CHAIN_LOCK_TIMEOUT",
    "InMemoryGateway",
    "InMemoryQueue",
    "InMemoryUnitOfWork",
    "MemoryTableStore",
    "RecordingMailer",
    "RecordingSmsSender",
    "RuleOfThumbAI",
    "create_gateway",
]
