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
  ``/webhooks/sms/messagemedia?key=…`` takes MessageMedia's replies and
  delivery reports the same way.
* ``/webhooks/wix``: Wix Bookings; the body is a JWT signed RS256 by Wix
  (:mod:`crm_http_litestar.wix`), the site maps to a location through
  ``CRM_WIX_SITES``.  The receipt, the contact and an outbox event are stored
  in one unit of work and the answer is a 200 at once; the worker applies the
  booking.
* ``/webhooks/manychat``: ManyChat's External Request (``Full Contact Data``
  body) with the shared secret in ``X-CRM-Key`` (``CRM_MANYCHAT_KEYS``, compared
  in constant time): the lead's contact is created or completed and a chat
  touchpoint added; the answer is a Dynamic Block (``version: v2``).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import msgspec
from crm_domain.context import Context
from crm_domain.errors import IpNotAllowed, Unavailable, ValidationError
from crm_domain.services import LeadMessage, PersonDetails
from crm_domain.values import parse_phone
from litestar import Request, Router, post
from litestar.params import FromQuery

from crm_http_litestar.messaging import MAX_WEBHOOK_BYTES, MessagingSettings
from crm_http_litestar.pipeline import RequestState
from crm_http_litestar.problems import Unauthenticated
from crm_http_litestar.routes._deps import Crm, CrmDep
from crm_http_litestar.routes._docs import PublicOperation, responses
from crm_http_litestar.wix import read_event, verify

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
    return await _system_context(crm, code)


async def _system_context(crm: Crm, code: str) -> Context:
    """The location's system user, acting for the sender; the refusals audit there too."""
    state = crm.pipeline
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
    operation_class=PublicOperation,
    responses=responses(401, 403, 413, 422, 429, 503),
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
    if "body" not in fields and ("status" in fields or "status_code" in fields):
        message_id = _text(fields, "message_id", state)
        status = str(fields.get("status") or "")
        detail = fields.get("status_text")
        return await _delivery_report(
            crm, ctx, "clicksend", message_id, status, None if detail is None else str(detail)
        )
    sender, clinic, body, message_id = (_text(fields, name, state) for name in _CLICKSEND_INBOUND)
    return await _reply(crm, ctx, "clicksend", sender, clinic, body, message_id)


#: Final failure statuses of delivery receipts (ClickSend's and MessageMedia's, lower case);
#: intermediate ones (``enroute``, ``submitted``, ``queued`` …) change nothing.
_UNDELIVERED = frozenset({"undelivered", "failed", "expired", "rejected", "cancelled", "canceled"})


async def _delivery_report(
    crm: Crm, ctx: Context, provider: str, message_id: str, status: str, detail: str | None
) -> WebhookAnswer:
    state = crm.pipeline
    status = status.strip().lower()
    if status != "delivered" and status not in _UNDELIVERED:
        state.keep_audit(f"{provider} receipt {status or 'without status'}: intermediate")
        return WebhookAnswer(status="receipt ignored")
    stored = await state.use_case(
        crm.services.sms.record_delivery_report(
            ctx,
            provider,
            message_id,
            delivered=status == "delivered",
            error=None if status == "delivered" else (detail or status),
        )
    )
    return WebhookAnswer(status="receipt recorded" if stored else "receipt ignored")


async def _reply(
    crm: Crm, ctx: Context, provider: str, sender: str, clinic: str, body: str, message_id: str
) -> WebhookAnswer:
    """Store a patient's reply and act on it (``SmsService.receive_inbound``)."""
    from_number = provider_phone(sender, "from")
    to_number = provider_phone(clinic, "to")
    message = await crm.pipeline.use_case(
        crm.services.sms.receive_inbound(ctx, from_number, to_number, body, provider, message_id)
    )
    return WebhookAnswer(status="received", id=message.id)


