"""Recording every access to protected data (the HIPAA audit trail).

Every use-case call produces exactly one :class:`~crm_domain.entities.AuditEntry`:

* a successful **write** appends its entry in the same unit of work as the
  data and the outbox events, so all three commit together or not at all;
* a **read**, and any **refused or failed** call, hands its entry to an
  :class:`AuditRecorder`, whose ``record`` returns only once the entry is
  durable.  Services record reads *before* returning the data, so PHI never
  leaves the domain unaudited: if the audit store is down the caller gets
  ``Unavailable`` instead of the data.

:class:`DirectAuditRecorder` appends and commits each entry in its own unit of
work; the HTTP layer may supply a recorder that group-commits entries of many
concurrent requests (same contract: return only when durable).

Entries carry ids, the caller's request facts and the outcome — never field
values, so the trail itself holds no PHI.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

from crm_domain.context import Context
from crm_domain.entities import AuditEntry, AuditOutcome
from crm_domain.errors import CrmError, NotFound, PermissionDenied, ValidationError
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway


class AuditAction(enum.StrEnum):
    """What a use case did to the audited resource."""

    READ = "READ"
    LIST = "LIST"
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    SEND = "SEND"
    VERIFY = "VERIFY"


@runtime_checkable
class AuditRecorder(Protocol):
    """Makes an audit entry durable outside a use case's own unit of work."""

    async def record(self, entry: AuditEntry) -> None:
        """Append ``entry`` to its chain; return only once it is durable.

        Raises ``Unavailable`` when the audit store cannot take it.
        """
        ...


class DirectAuditRecorder:
    """Appends each entry in its own unit of work and commits it at once.

    The unit of work is bound to the entry's location (``None``: the system chain).
    """

    def __init__(self, gateway: DatabaseGateway) -> None:
        self._gateway = gateway

    async def record(self, entry: AuditEntry) -> None:
        """Append and commit one entry."""
        async with self._gateway.unit_of_work(entry.tenant_id) as uow:
            await uow.audit.append(entry)
            await uow.commit()


def outcome_of(error: BaseException) -> AuditOutcome:
    """``denied`` for a permission refusal, ``failed`` for anything else."""
    return AuditOutcome.DENIED if isinstance(error, PermissionDenied) else AuditOutcome.FAILED


def describe_failure(error: BaseException) -> str:
    """A PHI-free description of an error for the audit trail.

    Error messages can echo input (``not a phone number: '+61…'``), so only the
    error's kind — and for validation errors the field name — is kept.
    """
    if isinstance(error, ValidationError):
        return f"ValidationError: {error.field}"
    if isinstance(error, PermissionDenied | NotFound):
        return f"{type(error).__name__}: {error.detail}"[:2000]
    if isinstance(error, CrmError):
        return type(error).__name__
    return f"error: {type(error).__name__}"


class AuditEntryFactory:
    """Builds audit entries from a :class:`Context` with the injected clock and ids."""

    def __init__(self, clock: Clock, ids: IdFactory) -> None:
        self._clock = clock
        self._ids = ids

    def build(
        self,
        ctx: Context,
        action: AuditAction | str,
        resource_type: str,
        resource_id: str | None = None,
        *,
        outcome: AuditOutcome = AuditOutcome.SUCCESS,
        detail: str | None = None,
        tenant_id: str | None = None,
        use_context_tenant: bool = True,
    ) -> AuditEntry:
        """An entry for ``ctx`` doing ``action`` on ``resource_type``/``resource_id``.

        The entry's chain is ``ctx.tenant_id`` unless ``tenant_id`` is given, or
        ``use_context_tenant`` is false (then ``tenant_id``, possibly ``None`` —
        the system chain).
        """
        chain = tenant_id if tenant_id is not None or not use_context_tenant else ctx.tenant_id
        return AuditEntry(
            id=self._ids.new_id(),
            tenant_id=chain,
            user_id=ctx.user_id,
            action=str(action),
            resource_type=resource_type,
            resource_id=resource_id,
            outcome=outcome,
            ip_address=_clip(ctx.client_ip, 64),
            user_agent=_clip(ctx.user_agent, 500),
            request_id=_clip(ctx.request_id, 64),
            request_method=_clip(ctx.request_method, 16),
            request_path=_clip(ctx.request_path, 2000),
            detail=_clip(detail, 2000),
            occurred_at=self._clock.now(),
        )


def _clip(value: str | None, length: int) -> str | None:
    # Request facts come from the outside world; a too-long user agent must not
    # make the audit entry (and so the whole request) fail validation.
    if value is None:
        return None
    return value.replace("\x00", "")[:length]


__all__ = [
    "AuditAction",
    "AuditEntryFactory",
    "AuditRecorder",
    "DirectAuditRecorder",
    "describe_failure",
    "outcome_of",
]
