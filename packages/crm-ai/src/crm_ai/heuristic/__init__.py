"""The offline heuristic provider and its building blocks."""

from crm_ai.heuristic.provider import HeuristicProvider, heuristic_factory

__all__ = ["HeuristicProvider", "heuristic_factory"]
