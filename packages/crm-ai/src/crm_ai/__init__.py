"""AI providers for the Avatar Imaging CRM: offline heuristics, Workers AI, OpenAI-compatible servers."""
