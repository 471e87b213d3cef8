"""SMS senders: ClickSend and MessageMedia over their REST APIs.

Both send one request per call to :meth:`send` (or one per batch with
:meth:`send_batch`), read the provider's status for every message in the answer,
and map failures as the package README describes: 401/403 → a
:class:`~crm_messaging.errors.MessagingConfigurationError`, 429/5xx → retried,
then ``Unavailable``; a message the provider refused → a ``SendResult`` with
``accepted=False``, the provider's status in ``error`` and its id when it gave one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import httpx
from crm_domain.errors import ValidationError
from crm_domain.ports.messaging import OutgoingSms, SendResult

from crm_messaging import _config
from crm_messaging._http import (
    HttpPolicy,
    json_body,
    mask_number,
    new_client,
    refuse_credentials,
    request_with_retries,
)
from crm_messaging.errors import MessagingConfigurationError

log = logging.getLogger("crm_messaging")

CLICKSEND_BASE_URL = "https://rest.clicksend.com/v3"
MESSAGEMEDIA_BASE_URL = "https://api.messagemedia.com"
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
#: ClickSend takes up to 1000 messages per request, MessageMedia up to 100.
CLICKSEND_MAX_BATCH = 1000
MESSAGEMEDIA_MAX_BATCH = 100
#: MessageMedia statuses that mean the message will not be delivered.
MESSAGEMEDIA_FAILED = frozenset({"failed", "rejected", "cancelled", "expired", "undeliverable"})


def sms_policy(settings: Mapping[str, str]) -> HttpPolicy:
    """``CRM_SMS_TIMEOUT``, ``CRM_SMS_MAX_RETRIES`` and ``CRM_SMS_MAX_RETRY_WAIT``."""
    return HttpPolicy(
        timeout=_config.number(settings, "CRM_SMS_TIMEOUT", 10.0, 0.01, 300.0),
        max_retries=_config.integer(settings, "CRM_SMS_MAX_RETRIES", 2, 0, 10),
        max_retry_wait=_config.number(settings, "CRM_SMS_MAX_RETRY_WAIT", 10.0, 0.0, 300.0),
    )


def _check(message: OutgoingSms) -> None:
    if not _E164.match(message.to):
        raise ValidationError("to", "must be a phone number in E.164 (+61412345678)")
    if not message.body:
        raise ValidationError("body", "must not be empty")


class _HttpSmsSender:
    """Pooled client, retries and the common checks; subclasses speak the wire format."""

    provider = "sms"
    max_batch = 1
    credential_settings: tuple[str, ...] = ()
    base_url_setting = ""

    def __init__(self, *, auth: tuple[str, str], policy: HttpPolicy, default_from: str | None):
        self._auth = httpx.BasicAuth(*auth)
        self.policy = policy
        self.default_from = default_from
        self._client: httpx.AsyncClient | None = None
        self._client_lock = anyio.Lock()

    def __repr__(self) -> str:
        # Never the key: repr() ends up in logs and tracebacks.
        return f"<{type(self).__name__} provider={self.provider!r}>"

    async def _http(self) -> httpx.AsyncClient:
        async with self._client_lock:
            if self._client is None:
                self._client = new_client(self.policy, auth=self._auth)
            return self._client

    async def aclose(self) -> None:
        """Close the pooled HTTP connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, message: OutgoingSms) -> SendResult:
        """Send one SMS (see :meth:`send_batch`)."""
        (result,) = await self.send_batch([message])
        return result

    async def send_batch(self, messages: Sequence[OutgoingSms]) -> list[SendResult]:
        """Send the messages in one request; one ``SendResult`` per message, in order."""
        if not messages:
            return []
        if len(messages) > self.max_batch:
            raise ValidationError("messages", f"at most {self.max_batch} per request")
        for message in messages:
            _check(message)
        client = await self._http()
        url, body = self.request(messages)
        response = await request_with_retries(
            self.provider, self.policy, lambda: client.post(url, json=body)
        )
        refuse_credentials(self.provider, response, self.credential_settings)
        if response.status_code in (404, 405):
            raise MessagingConfigurationError(
                f"{self.provider} has no such endpoint (HTTP {response.status_code})",
                settings=(self.base_url_setting,),
            )
        results = self.results(messages, response)
        for message, result in zip(messages, results, strict=True):
            log.info(
                "SMS to %s via %s: %s%s",
                mask_number(message.to),
                self.provider,
                "accepted" if result.accepted else "refused",
                "" if result.accepted else f" ({result.error})",
            )
        return results

    def request(self, messages: Sequence[OutgoingSms]) -> tuple[str, dict[str, Any]]:
        """The URL and JSON body (overridden)."""
        raise NotImplementedError

    def results(
        self, messages: Sequence[OutgoingSms], response: httpx.Response
    ) -> list[SendResult]:
        """One result per message from a non-retryable answer (overridden)."""
        raise NotImplementedError

    def _refused_all(self, messages: Sequence[OutgoingSms], error: str) -> list[SendResult]:
        return [
            SendResult(
                provider=self.provider, provider_message_id=None, accepted=False, error=error
            )
            for _ in messages
        ]


