"""Messaging and webhook settings of the server, read from ``Settings.adapter_settings``.

Kept apart from :mod:`crm_http_litestar.settings` (whose fields the whole
server shares): these keys matter only to ``/api/sms`` and ``/webhooks/…``.
Per-location values are ``code=value`` lists, comma- or space-separated
(``CRM_SMS_NUMBERS="sydney=+61290000000 melbourne=+61390000000"``).

Under ``crm serve --demo`` what is not configured gets a demo value: the
logging SMS sender, made-up clinic numbers, and webhook keys derived from the
demo's signing key (stable across restarts, printed at start).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Mapping
from pathlib import Path

import attrs
from crm_domain.errors import ValidationError
from crm_domain.plugins import load_mailer, load_sms_sender
from crm_domain.ports.messaging import Mailer, SmsSender
from crm_domain.services import UnsubscribeLinks
from crm_domain.values import parse_phone

from crm_http_litestar.settings import Network, Settings, parse_networks

logger = logging.getLogger("crm_http_litestar.messaging")

#: Clinic numbers of the demo's two locations (Australian test-range numbers).
DEMO_SMS_NUMBERS = {"sydney": "+61291500000", "melbourne": "+61391500000"}
#: Largest webhook body accepted (Wix JWTs and SMS posts are a few kB).
MAX_WEBHOOK_BYTES = 64 * 1024


def _pairs(raw: str, setting: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in raw.replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValidationError(setting, f"expected code=value items, got {item!r}")
        pairs[key.strip().lower()] = value.strip()
    return pairs


def demo_key(secret: str, purpose: str, code: str) -> str:
    """A demo webhook key: derived from the signing key, so it survives a restart."""
    digest = hmac.new(secret.encode(), f"{purpose}:{code}".encode(), hashlib.sha256).hexdigest()
    return digest[:32]


def _wix_public_key(env: Mapping[str, str]) -> str | None:
    path = env.get("CRM_WIX_PUBLIC_KEY_FILE", "").strip()
    if path:
        try:
            return Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValidationError("CRM_WIX_PUBLIC_KEY_FILE", f"cannot read {path}: {exc}") from None
    raw = env.get("CRM_WIX_PUBLIC_KEY", "").strip()
    # An environment variable often carries the PEM with literal "\n" between lines.
    return raw.replace("\\n", "\n") or None


@attrs.frozen(kw_only=True)
class MessagingSettings:
    """SMS and webhook settings (docs/contract.md, README "Messaging and webhooks")."""

    #: ``CRM_SMS_PROVIDER``: ``clicksend``, ``messagemedia``, ``log``; ``None`` sends nothing.
    sms_provider: str | None = None
    #: ``CRM_SMS_NUMBERS``: the clinic number (E.164) each location texts from and receives on.
    sms_numbers: Mapping[str, str] = attrs.field(factory=dict)
    #: ``CRM_SMS_WEBHOOK_KEYS``: the secret in each location's inbound-SMS webhook URL.
    sms_webhook_keys: Mapping[str, str] = attrs.field(factory=dict)
    #: ``CRM_SMS_WEBHOOK_ALLOWED_IPS``: who may call the SMS webhooks (empty: anyone).
    sms_webhook_networks: tuple[Network, ...] = ()
    #: ``CRM_WIX_PUBLIC_KEY`` (PEM) or ``CRM_WIX_PUBLIC_KEY_FILE``: verifies Wix's RS256 JWTs.
    wix_public_key: str | None = None
    #: ``CRM_WIX_SITES``: Wix site (app instance id) → location code.
    wix_sites: Mapping[str, str] = attrs.field(factory=dict)
    #: ``CRM_MANYCHAT_KEYS``: the shared secret ManyChat sends (``X-CRM-Key``), per location.
    manychat_keys: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> MessagingSettings:
        """Read the keys from the server's settings (``ValidationError`` naming a bad one)."""
        env = settings.adapter_settings
        numbers = {
            code: parse_phone(number, field="CRM_SMS_NUMBERS")
            for code, number in _pairs(env.get("CRM_SMS_NUMBERS", ""), "CRM_SMS_NUMBERS").items()
        }
        sms_keys = _pairs(env.get("CRM_SMS_WEBHOOK_KEYS", ""), "CRM_SMS_WEBHOOK_KEYS")
        manychat = _pairs(env.get("CRM_MANYCHAT_KEYS", ""), "CRM_MANYCHAT_KEYS")
        for setting, keys in (("CRM_SMS_WEBHOOK_KEYS", sms_keys), ("CRM_MANYCHAT_KEYS", manychat)):
            short = [code for code, key in keys.items() if len(key) < 16]
            if short:
                raise ValidationError(setting, f"keys must be at least 16 characters: {short}")
        sites = {
            site: code.lower()
            for site, code in _pairs(env.get("CRM_WIX_SITES", ""), "CRM_WIX_SITES").items()
        }
        provider = env.get("CRM_SMS_PROVIDER", "").strip().lower() or None
        if settings.demo:
            provider = provider or "log"
            secret = settings.require_secret()
            for code, number in DEMO_SMS_NUMBERS.items():
                numbers.setdefault(code, number)
                sms_keys.setdefault(code, demo_key(secret, "sms", code))
                manychat.setdefault(code, demo_key(secret, "manychat", code))
        return cls(
            sms_provider=provider,
            sms_numbers=numbers,
            sms_webhook_keys=sms_keys,
            sms_webhook_networks=parse_networks(
                env.get("CRM_SMS_WEBHOOK_ALLOWED_IPS", ""), setting="CRM_SMS_WEBHOOK_ALLOWED_IPS"
            ),
            wix_public_key=_wix_public_key(env),
            wix_sites=sites,
            manychat_keys=manychat,
        )

    def sms_webhook_allows(self, client_ip: str | None) -> bool:
        """Whether the SMS webhooks accept a call from ``client_ip`` (any, without an allowlist)."""
        if not self.sms_webhook_networks:
            return True
        if client_ip is None:
            return False
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        return any(address in network for network in self.sms_webhook_networks)


