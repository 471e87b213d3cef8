"""ClickSend and MessageMedia senders against a loopback server speaking their formats.

The answers are the documented ones: ClickSend's ``POST /v3/sms/send`` envelope
(``http_code``, ``response_code``, ``data.messages[].status``, ``message_id``,
``custom_string``) and MessageMedia's ``POST /v1/messages`` (202 with
``messages[].message_id`` and ``status: queued``; 400 with ``message`` and
``details``); the sources are cited in the package README.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import pytest
from crm_domain.errors import Unavailable, ValidationError
from crm_domain.ports.messaging import OutgoingSms, SmsSender

from crm_messaging import MessagingConfigurationError, clicksend_factory, messagemedia_factory
from crm_messaging.testing import ProviderServer, Reply, clicksend_envelope, clicksend_message

pytestmark = pytest.mark.anyio

CS_PATH = "/v3/sms/send"
MM_PATH = "/v1/messages"
API_KEY = "CS-KEY-7f3a9c1e0b"


def clicksend(server: ProviderServer, **extra: str) -> Any:
    settings = {
        "CRM_CLICKSEND_USERNAME": "clinic-user",
        "CRM_CLICKSEND_API_KEY": API_KEY,
        "CRM_CLICKSEND_BASE_URL": f"{server.url}/v3",
        "CRM_SMS_MAX_RETRY_WAIT": "2",
    }
    settings.update(extra)
    return clicksend_factory(settings)


def messagemedia(server: ProviderServer, **extra: str) -> Any:
    settings = {
        "CRM_MESSAGEMEDIA_API_KEY": "mm-key",
        "CRM_MESSAGEMEDIA_API_SECRET": "mm-secret-55",
        "CRM_MESSAGEMEDIA_BASE_URL": server.url,
        "CRM_SMS_MAX_RETRY_WAIT": "2",
    }
    settings.update(extra)
    return messagemedia_factory(settings)


cs_message = clicksend_message
cs_envelope = clicksend_envelope


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


# --- ClickSend ---------------------------------------------------------------------


async def test_clicksend_sends_the_documented_request_and_reads_the_id(
    provider_server: ProviderServer,
) -> None:
    provider_server.queue(
        CS_PATH, Reply(200, cs_envelope(cs_message("+61412345678", custom_string="msg-1")))
    )
    sender = clicksend(provider_server, CRM_SMS_FROM="AvatarImg")
    assert isinstance(sender, SmsSender)
    result = await sender.send(
        OutgoingSms(to="+61412345678", body="Reminder: scan Tue 9:30", reference="msg-1")
    )
    await sender.aclose()

    assert result.accepted and result.error is None and result.provider == "clicksend"
    assert result.provider_message_id and result.provider_message_id.startswith("BF7AD270")
    (request,) = provider_server.to(CS_PATH)
    assert request["headers"]["Authorization"] == basic("clinic-user", API_KEY)
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["json"] == {
        "messages": [
            {
                "source": "avatar-imaging-crm",
                "from": "AvatarImg",
                "to": "+61412345678",
                "body": "Reminder: scan Tue 9:30",
                "custom_string": "msg-1",
            }
        ]
    }


async def test_clicksend_reads_every_per_message_status_of_a_200(
    provider_server: ProviderServer,
) -> None:
    provider_server.queue(
        CS_PATH,
        Reply(
            200,
            cs_envelope(
                cs_message("+61412345678", custom_string="a"),
                cs_message("+61400000000", "INVALID_RECIPIENT", custom_string="b"),
                cs_message("+61499999999", "INSUFFICIENT_CREDIT", custom_string="c"),
            ),
        ),
    )
    sender = clicksend(provider_server)
    results = await sender.send_batch(
        [
            OutgoingSms(to="+61412345678", body="one", reference="a"),
            OutgoingSms(to="+61400000000", body="two", reference="b"),
            OutgoingSms(to="+61499999999", body="three", reference="c"),
        ]
    )
    await sender.aclose()
    assert [r.accepted for r in results] == [True, False, False]
    assert [r.error for r in results] == [None, "INVALID_RECIPIENT", "INSUFFICIENT_CREDIT"]
    assert all(r.provider_message_id for r in results)  # the provider's ids, failed or not
    assert len(provider_server.to(CS_PATH)) == 1  # one request, not retried


async def test_clicksend_single_failure_is_a_failed_result(provider_server: ProviderServer) -> None:
    provider_server.queue(
        CS_PATH, Reply(200, cs_envelope(cs_message("+61400000000", "INVALID_RECIPIENT")))
    )
    sender = clicksend(provider_server)
    result = await sender.send(OutgoingSms(to="+61400000000", body="hi"))
    await sender.aclose()
    assert result.accepted is False and result.error == "INVALID_RECIPIENT"


async def test_clicksend_matches_statuses_by_reference_not_position(
    provider_server: ProviderServer,
) -> None:
    provider_server.queue(
        CS_PATH,
        Reply(
            200,
            cs_envelope(
                cs_message("+61400000000", "INVALID_RECIPIENT", custom_string="b"),
                cs_message("+61412345678", custom_string="a"),
            ),
        ),
    )
    sender = clicksend(provider_server)
    results = await sender.send_batch(
        [
            OutgoingSms(to="+61412345678", body="one", reference="a"),
            OutgoingSms(to="+61400000000", body="two", reference="b"),
        ]
    )
    await sender.aclose()
    assert [r.accepted for r in results] == [True, False]


async def test_clicksend_401_is_a_configuration_error_without_the_key(
    provider_server: ProviderServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider_server.queue(
        CS_PATH,
        Reply(
            401,
            {
                "http_code": 401,
                "response_code": "UNAUTHORIZED",
                "response_msg": "Invalid username or api key.",
                "data": None,
            },
        ),
    )
    sender = clicksend(provider_server)
    with pytest.raises(MessagingConfigurationError) as info:
        await sender.send(OutgoingSms(to="+61412345678", body="hi"))
    await sender.aclose()
    assert isinstance(info.value, Unavailable)
    assert info.value.settings == ("CRM_CLICKSEND_USERNAME", "CRM_CLICKSEND_API_KEY")
    assert "CRM_CLICKSEND_API_KEY" in info.value.detail
    assert len(provider_server.to(CS_PATH)) == 1  # never retried
    assert API_KEY not in caplog.text and API_KEY not in repr(sender)
    assert "12345678" not in caplog.text  # only the last digits of the number


async def test_clicksend_429_waits_for_retry_after_then_succeeds(
    provider_server: ProviderServer,
) -> None:
    provider_server.queue(
        CS_PATH,
        Reply(
            429,
            {"http_code": 429, "response_code": "TOO_MANY_REQUESTS"},
            headers={"Retry-After": "1"},
        ),
        Reply(200, cs_envelope(cs_message("+61412345678"))),
    )
    sender = clicksend(provider_server)
    started = time.monotonic()
    result = await sender.send(OutgoingSms(to="+61412345678", body="hi"))
    elapsed = time.monotonic() - started
    await sender.aclose()
    assert result.accepted
    first, second = provider_server.to(CS_PATH)
    assert second["at"] - first["at"] >= 0.95  # Retry-After honoured, not the short backoff
    assert elapsed < 5


async def test_clicksend_5xx_is_unavailable_after_the_retries(
    provider_server: ProviderServer,
) -> None:
    provider_server.defaults[CS_PATH] = Reply(503, {"http_code": 503})
    sender = clicksend(provider_server, CRM_SMS_MAX_RETRIES="2")
    with pytest.raises(Unavailable, match="HTTP 503 after 3 attempts"):
        await sender.send(OutgoingSms(to="+61412345678", body="hi"))
    await sender.aclose()
    assert len(provider_server.to(CS_PATH)) == 3


async def test_clicksend_read_timeout_is_unavailable_and_not_sent_again(
    provider_server: ProviderServer,
) -> None:
    provider_server.queue(CS_PATH, Reply(200, cs_envelope(cs_message("+61412345678")), delay=1.0))
    sender = clicksend(provider_server, CRM_SMS_TIMEOUT="0.2")
    with pytest.raises(Unavailable, match="not sent again"):
        await sender.send(OutgoingSms(to="+61412345678", body="hi"))
    await sender.aclose()
    # The provider may have taken it: a retry could text the patient twice.
    assert len(provider_server.to(CS_PATH)) == 1


async def test_clicksend_unreachable_is_unavailable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens
    sender = clicksend_factory(
        {
            "CRM_CLICKSEND_USERNAME": "u",
            "CRM_CLICKSEND_API_KEY": "k",
            "CRM_CLICKSEND_BASE_URL": f"http://127.0.0.1:{port}/v3",
            "CRM_SMS_MAX_RETRIES": "1",
            "CRM_SMS_MAX_RETRY_WAIT": "0.1",
        }
    )
    with pytest.raises(Unavailable, match="cannot be reached"):
        await sender.send(OutgoingSms(to="+61412345678", body="hi"))
    await sender.aclose()


async def test_connection_is_reused_across_sends(provider_server: ProviderServer) -> None:
    provider_server.defaults[CS_PATH] = Reply(200, cs_envelope(cs_message("+61412345678")))
    sender = clicksend(provider_server)
    for _ in range(3):
        assert (await sender.send(OutgoingSms(to="+61412345678", body="hi"))).accepted
    await sender.aclose()
    assert len({r["client_port"] for r in provider_server.to(CS_PATH)}) == 1


# --- MessageMedia ------------------------------------------------------------------


def mm_accepted(*messages: dict[str, Any]) -> dict[str, Any]:
    return {
        "messages": [
            {
                "message_id": f"04fe9a97-a579-43c5-bb1a-58ed29bf0a{n:02d}",
                "callback_url": None,
                "status": "queued",
                "format": "SMS",
                "message_expiry_timestamp": None,
                "scheduled": None,
                **m,
            }
            for n, m in enumerate(messages)
        ]
    }


async def test_messagemedia_sends_the_documented_request(provider_server: ProviderServer) -> None:
    body = {
        "content": "Reminder: scan Tue 9:30",
        "destination_number": "+61491570156",
        "source_number": "+61491570157",
        "source_number_type": "INTERNATIONAL",
        "delivery_report": True,
        "metadata": {"reference": "msg-9"},
        "format": "SMS",
    }
    provider_server.queue(MM_PATH, Reply(202, mm_accepted(body)))
    sender = messagemedia(provider_server)
    result = await sender.send(
        OutgoingSms(
            to="+61491570156",
            body="Reminder: scan Tue 9:30",
            sender="+61491570157",
            reference="msg-9",
        )
    )
    await sender.aclose()
    assert result.accepted and result.provider == "messagemedia"
    assert result.provider_message_id == "04fe9a97-a579-43c5-bb1a-58ed29bf0a00"
    (request,) = provider_server.to(MM_PATH)
    assert request["headers"]["Authorization"] == basic("mm-key", "mm-secret-55")
    assert request["json"] == {"messages": [body]}


async def test_messagemedia_400_refuses_the_message_with_the_reason(
    provider_server: ProviderServer,
) -> None:
    provider_server.queue(
        MM_PATH,
        Reply(
            400,
            {
                "message": "Invalid number",
                "details": ['messages.0.destination_number: "+6100" is not a valid number'],
            },
        ),
    )
    sender = messagemedia(provider_server)
    result = await sender.send(OutgoingSms(to="+61000000000", body="hi"))
    await sender.aclose()
    assert result.accepted is False
    assert result.error is not None and "HTTP 400: Invalid number" in result.error
    assert "not a valid number" in result.error
    assert len(provider_server.to(MM_PATH)) == 1


async def test_messagemedia_failed_status_in_the_answer(provider_server: ProviderServer) -> None:
    provider_server.queue(MM_PATH, Reply(202, mm_accepted({"status": "rejected"})))
    sender = messagemedia(provider_server)
    result = await sender.send(OutgoingSms(to="+61491570156", body="hi"))
    await sender.aclose()
    assert result.accepted is False and result.error == "rejected"
    assert result.provider_message_id  # kept, to match a later delivery report


async def test_messagemedia_403_is_a_configuration_error(provider_server: ProviderServer) -> None:
    provider_server.queue(MM_PATH, Reply(403, {"message": "Feature not enabled"}))
    sender = messagemedia(provider_server)
    with pytest.raises(MessagingConfigurationError, match="CRM_MESSAGEMEDIA_API_SECRET"):
        await sender.send(OutgoingSms(to="+61491570156", body="hi"))
    await sender.aclose()


async def test_messagemedia_500_then_202_is_retried(provider_server: ProviderServer) -> None:
    provider_server.queue(
        MM_PATH,
        Reply(500, {"message": "An error occurred with our API"}),
        Reply(202, mm_accepted({})),
    )
    sender = messagemedia(provider_server)
    result = await sender.send(OutgoingSms(to="+61491570156", body="hi"))
    await sender.aclose()
    assert result.accepted
    assert len(provider_server.to(MM_PATH)) == 2


async def test_messagemedia_alphanumeric_sender_and_no_reference(
    provider_server: ProviderServer,
) -> None:
    provider_server.queue(MM_PATH, Reply(202, mm_accepted({})))
    sender = messagemedia(
        provider_server, CRM_MESSAGEMEDIA_DELIVERY_REPORT="false", CRM_SMS_FROM="Avatar"
    )
    await sender.send(OutgoingSms(to="+61491570156", body="hi"))
    await sender.aclose()
    (item,) = provider_server.to(MM_PATH)[0]["json"]["messages"]
    assert item["source_number"] == "Avatar"
    assert item["source_number_type"] == "ALPHANUMERIC"
    assert item["delivery_report"] is False
    assert "metadata" not in item


# --- input and settings --------------------------------------------------------------


async def test_a_number_not_in_e164_is_refused_before_any_request(
    provider_server: ProviderServer,
) -> None:
    sender = clicksend(provider_server)
    with pytest.raises(ValidationError) as info:
        await sender.send(OutgoingSms(to="0412 345 678", body="hi"))
    await sender.aclose()
    assert info.value.field == "to"
    assert provider_server.requests == []


@pytest.mark.parametrize(
    ("factory", "settings", "key"),
    [
        (clicksend_factory, {"CRM_CLICKSEND_API_KEY": "k"}, "CRM_CLICKSEND_USERNAME"),
        (clicksend_factory, {"CRM_CLICKSEND_USERNAME": "u"}, "CRM_CLICKSEND_API_KEY"),
        (
            clicksend_factory,
            {
                "CRM_CLICKSEND_USERNAME": "u",
                "CRM_CLICKSEND_API_KEY": "k",
                "CRM_CLICKSEND_BASE_URL": "http://rest.clicksend.com/v3",
            },
            "CRM_CLICKSEND_BASE_URL",
        ),
        (
            clicksend_factory,
            {"CRM_CLICKSEND_USERNAME": "u", "CRM_CLICKSEND_API_KEY": "k", "CRM_SMS_TIMEOUT": "x"},
            "CRM_SMS_TIMEOUT",
        ),
        (messagemedia_factory, {"CRM_MESSAGEMEDIA_API_KEY": "k"}, "CRM_MESSAGEMEDIA_API_SECRET"),
        (
            messagemedia_factory,
            {
                "CRM_MESSAGEMEDIA_API_KEY": "k",
                "CRM_MESSAGEMEDIA_API_SECRET": "s",
                "CRM_MESSAGEMEDIA_DELIVERY_REPORT": "maybe",
            },
            "CRM_MESSAGEMEDIA_DELIVERY_REPORT",
        ),
    ],
)
def test_bad_settings_name_the_key(factory: Any, settings: dict[str, str], key: str) -> None:
    with pytest.raises(ValidationError) as info:
        factory(settings)
    assert info.value.field == key


def test_default_base_urls_are_the_providers() -> None:
    cs = clicksend_factory({"CRM_CLICKSEND_USERNAME": "u", "CRM_CLICKSEND_API_KEY": "k"})
    mm = messagemedia_factory({"CRM_MESSAGEMEDIA_API_KEY": "k", "CRM_MESSAGEMEDIA_API_SECRET": "s"})
    assert cs.base_url == "https://rest.clicksend.com/v3"
    assert mm.base_url == "https://api.messagemedia.com"


async def test_a_wrong_base_url_names_its_setting(provider_server: ProviderServer) -> None:
    provider_server.queue("/v2/sms/send", Reply(404, {"message": "Not Found"}))
    sender = clicksend(provider_server, CRM_CLICKSEND_BASE_URL=f"{provider_server.url}/v2")
    with pytest.raises(MessagingConfigurationError) as info:
        await sender.send(OutgoingSms(to="+61412345678", body="hi"))
    await sender.aclose()
    assert info.value.settings == ("CRM_CLICKSEND_BASE_URL",)