@post(
    "/sms/messagemedia",
    opt=webhook_opt("messagemedia: key in the URL, optional source-IP allowlist", "sms"),
    summary="MessageMedia replies and delivery reports",
    description=(
        "MessageMedia's reply (`reply_id`, `message_id`, `content`, `source_number`,"
        " `destination_number`, `date_received`) or delivery report (`delivery_report_id`,"
        " `message_id`, `status`) callbacks, JSON. `key` is the location's"
        " `CRM_SMS_WEBHOOK_KEYS` secret (401 if missing or wrong);"
        " `CRM_SMS_WEBHOOK_ALLOWED_IPS` restricts callers (403). Acted on as ClickSend's."
    ),
    status_code=200,
    request_max_body_size=MAX_WEBHOOK_BYTES,
    operation_class=PublicOperation,
    responses=responses(401, 403, 413, 422, 429, 503),
)
async def messagemedia_webhook(
    crm: CrmDep, request: Request[Any, Any, Any], key: FromQuery[str | None] = None
) -> WebhookAnswer:
    """Take in one MessageMedia reply or delivery report."""
    state = crm.pipeline
    messaging = crm.runtime.messaging
    _check_sms_caller(messaging, state)
    ctx = await _location_for_key(crm, messaging.sms_webhook_keys, key)
    fields = await form_or_json(request, state)
    if "reply_id" not in fields and "delivery_report_id" in fields:
        message_id = _text(fields, "message_id", state)
        return await _delivery_report(
            crm, ctx, "messagemedia", message_id, str(fields.get("status") or ""), None
        )
    reply_id = _text(fields, "reply_id", state)
    sender = _text(fields, "source_number", state)
    clinic = _text(fields, "destination_number", state)
    body = _text(fields, "content", state)
    return await _reply(crm, ctx, "messagemedia", sender, clinic, body, reply_id)


@post(
    "/wix",
    opt=webhook_opt("wix: RS256 JWT body verified with CRM_WIX_PUBLIC_KEY", "booking"),
    summary="Wix Bookings webhook",
    description=(
        "The body is the JWT Wix signs (RS256) with the app's key, `CRM_WIX_PUBLIC_KEY`:"
        " booking created, confirmed, canceled, rescheduled, declined or updated. The site"
        " (`instanceId`) maps to a location through `CRM_WIX_SITES` (unknown: 422, nothing"
        " stored). Answers 200 once the event is stored (the worker applies it); a"
        " redelivery is a 200 no-op, and an older event never overwrites a newer state."
        " Not signed or wrongly signed: 401; not a JWT, stale or missing fields: 422."
    ),
    status_code=200,
    request_max_body_size=MAX_WEBHOOK_BYTES,
    operation_class=PublicOperation,
    responses=responses(401, 403, 413, 422, 429, 503),
)
async def wix_webhook(crm: CrmDep, request: Request[Any, Any, Any]) -> WebhookAnswer:
    """Verify one Wix webhook and queue its booking event."""
    state = crm.pipeline
    messaging = crm.runtime.messaging
    if messaging.wix_public_key is None:
        state.detail = "CRM_WIX_PUBLIC_KEY not set"
        raise Unavailable("Wix webhooks are not configured (CRM_WIX_PUBLIC_KEY)")
    try:
        claims = verify(await request.body(), messaging.wix_public_key, crm.runtime.clock.now())
        event = read_event(claims)
    except (Unauthenticated, ValidationError) as exc:
        state.detail = f"refused: {exc}"[:200]
        raise
    code = messaging.wix_sites.get(event.instance_id)
    if code is None:
        state.detail = "unknown Wix site"
        raise ValidationError(
            "instanceId", "this Wix site is not mapped to a location (CRM_WIX_SITES)"
        )
    ctx = await _system_context(crm, code)
    if event.booking is None:
        state.keep_audit(f"ignored event type {event.event_type}"[:200])
        return WebhookAnswer(status="ignored")
    accepted = await state.use_case(crm.services.webhooks.accept_booking(ctx, event.booking))
    return WebhookAnswer(status="accepted" if accepted else "duplicate")


