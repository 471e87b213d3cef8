"""Cloudflare D1 DatabaseGateway and Cloudflare Queues producer for the Avatar Imaging CRM.

* :class:`D1Gateway` — ``CRM_DATABASE_URL=d1://ACCOUNT_ID/DATABASE_ID``
  (entry point ``d1``); a unit of work sends its writes, outbox events and
  audit entries to D1 as one atomic batch (:mod:`crm_gateway_d1.uow`);
* :class:`D1Client` — D1's REST API on httpx (limits, retries, error mapping);
* :class:`CloudflareQueue` — a ``QueueGateway`` publishing to Cloudflare Queues;
* :class:`~crm_gateway_d1.local.LocalD1` — a local D1 (Miniflare) for
  development and tests.
"""

from crm_gateway_d1.client import D1Client, D1Conflict, D1QueryError, D1Statement, D1Unavailable
from crm_gateway_d1.gateway import D1Gateway, create_gateway
from crm_gateway_d1.queues import CloudflareQueue
from crm_gateway_d1.uow import D1UnitOfWork

__all__ = [
    "CloudflareQueue",
    "D1Client",
    "D1Conflict",
    "D1Gateway",
    "D1QueryError",
    "D1Statement",
    "D1Unavailable",
    "D1UnitOfWork",
    "create_gateway",
]