def load_optional_sms_sender(settings: Settings, messaging: MessagingSettings) -> SmsSender | None:
    """The configured SMS sender, or ``None`` when ``CRM_SMS_PROVIDER`` is not set."""
    if messaging.sms_provider is None:
        return None
    return load_sms_sender(messaging.sms_provider, settings.adapter_settings)


async def close_sms_sender(sender: SmsSender | None) -> None:
    """Close a sender's pooled connections if it has any (``aclose``)."""
    aclose = getattr(sender, "aclose", None)
    if aclose is not None:
        await aclose()


def load_optional_mailer(settings: Settings) -> Mailer | None:
    """The mailer ``CRM_MAIL_PROVIDER`` names (``smtp``, ``gmail``, ``log``); ``None`` unset.

    The demo logs email instead of sending it unless a provider is named.
    """
    provider = settings.adapter_settings.get("CRM_MAIL_PROVIDER", "").strip().lower()
    if not provider and settings.demo:
        provider = "log"
    return load_mailer(provider, settings.adapter_settings) if provider else None


def campaign_links(settings: Settings) -> UnsubscribeLinks:
    """Campaign unsubscribe links under ``CRM_PUBLIC_URL`` signed with a key from the secret.

    The key is derived from ``CRM_SECRET_KEY``, so every process (server, workers)
    signs and checks the same links, and rotating the secret voids old ones.
    """
    base = settings.adapter_settings.get("CRM_PUBLIC_URL", "").strip() or "http://localhost:8000"
    key = hmac.new(
        settings.require_secret().encode(), b"campaign-unsubscribe", hashlib.sha256
    ).digest()
    return UnsubscribeLinks(f"{base.rstrip('/')}/campaigns/unsubscribe", key)


__all__ = [
    "DEMO_SMS_NUMBERS",
    "MAX_WEBHOOK_BYTES",
    "MessagingSettings",
    "campaign_links",
    "close_sms_sender",
    "demo_key",
    "load_optional_mailer",
    "load_optional_sms_sender",
]
