"""Model-backed providers: Cloudflare Workers AI and OpenAI-compatible servers."""

from crm_ai.remote.provider import (
    OpenAICompatibleProvider,
    ProviderDown,
    RemoteProvider,
    WorkersAIProvider,
    openai_factory,
    workers_ai_factory,
)
from crm_ai.remote.settings import RemoteSettings

__all__ = [
    "OpenAICompatibleProvider",
    "ProviderDown",
    "RemoteProvider",
    "RemoteSettings",
    "WorkersAIProvider",
    "openai_factory",
    "workers_ai_factory",
]
