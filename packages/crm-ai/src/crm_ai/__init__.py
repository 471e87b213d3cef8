"""AI providers for the Avatar Imaging CRM.

* :class:`~crm_ai.heuristic.HeuristicProvider` (``heuristic``): offline rules, the default;
* :class:`~crm_ai.remote.WorkersAIProvider` (``workers-ai``): Cloudflare Workers AI;
* :class:`~crm_ai.remote.OpenAICompatibleProvider` (``openai``): vLLM, llama.cpp, Ollama.
"""

from crm_ai.heuristic import HeuristicProvider, heuristic_factory

__all__ = ["HeuristicProvider", "heuristic_factory"]
