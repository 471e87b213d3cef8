"""Handler parameter types for the plugin's dependencies.

``skip_validation``: these are live objects built by the pipeline, not client
input — converting them on every request would cost time and fail on types
msgspec cannot build (ip networks in the settings).
"""

from __future__ import annotations

from crm_domain.bootstrap import Services
from crm_domain.context import Context
from litestar.params import SkipValidation

from crm_http_litestar.pipeline import RequestState
from crm_http_litestar.runtime import CrmRuntime

CtxDep = SkipValidation[Context]
ServicesDep = SkipValidation[Services]
PipelineDep = SkipValidation[RequestState]
RuntimeDep = SkipValidation[CrmRuntime]
