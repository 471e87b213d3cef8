"""Errors of the messaging adapters (all of them domain errors)."""

from __future__ import annotations

from crm_domain.errors import Unavailable


class MessagingConfigurationError(Unavailable):
    """The provider refused our credentials or address: a setting is wrong.

    It is an ``Unavailable`` (the channel cannot send until an operator fixes the
    configuration, so the HTTP layer answers 503 and the worker keeps the message),
    and ``settings`` names the keys to check.
    """

    def __init__(self, detail: str, *, settings: tuple[str, ...]) -> None:
        super().__init__(f"{detail} (check {', '.join(settings)})")
        self.settings = settings


__all__ = ["MessagingConfigurationError"]
