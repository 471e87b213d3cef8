"""Finding adapters by configuration, through entry points.

Each port has one entry-point group.  A gateway is chosen by the scheme of
``CRM_DATABASE_URL`` (``sqlite+aiosqlite``, ``postgresql+asyncpg``, ``d1``,
``memory``) in the ``crm.gateways`` group; an AI provider by the name in
``CRM_AI_PROVIDER`` in the ``crm.ai`` group; an SMS sender by ``CRM_SMS_PROVIDER``
in ``crm.sms`` and a mailer by ``CRM_MAIL_PROVIDER`` in ``crm.mail``.  An entry
point names a factory:

* gateways: ``factory(url: str, **options) -> DatabaseGateway``
* AI providers: ``factory(settings: Mapping[str, str]) -> AIProvider``
* SMS senders and mailers: ``factory(settings: Mapping[str, str]) -> SmsSender | Mailer``

So a third-party adapter is ``pip install`` plus a setting.  A missing adapter
fails with an error naming the package to install.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

from crm_domain.errors import ValidationError
from crm_domain.ports.ai import AIProvider
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.ports.messaging import Mailer, SmsSender

GATEWAY_GROUP = "crm.gateways"
AI_GROUP = "crm.ai"
SMS_GROUP = "crm.sms"
MAIL_GROUP = "crm.mail"

#: The package that provides each well-known name, for the error message.
KNOWN_PACKAGES = {
    "sqlite+aiosqlite": "crm-gateway-sql",
    "sqlite": "crm-gateway-sql",
    "postgresql+asyncpg": "crm-gateway-sql",
    "postgresql": "crm-gateway-sql",
    "d1": "crm-gateway-d1",
    "heuristic": "crm-ai",
    "workers-ai": "crm-ai",
    "openai": "crm-ai",
    "clicksend": "crm-messaging",
    "messagemedia": "crm-messaging",
    "log": "crm-messaging",
    "smtp": "crm-messaging",
    "gmail": "crm-messaging",
}


class AdapterNotInstalled(ValidationError):
    """No installed package provides the configured adapter."""


@functools.cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def _load(group: str, name: str, setting: str) -> Callable[..., Any]:
    ep = _entry_points(group).get(name)
    if ep is None:
        package = KNOWN_PACKAGES.get(name)
        hint = f"; install {package!r}" if package else ""
        available = ", ".join(sorted(_entry_points(group))) or "none"
        raise AdapterNotInstalled(
            setting, f"no adapter named {name!r} is installed{hint} (available: {available})"
        )
    return cast("Callable[..., Any]", ep.load())


def url_scheme(url: str) -> str:
    """The scheme of a database URL (``sqlite+aiosqlite:///x.db`` → ``sqlite+aiosqlite``)."""
    scheme, sep, _rest = url.partition("://")
    if not sep or not scheme:
        raise ValidationError("CRM_DATABASE_URL", f"not a URL: {url!r}")
    return scheme.lower()


def load_gateway(url: str, **options: Any) -> DatabaseGateway:
    """Build the gateway whose entry point is named by the URL's scheme."""
    factory = _load(GATEWAY_GROUP, url_scheme(url), "CRM_DATABASE_URL")
    gateway = factory(url, **options)
    if not isinstance(gateway, DatabaseGateway):
        raise TypeError(f"{factory!r} did not return a DatabaseGateway")
    return gateway


def load_ai(name: str, settings: Mapping[str, str] | None = None) -> AIProvider:
    """Build the AI provider registered under ``name``."""
    factory = _load(AI_GROUP, name.lower(), "CRM_AI_PROVIDER")
    provider = factory(dict(settings or {}))
    if not isinstance(provider, AIProvider):
        raise TypeError(f"{factory!r} did not return an AIProvider")
    return provider


def load_sms_sender(name: str, settings: Mapping[str, str] | None = None) -> SmsSender:
    """Build the SMS sender registered under ``name`` (``CRM_SMS_PROVIDER``)."""
    factory = _load(SMS_GROUP, name.strip().lower(), "CRM_SMS_PROVIDER")
    sender = factory(dict(settings or {}))
    if not isinstance(sender, SmsSender):
        raise TypeError(f"{factory!r} did not return an SmsSender")
    return sender


def load_mailer(name: str, settings: Mapping[str, str] | None = None) -> Mailer:
    """Build the mailer registered under ``name`` (``CRM_MAIL_PROVIDER``)."""
    factory = _load(MAIL_GROUP, name.strip().lower(), "CRM_MAIL_PROVIDER")
    mailer = factory(dict(settings or {}))
    if not isinstance(mailer, Mailer):
        raise TypeError(f"{factory!r} did not return a Mailer")
    return mailer


__all__ = [
    "AI_GROUP",
    "GATEWAY_GROUP",
    "KNOWN_PACKAGES",
    "MAIL_GROUP",
    "SMS_GROUP",
    "AdapterNotInstalled",
    "load_ai",
    "load_gateway",
    "load_mailer",
    "load_sms_sender",
    "url_scheme",
]
