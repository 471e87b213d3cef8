"""The gateway conformance kit: one pytest suite every ``DatabaseGateway`` must pass.

Install the extra (``pip install 'crm-domain[testing]'``), then subclass the
kit in your adapter's tests and provide ONE async fixture, ``gateway``, that
yields a fresh, empty, migrated gateway for each test::

    # tests/test_conformance_mygateway.py
    import pytest
    from crm_domain.testing import GatewayConformance
    from my_gateway import MyGateway

    class TestMyGateway(GatewayConformance):
        @pytest.fixture
        async def gateway(self, tmp_path):
            gateway = MyGateway(f"sqlite+aiosqlite:///{tmp_path / 'kit.db'}")
            await gateway.migrate()
            yield gateway
            await gateway.close()

Run it with ``pytest``; the kit's tests are collected as methods of your
class.  ``GatewayConformance`` is every conformance class at once; subclass
single classes (``RepositoryConformance``, ``OutboxConformance``, …) to run
parts, e.g. while an adapter is incomplete.  Tests run on asyncio through
anyio's pytest plugin (override the ``anyio_backend`` fixture for another
backend).

What it checks, for every repository:

* round trips — add/get/update/delete with Unicode (emoji, right-to-left
  text), maximum lengths, ``None`` optionals, datetimes with non-UTC offsets
  (the same instant must come back, microseconds kept);
* filters — every filter field of every query class, read from the queries'
  attrs metadata and compared with :func:`crm_domain.queries.matches`;
  combined filters; search;
* cursor pagination — id descending, no duplicates or gaps while rows are
  inserted between pages, no trailing empty page;
* tenant isolation — another location cannot get, list, count, update or
  delete; a unit of work without location is refused; references cannot
  cross locations;
* units of work — an exception, ``rollback()`` or leaving without commit
  discards data, outbox events and audit entries together; uncommitted writes
  are invisible to others; a refused write leaves the unit of work usable;
  ``add_many`` is all or nothing;
* keys — duplicate ids and unique keys raise ``Conflict``; missing
  references raise ``ValidationError`` naming the column; the delete rules of
  :mod:`crm_domain.relations` (cascade, set null, restrict);
* outbox — oldest event first, leases, lapsed leases reclaimed, complete,
  retry, dead letter, concurrent consumers never share a message;
* audit — no update or delete on the port, sequences and hashes per chain
  verified with :func:`crm_domain.audit_chain.verify_chain`, independent
  chains per location;
* concurrency — 20 concurrent units of work all land and the chain holds;
* analytics — every metric and dimension against a data set with known
  answers, local days across a daylight-saving change, and every metric on
  Hypothesis-generated data around daylight-saving changes against an oracle
  written out longhand (12 examples);
* properties — Hypothesis draws random contacts (mixed scripts, offsets,
  microseconds) and random combined queries; listing, paging and counting
  must agree with :func:`crm_domain.queries.matches` (20 examples);
* idempotency keys — reserve twice is ``Conflict`` (also between concurrent
  units of work), complete then get, release then reserve again, a stale
  reservation taken over by exactly one of several contenders, completion
  racing a take-over, tenant isolation;
* suppression list — one address per location and channel, ``find_address``
  and ids invisible to another location, not-found after delete;
* coverage — every CRUD repository of the ``UnitOfWork`` port has a kit
  description, so a new repository cannot slip past the kit.

Data sets are small (a few dozen rows per test) so the kit stays quick on
gateways that cost a network round trip per statement.  Parents are always
created before children, as stores with foreign keys require.
"""

from crm_domain.testing._access import AccessStoreConformance
from crm_domain.testing._analytics import AnalyticsConformance, AnalyticsPropertyConformance
from crm_domain.testing._base import GatewayKit, assert_same
from crm_domain.testing._idempotency import IdempotencyConformance
from crm_domain.testing._outbox_audit import AuditConformance, OutboxConformance
from crm_domain.testing._properties import PropertyConformance
from crm_domain.testing._repositories import (
    FilterConformance,
    PaginationConformance,
    RepositoryConformance,
    TenantIsolationConformance,
)
from crm_domain.testing._specs import SPECS, RepoSpec
from crm_domain.testing._suppressions import SuppressionConformance
from crm_domain.testing._transactions import (
    ConcurrencyConformance,
    ConstraintConformance,
    DeleteRulesConformance,
    UnitOfWorkConformance,
)
from crm_domain.testing._world import World


class GatewayConformance(
    RepositoryConformance,
    FilterConformance,
    PaginationConformance,
    TenantIsolationConformance,
    ConstraintConformance,
    DeleteRulesConformance,
    UnitOfWorkConformance,
    ConcurrencyConformance,
    OutboxConformance,
    AuditConformance,
    AnalyticsConformance,
    AnalyticsPropertyConformance,
    AccessStoreConformance,
    IdempotencyConformance,
    PropertyConformance,
    SuppressionConformance,
):
    """Every conformance test at once; subclass it and provide the ``gateway`` fixture."""


__all__ = [
    "SPECS",
    "AccessStoreConformance",
    "AnalyticsConformance",
    "AnalyticsPropertyConformance",
    "AuditConformance",
    "ConcurrencyConformance",
    "ConstraintConformance",
    "DeleteRulesConformance",
    "FilterConformance",
    "GatewayConformance",
    "GatewayKit",
    "IdempotencyConformance",
    "OutboxConformance",
    "PaginationConformance",
    "PropertyConformance",
    "RepoSpec",
    "RepositoryConformance",
    "SuppressionConformance",
    "TenantIsolationConformance",
    "UnitOfWorkConformance",
    "World",
    "assert_same",
]
