"""``/webhooks/…``: what providers post to us, outside the staff pipeline.

Webhooks skip token, tenant, IP allowlist and RBAC (there is no staff user);
each route instead declares ``opt["webhook"]`` — the check it makes itself —
and the app refuses to start if a ``/webhooks`` route does not
(:func:`crm_http_litestar.pipeline.check_route_permissions`).  Every call is
audited: the use case it runs writes the entry (as the location's system
user, on the contact's behalf), and a refusal is written by the pipeline's
audit of last resort (``audit_action`` in ``opt``).

* ``/webhooks/sms/clicksend?key=…``: ClickSend's inbound-SMS rule (action
  ``URL``, ``webhook_type`` ``post`` or ``json``) and its delivery receipts.
  ClickSend does not sign, so the ``key`` in the URL names the location
  (``CRM_SMS_WEBHOOK_KEYS``, compared in constant time) and
  ``CRM_SMS_WEBHOOK_ALLOWED_IPS`` may restrict who calls.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import msgspec
from crm_domain.context import Context
from crm_domain.errors import IpNotAllowed, ValidationError
from crm_domain.values import parse_phone
from litestar import Request, Router, post
from litestar.params import FromQuery

from crm_http_litestar.messaging import MAX_WEBHOOK_BYTES, MessagingSettings
from crm_http_litestar.pipeline import RequestState
from crm_http_litestar.problems import Unauthenticated
from crm_http_litestar.routes._deps import Crm, CrmDep

#: Inbound fields of ClickSend's URL action (form or JSON), as documented.
_CLICKSEND_INBOUND = ("from", "to", "body", "message_id")


class WebhookAnswer(msgspec.Struct, omit_defaults=True):
    """What a webhook answers (providers only look at the 200)."""

    status: str
    id: str | None = None


def webhook_opt(name: str, resource: str) -> dict[str, Any]:
    """``opt`` of a webhook route: public to the pipeline, its own check, audited refusals."""
    return {
        "public": True,
        "webhook": name,
        "audit_action": "CREATE",
        "audit_resource": resource,
    }


def find_key_owner(keys: Mapping[str, str], given: str | None) -> str | None:
    """The location code whose key equals ``given``, compared in constant time."""
    if not given:
        return None
    owner: str | None = None
    for code, key in keys.items():
        # Every key is compared (no early exit): the time says nothing about which matched.
        if hmac.compare_digest(key.encode(), given.encode()):
            owner = code
    return owner


async def form_or_json(request: Request[Any, Any, Any], state: RequestState) -> dict[str, Any]:
    """The body as a flat mapping: form-encoded or a JSON object (422 otherwise)."""
    raw = await request.body()
    content_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    try:
        if content_type == "application/x-www-form-urlencoded":
            return {
                k: v[0] for k, v in parse_qs(raw.decode("utf-8"), strict_parsing=bool(raw)).items()
            }
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        state.detail = "malformed body"
        raise ValidationError("body", "not a form-encoded or JSON body") from None
    if not isinstance(data, dict):
        state.detail = "malformed body"
        raise ValidationError("body", "a JSON object is required")
    return data


def _text(fields: Mapping[str, Any], name: str, state: RequestState) -> str:
    value = fields.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        state.detail = f"missing {name}"
        raise ValidationError(name, "is required")
    return value.strip()


def provider_phone(value: str, field: str) -> str:
    """A number as a provider sends it: E.164, or international digits without the ``+``."""
    try:
        return parse_phone(value, field=field)
    except ValidationError:
        if value.isdigit():
            return parse_phone("+" + value, field=field)
        raise


async def _location_for_key(crm: Crm, keys: Mapping[str, str], key: str | None) -> Context:
    state = crm.pipeline
    code = find_key_owner(keys, key)
    if code is None:
        state.detail = "webhook key missing or wrong"
        raise Unauthenticated("the webhook key in the URL is missing or wrong")
    location = await crm.services.access.find_location(code)
    state.tenant_id = location.id
    return Context.system(
        location.id,
        request_id=state.request_id,
        request_method=state.method,
        request_path=state.path,
    )


def _check_sms_caller(messaging: MessagingSettings, state: RequestState) -> None:
    if not messaging.sms_webhook_allows(state.client_ip):
        state.detail = "caller not in CRM_SMS_WEBHOOK_ALLOWED_IPS"
        raise IpNotAllowed("this address may not call the SMS webhooks")


@post(
    "/sms/clicksend",
    opt=webhook_opt("clicksend: key in the URL, optional source-IP allowlist", "sms"),
    summary="ClickSend inbound SMS and delivery receipts",
    description=(
        "ClickSend's inbound-SMS rule (action URL; `webhook_type` post or json) or its delivery"
        " receipts. `key` is the location's `CRM_SMS_WEBHOOK_KEYS` secret (401 if missing or"
        " wrong); `CRM_SMS_WEBHOOK_ALLOWED_IPS` restricts callers (403). A reply is stored,"
        " understood and acted on (confirm, cancel, reschedule or question → task, STOP → opt-out"
        " and one confirmation); a redelivery (same `message_id`) is a 200 that changes nothing."
    ),
    status_code=200,
    request_max_body_size=MAX_WEBHOOK_BYTES,
    security=[],
)
async def clicksend_webhook(
    crm: CrmDep, request: Request[Any, Any, Any], key: FromQuery[str | None] = None
) -> WebhookAnswer:
    """Take in one ClickSend inbound SMS or delivery receipt."""
    state = crm.pipeline
    messaging = crm.runtime.messaging
    _check_sms_caller(messaging, state)
    ctx = await _location_for_key(crm, messaging.sms_webhook_keys, key)
    fields = await form_or_json(request, state)
    sms = crm.services.sms
    if "body" not in fields and ("status" in fields or "status_code" in fields):
        message_id = _text(fields, "message_id", state)
        status = str(fields.get("status") or "").strip().lower()
        delivered = status == "delivered"
        error = None if delivered else str(fields.get("status_text") or status or "not delivered")
        stored = await state.use_case(
            sms.record_delivery_report(
                ctx, "clicksend", message_id, delivered=delivered, error=error
            )
        )
        return WebhookAnswer(status="receipt recorded" if stored else "receipt ignored")
    sender, clinic, body, message_id = (_text(fields, name, state) for name in _CLICKSEND_INBOUND)
    from_number = provider_phone(sender, "from")
    to_number = provider_phone(clinic, "to")
    message = await state.use_case(
        sms.receive_inbound(ctx, from_number, to_number, body, "clicksend", message_id)
    )
    return WebhookAnswer(status="received", id=message.id)


def webhooks_router() -> Router:
    """Routes under ``/webhooks``."""
    return Router(path="/webhooks", route_handlers=[clicksend_webhook], tags=["webhooks"])


__all__ = [
    "WebhookAnswer",
    "find_key_owner",
    "form_or_json",
    "provider_phone",
    "webhook_opt",
    "webhooks_router",
]