def _error_text(payload: object, *keys: str) -> str | None:
    if isinstance(payload, dict):
        for key in keys:
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value[:200]
    return None


class ClickSendSender(_HttpSmsSender):
    """ClickSend's ``POST /v3/sms/send`` with HTTP basic auth (username, API key)."""

    provider = "clicksend"
    max_batch = CLICKSEND_MAX_BATCH
    credential_settings = ("CRM_CLICKSEND_USERNAME", "CRM_CLICKSEND_API_KEY")
    base_url_setting = "CRM_CLICKSEND_BASE_URL"

    def __init__(
        self,
        *,
        username: str,
        api_key: str,
        base_url: str = CLICKSEND_BASE_URL,
        source: str = "avatar-imaging-crm",
        default_from: str | None = None,
        policy: HttpPolicy | None = None,
    ) -> None:
        super().__init__(
            auth=(username, api_key), policy=policy or HttpPolicy(), default_from=default_from
        )
        self.base_url = base_url.rstrip("/")
        self.source = source

    def request(self, messages: Sequence[OutgoingSms]) -> tuple[str, dict[str, Any]]:
        """``{"messages": [{"source", "from", "to", "body", "custom_string"}]}``."""
        items = []
        for message in messages:
            item: dict[str, Any] = {"source": self.source, "to": message.to, "body": message.body}
            sender = message.sender or self.default_from
            if sender:
                item["from"] = sender
            if message.reference:
                item["custom_string"] = message.reference
            items.append(item)
        return f"{self.base_url}/sms/send", {"messages": items}

    def results(
        self, messages: Sequence[OutgoingSms], response: httpx.Response
    ) -> list[SendResult]:
        """Read ``data.messages[].status`` for every message: "SUCCESS" or the reason."""
        payload = json_body(response)
        if response.status_code >= 400:
            reason = _error_text(payload, "response_code", "response_msg") or "refused"
            return self._refused_all(messages, f"HTTP {response.status_code}: {reason}")
        data = payload.get("data") if isinstance(payload, dict) else None
        entries = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            entries = []
        # ClickSend answers in request order and echoes custom_string; match on it when
        # present, so a reordered answer cannot credit one patient's status to another.
        by_reference = {
            e.get("custom_string"): e
            for e in entries
            if isinstance(e, dict) and e.get("custom_string")
        }
        results = []
        for index, message in enumerate(messages):
            entry: object = None
            if message.reference and message.reference in by_reference:
                entry = by_reference[message.reference]
            elif index < len(entries):
                entry = entries[index]
            if not isinstance(entry, dict):
                results.append(
                    SendResult(
                        provider=self.provider,
                        provider_message_id=None,
                        accepted=False,
                        error="no status for this message in ClickSend's answer",
                    )
                )
                continue
            status = str(entry.get("status") or "UNKNOWN")
            message_id = entry.get("message_id")
            results.append(
                SendResult(
                    provider=self.provider,
                    provider_message_id=str(message_id) if message_id else None,
                    accepted=status == "SUCCESS",
                    error=None if status == "SUCCESS" else status,
                )
            )
        return results


