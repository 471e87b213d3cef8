"""The one dependency every handler takes: ``crm``, the request's pipeline state and the runtime.

One dependency, not four: Litestar resolves several dependencies of one
handler concurrently in an anyio task group, which costs more than the whole
pipeline on the hot read path.  ``SkipValidation``: these are live objects
built by the pipeline, not client input.
"""

from __future__ import annotations

from typing import Any

import attrs
from crm_domain.bootstrap import Services
from crm_domain.context import Context
from litestar import Request
from litestar.params import SkipValidation

from crm_http_litestar.pipeline import STATE_KEY, RequestState, request_state
from crm_http_litestar.problems import Unauthenticated
from crm_http_litestar.routes._query import CursorSeal
from crm_http_litestar.runtime import CrmRuntime


@attrs.frozen(slots=True)
class Crm:
    """What a handler needs: who is asking (``ctx``), the use cases, the request's state."""

    pipeline: RequestState
    runtime: CrmRuntime

    @property
    def ctx(self) -> Context:
        """The caller's context (tenant, user, roles, client facts)."""
        context = self.pipeline.context
        if context is None:
            raise Unauthenticated("not signed in")
        return context

    @property
    def services(self) -> Services:
        """The domain's use cases."""
        return self.runtime.services

    @property
    def cursors(self) -> CursorSeal:
        """Seals this list's cursors to it and the location, and opens only those."""
        return CursorSeal(
            self.runtime.settings.require_secret(),
            tenant_id=self.pipeline.tenant_id,
            path=self.pipeline.path,
        )


def provide_crm(request: Request[Any, Any, Any]) -> Crm:
    """Litestar provider of ``crm``."""
    return Crm(pipeline=request_state(request), runtime=request.app.state[STATE_KEY])


CrmDep = SkipValidation[Crm]
