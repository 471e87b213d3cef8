"""Schemathesis against the real app on a loopback port: no 5xx, and every answer is documented.

A bounded, deterministic run (``derandomize``, a few examples per operation) of
the examples, coverage and fuzzing phases plus a short stateful run, as the
owner of the Sydney demo location, over real HTTP to uvicorn serving the app
on a SQLite file, with the rate limit raised through settings.

Checks: every default check except ``positive_data_acceptance``, which expects
every schema-valid request to succeed; the API refuses, with a 422 naming the
field, what a JSON schema cannot say (a sealed cursor from another list, an
E.164 phone number, a CIDR, an IANA time zone, an end before a start).
``POST /auth/logout`` is left out: it would end the session every other case
uses.  The OpenAPI pages under ``/schema`` are documentation, not API.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
import uvicorn
from crm_domain.clock import SystemClock, UlidFactory
from crm_domain.plugins import load_gateway
from crm_domain.ports.gateway import SupportsMigrations
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from crm_http_litestar import CrmConfig, Settings, create_app
from crm_http_litestar.demo import seed_demo
from crm_http_litestar.runtime import open_runtime
from crm_http_litestar.testing import EMAILS, SECRET

#: Examples per operation and phase: ~31 operations, well under a minute on 2 cores.
MAX_EXAMPLES = 8
#: Steps of the stateful run (links between operations are inferred by Schemathesis).
STATEFUL_EXAMPLES = 8
EXCLUDED_CHECKS = [positive_data_acceptance]
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
)


async def _seed_and_sign_in(settings_: Settings) -> str:
    """Seed the demo data and open a session for the owner at Sydney; returns the token."""
    gateway = load_gateway(settings_.database_url)
    try:
        if isinstance(gateway, SupportsMigrations):
            await gateway.migrate()
        await seed_demo(gateway, SystemClock(), UlidFactory(), contacts_per_location=12)
        async with open_runtime(settings_, gateway=gateway) as runtime:
            async with gateway.unit_of_work(None) as uow:
                owner = await uow.users.get_by_email(EMAILS["owner"])
                sydney = await uow.locations.get_by_code("sydney")
            issued = await runtime.sessions.open(owner.id, sydney.id)
            return issued.token
    finally:
        await gateway.close()


def _public_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(base URL, owner token)`` of the app served by uvicorn on a free loopback port."""
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    served = Settings(
        database_url=f"sqlite+aiosqlite:///{folder / 'crm.db'}",
        secret_key=SECRET,
        run_worker=False,
        rate_limit_per_user=1_000_000,  # on, as in production, but never reached here
        rate_limit_per_address=1_000_000,
        access_cache_ttl=30,
        # SMS and Wix configured (the logging sender, a generated key), so /api/sms and
        # /webhooks/wix answer as in production.
        adapter_settings={
            "CRM_SMS_PROVIDER": "log",
            "CRM_MAIL_PROVIDER": "log",
            "CRM_SMS_NUMBERS": "sydney=+61291500000",
            "CRM_WIX_PUBLIC_KEY": _public_pem(),
        },
    )
    token = asyncio.run(_seed_and_sign_in(served))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(CrmConfig(settings=served)),
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()


def _document() -> dict[str, Any]:
    """The app's OpenAPI document, built in process (no server needed to collect the tests)."""
    app = create_app(Settings(database_url="sqlite+aiosqlite://", secret_key=SECRET))
    # Through JSON, as served: the document holds a few objects (examples) until encoded.
    document: dict[str, Any] = msgspec.json.decode(
        msgspec.json.encode(app.openapi_schema.to_schema())
    )
    return document


DOCUMENT = _document()
# Built at import: Schemathesis' fixture-based loader does not support this pytest.
#: An oversized body is refused with 413 before it is read (the server's body limit):
#: that is a rejection of bad data too, so it counts as one beside the default statuses.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [
                    "400",
                    "401",
                    "403",
                    "404",
                    "405",
                    "406",
                    "409",
                    "413",
                    "415",
                    "422",
                    "428",
                    "429",
                    "5xx",
                ]
            }
        }
    }
)
schema = (
    schemathesis.openapi.from_dict(_document(), config=CONFIG)
    .exclude(path="/auth/logout")
    .exclude(path_regex="^/schema")
)


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_served_document_is_the_one_tested(live_api: tuple[str, str]) -> None:
    base, _token = live_api
    with httpx.Client(base_url=base) as client:
        served = client.get("/schema/openapi.json")
    assert served.status_code == 200
    # Problem's example is drawn at random per app; everything else must be identical.
    assert _without_examples(served.json()) == _without_examples(DOCUMENT)


def _without_examples(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_examples(v) for k, v in node.items() if k != "examples"}
    if isinstance(node, list):
        return [_without_examples(v) for v in node]
    return node


@schema.parametrize()
@HYPOTHESIS
def test_every_operation_answers_as_documented(case: Any, live_api: tuple[str, str]) -> None:
    base, token = live_api
    case.call_and_validate(base_url=base, headers=_headers(token), excluded_checks=EXCLUDED_CHECKS)


def test_linked_operations_keep_answering_as_documented(live_api: tuple[str, str]) -> None:
    base, token = live_api
    workflow = schema.as_state_machine()

    class Workflow(workflow):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": base, "headers": _headers(token)}

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=EXCLUDED_CHECKS,
                transport_kwargs=kwargs or None,
            )

    run_state_machine_as_test(
        Workflow,
        settings=settings(HYPOTHESIS, max_examples=STATEFUL_EXAMPLES, stateful_step_count=6),
    )


def test_the_documents_links_name_real_operations() -> None:
    # A link to a missing operation id silently disables it for clients and fuzzers.
    document = _document()  # fresh: Schemathesis rewrites the links of the one it loaded
    operations = {
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    links = [
        link
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for response in operation.get("responses", {}).values()
        for link in response.get("links", {}).values()
    ]
    assert links
    assert all(link["operationId"] in operations for link in links)


def test_bodies_refuse_unknown_fields_in_the_document_too() -> None:
    schemas = _document()["components"]["schemas"]
    bodies = [name for name in schemas if name.endswith(("In", "Patch"))]
    assert {"ContactIn", "ContactPatch", "BookingIn", "TaskPatch", "MemberIn"} <= set(bodies)
    assert all(schemas[name].get("additionalProperties") is False for name in bodies)
    assert schemas["ContactIn"]["properties"]["status"]["enum"][0] == "new"
    assert schemas["TaskIn"]["properties"]["priority"]["enum"][-1] is None
