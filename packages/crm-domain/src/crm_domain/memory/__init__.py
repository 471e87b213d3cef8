"""In-memory adapters for every storage and delivery port.

* :class:`InMemoryGateway` — the reference :class:`~crm_domain.ports.gateway.DatabaseGateway`
  (``CRM_DATABASE_URL=memory://``); its module docstring states the semantics
  every gateway shares; the keys and foreign keys every gateway enforces are
  :mod:`crm_domain.relations`, and the report metrics :mod:`crm_domain.metrics`;
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
    create_gateway,
)

__all__ = [
    "CHAIN_LOCK_TIMEOUT",
    "InMemoryGateway",
    "InMemoryQueue",
    "InMemoryUnitOfWork",
    "RecordingMailer",
    "RecordingSmsSender",
    "RuleOfThumbAI",
    "create_gateway",
]