class MessageMediaSender(_HttpSmsSender):
    """MessageMedia's ``POST /v1/messages`` with HTTP basic auth (API key, secret)."""

    provider = "messagemedia"
    max_batch = MESSAGEMEDIA_MAX_BATCH
    credential_settings = ("CRM_MESSAGEMEDIA_API_KEY", "CRM_MESSAGEMEDIA_API_SECRET")
    base_url_setting = "CRM_MESSAGEMEDIA_BASE_URL"

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        base_url: str = MESSAGEMEDIA_BASE_URL,
        delivery_report: bool = True,
        callback_url: str | None = None,
        default_from: str | None = None,
        policy: HttpPolicy | None = None,
    ) -> None:
        super().__init__(
            auth=(api_key, api_secret), policy=policy or HttpPolicy(), default_from=default_from
        )
        self.base_url = base_url.rstrip("/")
        self.delivery_report = delivery_report
        self.callback_url = callback_url

    def request(self, messages: Sequence[OutgoingSms]) -> tuple[str, dict[str, Any]]:
        """``{"messages": [{"content", "destination_number", "source_number",
        "delivery_report", "metadata"}]}``."""
        items = []
        for message in messages:
            item: dict[str, Any] = {
                "content": message.body,
                "destination_number": message.to,
                "delivery_report": self.delivery_report,
                "format": "SMS",
            }
            sender = message.sender or self.default_from
            if sender:
                item["source_number"] = sender
                item["source_number_type"] = (
                    "INTERNATIONAL" if _E164.match(sender) else "ALPHANUMERIC"
                )
            if message.reference:
                # Echoed back with delivery reports and replies.
                item["metadata"] = {"reference": message.reference}
            if self.callback_url:
                item["callback_url"] = self.callback_url
            items.append(item)
        return f"{self.base_url}/v1/messages", {"messages": items}

    def results(
        self, messages: Sequence[OutgoingSms], response: httpx.Response
    ) -> list[SendResult]:
        """202 with ``messages[].message_id`` and ``status`` ("queued"); a 400 refuses
        the whole request (MessageMedia sends all or none)."""
        payload = json_body(response)
        if response.status_code >= 400:
            reason = _error_text(payload, "message") or "refused"
            if isinstance(payload, dict) and isinstance(payload.get("details"), list):
                details = "; ".join(str(d) for d in payload["details"][:3])
                if details:
                    reason = f"{reason}: {details}"[:300]
            return self._refused_all(messages, f"HTTP {response.status_code}: {reason}")
        entries = payload.get("messages") if isinstance(payload, dict) else None
        if not isinstance(entries, list):
            entries = []
        results = []
        for index, _message in enumerate(messages):
            entry = entries[index] if index < len(entries) else None
            if not isinstance(entry, dict):
                results.append(
                    SendResult(
                        provider=self.provider,
                        provider_message_id=None,
                        accepted=False,
                        error="no status for this message in MessageMedia's answer",
                    )
                )
                continue
            status = str(entry.get("status") or "queued").lower()
            message_id = entry.get("message_id")
            failed = status in MESSAGEMEDIA_FAILED
            results.append(
                SendResult(
                    provider=self.provider,
                    provider_message_id=str(message_id) if message_id else None,
                    accepted=not failed,
                    error=status if failed else None,
                )
            )
        return results


def clicksend_factory(settings: Mapping[str, str]) -> ClickSendSender:
    """Entry point ``crm.sms:clicksend``: ``CRM_CLICKSEND_USERNAME``,
    ``CRM_CLICKSEND_API_KEY``, ``CRM_CLICKSEND_BASE_URL``, ``CRM_CLICKSEND_SOURCE``,
    ``CRM_SMS_FROM`` and the ``CRM_SMS_*`` retry settings."""
    why = "for CRM_SMS_PROVIDER=clicksend"
    return ClickSendSender(
        username=_config.required(settings, "CRM_CLICKSEND_USERNAME", why),
        api_key=_config.required(settings, "CRM_CLICKSEND_API_KEY", why),
        base_url=_config.base_url(settings, "CRM_CLICKSEND_BASE_URL", CLICKSEND_BASE_URL),
        source=_config.text(settings, "CRM_CLICKSEND_SOURCE", "avatar-imaging-crm")
        or "avatar-imaging-crm",
        default_from=_config.text(settings, "CRM_SMS_FROM"),
        policy=sms_policy(settings),
    )


def messagemedia_factory(settings: Mapping[str, str]) -> MessageMediaSender:
    """Entry point ``crm.sms:messagemedia``: ``CRM_MESSAGEMEDIA_API_KEY``,
    ``CRM_MESSAGEMEDIA_API_SECRET``, ``CRM_MESSAGEMEDIA_BASE_URL``,
    ``CRM_MESSAGEMEDIA_DELIVERY_REPORT``, ``CRM_MESSAGEMEDIA_CALLBACK_URL``,
    ``CRM_SMS_FROM`` and the ``CRM_SMS_*`` retry settings."""
    why = "for CRM_SMS_PROVIDER=messagemedia"
    callback = _config.text(settings, "CRM_MESSAGEMEDIA_CALLBACK_URL")
    if callback is not None:
        callback = _config.base_url(settings, "CRM_MESSAGEMEDIA_CALLBACK_URL", callback)
    return MessageMediaSender(
        api_key=_config.required(settings, "CRM_MESSAGEMEDIA_API_KEY", why),
        api_secret=_config.required(settings, "CRM_MESSAGEMEDIA_API_SECRET", why),
        base_url=_config.base_url(settings, "CRM_MESSAGEMEDIA_BASE_URL", MESSAGEMEDIA_BASE_URL),
        delivery_report=_config.flag(settings, "CRM_MESSAGEMEDIA_DELIVERY_REPORT", True),
        callback_url=callback,
        default_from=_config.text(settings, "CRM_SMS_FROM"),
        policy=sms_policy(settings),
    )


__all__ = [
    "CLICKSEND_BASE_URL",
    "MESSAGEMEDIA_BASE_URL",
    "ClickSendSender",
    "MessageMediaSender",
    "clicksend_factory",
    "messagemedia_factory",
    "sms_policy",
]
