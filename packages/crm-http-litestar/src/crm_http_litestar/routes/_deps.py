"""Handler parameter types for the plugin's dependencies.

``skip_validation``: these are live objects built by the pipeline, not client
input — converting them on every request would cost time and fail on types
msgspec cannot build (ip networks in the settings).
"""

from __future__ import annotations

from typing import Annotated

from crm_domain.bootstrap import Services
from crm_domain.context import Context
from litestar.params import Dependency

from crm_http_litestar.pipeline import RequestState
from crm_http_litestar.runtime import CrmRuntime

CtxDep = Annotated[Context, Dependency(skip_validation=True)]
ServicesDep = Annotated[Services, Dependency(skip_validation=True)]
PipelineDep = Annotated[RequestState, Dependency(skip_validation=True)]
RuntimeDep = Annotated[CrmRuntime, Dependency(skip_validation=True)]