class DynamicBlockMessage(msgspec.Struct):
    """One message of a ManyChat Dynamic Block."""

    type: str
    text: str


class DynamicBlockContent(msgspec.Struct):
    """The ``content`` of a ManyChat Dynamic Block."""

    messages: list[DynamicBlockMessage]
    actions: list[dict[str, Any]]
    quick_replies: list[dict[str, Any]]


class DynamicBlock(msgspec.Struct):
    """ManyChat's Dynamic Block response, version 2 (what an External Request may answer)."""

    version: str
    content: DynamicBlockContent


#: What the lead reads in the chat once the CRM has them (no PHI, no promise of a time).
MANYCHAT_REPLY = "Thanks {name}! The clinic has your details and will be in touch soon."


@post(
    "/manychat",
    opt=webhook_opt("manychat: shared secret in X-CRM-Key, compared in constant time", "contact"),
    summary="ManyChat External Request (a lead from a chat)",
    description=(
        "ManyChat's External Request with the `Full Contact Data` body (`id`, `first_name`,"
        " `last_name`, `email`, `phone` or `whatsapp_phone`, `last_input_text`,"
        " `last_interaction`) and the header `X-CRM-Key` set to the location's"
        " `CRM_MANYCHAT_KEYS` secret (401 otherwise). The contact is created or completed"
        " (matched by email, then phone) with a chat touchpoint; a repeated"
        " (`id`, `last_interaction`) changes nothing. Answers a Dynamic Block (v2)."
    ),
    status_code=200,
    request_max_body_size=MAX_WEBHOOK_BYTES,
    operation_class=PublicOperation,
    responses=responses(401, 413, 422, 429, 503),
)
async def manychat_webhook(crm: CrmDep, request: Request[Any, Any, Any]) -> DynamicBlock:
    """Take in one ManyChat lead and answer in the chat."""
    state = crm.pipeline
    messaging = crm.runtime.messaging
    code = find_key_owner(messaging.manychat_keys, request.headers.get("x-crm-key"))
    if code is None:
        state.detail = "ManyChat key missing or wrong"
        raise Unauthenticated("the X-CRM-Key header is missing or wrong")
    ctx = await _system_context(crm, code)
    fields = await form_or_json(request, state)
    subscriber = _text(fields, "id", state)
    interaction = fields.get("last_interaction")
    phone = fields.get("phone") or fields.get("whatsapp_phone") or None
    person = PersonDetails(
        first_name=str(fields.get("first_name") or ""),
        last_name=str(fields.get("last_name") or ""),
        email=fields.get("email") or None,
        phone=None if phone is None else provider_phone(str(phone), "phone"),
    )
    text = fields.get("last_input_text")
    lead = LeadMessage(
        source="manychat",
        event_id=None if not interaction else f"{subscriber}:{interaction}"[:255],
        person=person,
        text=text if isinstance(text, str) else None,
    )
    contact, _new = await state.use_case(crm.services.webhooks.accept_lead(ctx, lead))
    reply = MANYCHAT_REPLY.format(name=contact.first_name)
    return DynamicBlock(
        version="v2",
        content=DynamicBlockContent(
            messages=[DynamicBlockMessage(type="text", text=reply)], actions=[], quick_replies=[]
        ),
    )


def webhooks_router() -> Router:
    """Routes under ``/webhooks``."""
    return Router(
        path="/webhooks",
        route_handlers=[clicksend_webhook, messagemedia_webhook, wix_webhook, manychat_webhook],
        tags=["webhooks"],
    )


__all__ = [
    "MANYCHAT_REPLY",
    "DynamicBlock",
    "WebhookAnswer",
    "find_key_owner",
    "form_or_json",
    "provider_phone",
    "webhook_opt",
    "webhooks_router",
]
