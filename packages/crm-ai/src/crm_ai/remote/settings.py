"""Settings of the remote providers, read from ``CRM_AI_*`` keys."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from crm_domain.errors import ValidationError
from crm_domain.values import DEFAULT_PHONE_REGION

WORKERS_AI_BASE_URL = "https://api.cloudflare.com/client/v4"
WORKERS_AI_MODEL = "@cf/meta/llama-3.1-8b-instruct"
WORKERS_AI_INTENT_MODEL = "@cf/meta/llama-3.2-1b-instruct"
OPENAI_BASE_URL = "http://127.0.0.1:8000"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(settings: Mapping[str, str], key: str, default: bool) -> bool:
    raw = settings.get(key)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValidationError(key, f"must be true or false, not {raw!r}")


def _number(
    settings: Mapping[str, str], key: str, default: float, low: float, high: float
) -> float:
    raw = settings.get(key)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(key, f"must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise ValidationError(key, f"must be from {low} to {high}")
    return value


@attrs.frozen(slots=True, kw_only=True)
class RemoteSettings:
    """Everything a remote provider needs; see ``from_mapping`` for the keys."""

    base_url: str
    api_token: str | None = attrs.field(default=None, repr=False)
    account_id: str | None = None
    model: str
    intent_model: str
    #: True only when the provider signed a BAA: then prompts may carry PHI.
    baa_covered: bool = False
    timeout: float = 20.0
    max_retries: int = 2
    max_concurrency: int = 4
    breaker_threshold: int = 5
    breaker_reset: float = 30.0
    #: When the provider is down, answer from the heuristics (marked ``fell_back``)
    #: instead of raising ``Unavailable``.
    fallback_on_unavailable: bool = True
    #: ``json_schema`` (vLLM, llama.cpp, Ollama ≥ 0.5, Workers AI) or ``json_object``.
    json_mode: str = "json_schema"
    max_tokens: int = 800
    phone_region: str = DEFAULT_PHONE_REGION
    #: Cap on a server's Retry-After, so one answer cannot park a request for minutes.
    max_retry_wait: float = 10.0

    @classmethod
    def from_mapping(
        cls,
        settings: Mapping[str, str],
        *,
        default_base_url: str,
        default_model: str | None,
        default_intent_model: str | None,
    ) -> RemoteSettings:
        """Read ``CRM_AI_BASE_URL``, ``CRM_AI_API_TOKEN``, ``CRM_AI_ACCOUNT_ID``,
        ``CRM_AI_MODEL``, ``CRM_AI_INTENT_MODEL``, ``CRM_AI_BAA_COVERED``,
        ``CRM_AI_TIMEOUT``, ``CRM_AI_MAX_RETRIES``, ``CRM_AI_MAX_CONCURRENCY``,
        ``CRM_AI_BREAKER_THRESHOLD``, ``CRM_AI_BREAKER_RESET``,
        ``CRM_AI_FALLBACK_ON_UNAVAILABLE``, ``CRM_AI_JSON_MODE``, ``CRM_AI_MAX_TOKENS``,
        ``CRM_AI_PHONE_REGION`` and ``CRM_AI_MAX_RETRY_WAIT``."""
        model = settings.get("CRM_AI_MODEL") or default_model
        if not model:
            raise ValidationError("CRM_AI_MODEL", "is required for this provider")
        json_mode = settings.get("CRM_AI_JSON_MODE", "json_schema").strip().lower()
        if json_mode not in {"json_schema", "json_object"}:
            raise ValidationError("CRM_AI_JSON_MODE", "must be json_schema or json_object")
        base_url = (settings.get("CRM_AI_BASE_URL") or default_base_url).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ValidationError("CRM_AI_BASE_URL", "must be an http(s) URL")
        return cls(
            base_url=base_url,
            api_token=settings.get("CRM_AI_API_TOKEN") or None,
            account_id=settings.get("CRM_AI_ACCOUNT_ID") or None,
            model=model,
            intent_model=settings.get("CRM_AI_INTENT_MODEL") or default_intent_model or model,
            baa_covered=_flag(settings, "CRM_AI_BAA_COVERED", False),
            timeout=_number(settings, "CRM_AI_TIMEOUT", 20.0, 0.01, 600.0),
            max_retries=int(_number(settings, "CRM_AI_MAX_RETRIES", 2, 0, 10)),
            max_concurrency=int(_number(settings, "CRM_AI_MAX_CONCURRENCY", 4, 1, 256)),
            breaker_threshold=int(_number(settings, "CRM_AI_BREAKER_THRESHOLD", 5, 1, 1000)),
            breaker_reset=_number(settings, "CRM_AI_BREAKER_RESET", 30.0, 0.0, 3600.0),
            fallback_on_unavailable=_flag(settings, "CRM_AI_FALLBACK_ON_UNAVAILABLE", True),
            json_mode=json_mode,
            max_tokens=int(_number(settings, "CRM_AI_MAX_TOKENS", 800, 16, 32768)),
            phone_region=settings.get("CRM_AI_PHONE_REGION", DEFAULT_PHONE_REGION).upper(),
            max_retry_wait=_number(settings, "CRM_AI_MAX_RETRY_WAIT", 10.0, 0.0, 300.0),
        )


__all__ = [
    "OPENAI_BASE_URL",
    "WORKERS_AI_BASE_URL",
    "WORKERS_AI_INTENT_MODEL",
    "WORKERS_AI_MODEL",
    "RemoteSettings",
]
