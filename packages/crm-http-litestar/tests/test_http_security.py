"""The security pipeline end to end: tokens, sessions, tenancy, IP allowlist, audit, limits."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

import jwt
import pytest
from crm_domain.clock import FixedClock
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar import get

from crm_http_litestar import CrmConfig, Settings, create_app
from crm_http_litestar.pipeline import RouteWithoutPermission
from crm_http_litestar.testing import SECRET, World, open_world

pytestmark = pytest.mark.anyio


async def _first_contact(world: World, loc: str = "sydney") -> str:
    response = await world.client.get(
        "/api/contacts?limit=1", headers=await world.headers("owner", loc)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["items"][0]["id"])


def _claims(world: World, **overrides: Any) -> dict[str, Any]:
    now = int(world.clock.now().timestamp())
    claims: dict[str, Any] = {
        "iss": world.runtime.settings.token_issuer,
        "aud": world.runtime.settings.token_audience,
        "sub": world.users["owner"],
        "jti": "no-such-session",
        "iat": now,
        "exp": now + 600,
        "location": world.locations["sydney"],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def _live_session_claims(world: World) -> dict[str, Any]:
    """Claims of a real, live session, to forge variants of."""
    token = await world.token("owner")
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def _status(world: World, token: str) -> int:
    response = await world.client.get(
        "/api/contacts?limit=1", headers={"Authorization": f"Bearer {token}"}
    )
    if response.status_code == 401:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == 401
    return response.status_code


# --- authentication ---------------------------------------------------------------


async def test_a_valid_token_works(world: World) -> None:
    assert await _status(world, await world.token("owner")) == 200


async def test_no_token_and_garbage_tokens_are_401(world: World) -> None:
    assert (await world.client.get("/api/contacts")).status_code == 401
    for header in ("Bearer", "Bearer x.y.z", "Basic dXNlcjpwYXNz", "Bearer " + "a" * 500):
        response = await world.client.get("/api/contacts", headers={"Authorization": header})
        assert response.status_code == 401, header


async def test_alg_none_is_refused(world: World) -> None:
    claims = await _live_session_claims(world)
    token = jwt.encode(claims, key="", algorithm="none")  # PyJWT reads "" as no key
    assert await _status(world, token) == 401


async def test_rs256_and_hs_rs_confusion_are_refused(world: World) -> None:
    claims = await _live_session_claims(world)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # A correctly RS256-signed token: the algorithm is not the pinned one.
    assert await _status(world, jwt.encode(claims, private, algorithm="RS256")) == 401
    # The classic confusion: HS256 keyed with a public key.
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = _hmac_token(claims, public_pem)
    assert await _status(world, forged) == 401


def _hmac_token(claims: dict[str, Any], key: bytes) -> str:
    # PyJWT refuses PEM keys for HMAC on purpose, so sign by hand like an attacker would.
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


async def test_wrong_key_expired_wrong_audience_and_issuer_are_401(world: World) -> None:
    live = await _live_session_claims(world)
    now = int(world.clock.now().timestamp())
    variants = {
        "wrong key": jwt.encode(live, "another-secret-key-that-is-long-enough!!", "HS256"),
        "expired": jwt.encode({**live, "iat": now - 7200, "exp": now - 3600}, SECRET, "HS256"),
        "wrong aud": jwt.encode({**live, "aud": "someone-else"}, SECRET, "HS256"),
        "wrong iss": jwt.encode({**live, "iss": "https://evil.example"}, SECRET, "HS256"),
        "no jti": jwt.encode({k: v for k, v in live.items() if k != "jti"}, SECRET, "HS256"),
        "no exp": jwt.encode({k: v for k, v in live.items() if k != "exp"}, SECRET, "HS256"),
        "other user": jwt.encode({**live, "sub": world.users["auditor"]}, SECRET, "HS256"),
        "unknown session": jwt.encode({**live, "jti": "forged"}, SECRET, "HS256"),
    }
    for name, token in variants.items():
        assert await _status(world, token) == 401, name


async def test_logout_revokes_the_session(world: World) -> None:
    token = await world.token("owner")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await world.client.get("/auth/me", headers=headers)).status_code == 200
    assert (await world.client.post("/auth/logout", headers=headers)).status_code == 204
    assert await _status(world, token) == 401
    # Not only this process's cache: the store says revoked.
    world.runtime.sessions.forget()
    assert await _status(world, token) == 401


async def test_idle_session_is_logged_off(world: World) -> None:
    token = await world.token("owner")
    assert await _status(world, token) == 200
    world.clock.advance(timedelta(seconds=world.runtime.settings.session_idle_timeout - 60))
    assert await _status(world, token) == 200  # activity restarts the idle clock
    world.clock.advance(timedelta(seconds=world.runtime.settings.session_idle_timeout + 1))
    assert await _status(world, token) == 401


async def test_every_refusal_is_audited(world: World) -> None:
    system_before = len(await world.audit(None))
    response = await world.client.get("/api/contacts/abc")
    assert response.status_code == 401
    entries = (await world.audit(None))[system_before:]
    assert [e.request_id for e in entries] == [response.headers["x-request-id"]]
    assert entries[0].outcome.value == "denied"
    assert entries[0].status_code == 401
    assert entries[0].resource_type == "contacts"
    assert entries[0].resource_id == "abc"

    sydney_before = len(await world.audit("sydney"))
    auditor = await world.headers("auditor")
    refused = await world.client.delete("/api/contacts/abc", headers=auditor)
    assert refused.status_code == 403
    world.peer.address = "198.51.100.7"
    ip_refused = await world.client.get("/api/contacts", headers=auditor)
    assert ip_refused.status_code == 403
    entries = (await world.audit("sydney"))[sydney_before:]
    assert [(e.status_code, e.outcome.value) for e in entries] == [
        (403, "denied"),
        (403, "denied"),
    ]
    assert entries[1].ip_address == "198.51.100.7"


async def test_one_contact_read_is_exactly_one_audit_entry(world: World) -> None:
    contact_id = await _first_contact(world)
    headers = await world.headers("reception")
    before = len(await world.audit("sydney"))
    response = await world.client.get(f"/api/contacts/{contact_id}", headers=headers)
    assert response.status_code == 200
    entries = (await world.audit("sydney"))[before:]
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.action, entry.resource_type, entry.resource_id) == ("READ", "contact", contact_id)
    assert entry.user_id == world.users["reception"]
    assert entry.request_id == response.headers["x-request-id"]
    assert entry.ip_address == "127.0.0.1"


# --- tenancy (BOLA / BOPLA) -------------------------------------------------------------


async def test_another_locations_ids_are_404(world: World) -> None:
    sydney_contact = await _first_contact(world, "sydney")
    owner = await world.headers("owner")
    original = (await world.client.get(f"/api/contacts/{sydney_contact}", headers=owner)).json()
    melbourne = await world.headers("owner", "melbourne")
    for method, path, body in (
        ("GET", f"/api/contacts/{sydney_contact}", None),
        ("PATCH", f"/api/contacts/{sydney_contact}", {"warmness": 1}),
        ("DELETE", f"/api/contacts/{sydney_contact}", None),
        ("GET", f"/api/contacts/{sydney_contact}/touchpoints", None),
        ("POST", f"/api/contacts/{sydney_contact}/touchpoints", {"kind": "note"}),
    ):
        response = await world.client.request(method, path, headers=melbourne, json=body)
        assert response.status_code == 404, (method, path, response.text)
    # Still there, unchanged, for its own location.
    own = await world.client.get(f"/api/contacts/{sydney_contact}", headers=owner)
    assert own.status_code == 200
    assert own.json() == original


async def test_list_filter_and_body_naming_another_location_are_403(world: World) -> None:
    melbourne = await world.headers("owner", "melbourne")
    sydney_id = world.locations["sydney"]
    for path in ("/api/contacts", "/api/bookings", "/api/tasks"):
        response = await world.client.get(f"{path}?tenant_id={sydney_id}", headers=melbourne)
        assert response.status_code == 403, path
    body = {"first_name": "Sneaky", "email": "sneaky@example.com", "tenant_id": sydney_id}
    assert (
        await world.client.post("/api/contacts", headers=melbourne, json=body)
    ).status_code == 403
    # A reference to another location's contact reads as unknown, and nothing is created.
    sydney_contact = await _first_contact(world, "sydney")
    start = world.clock.now() + timedelta(days=40)
    booking = {
        "contact_id": sydney_contact,
        "service_type": "MRI",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(),
    }
    refused = await world.client.post("/api/bookings", headers=melbourne, json=booking)
    assert refused.status_code == 404, refused.text
    assert refused.json()["field"] == "contact_id"
    listed = await world.client.get(f"/api/bookings?contact_id={sydney_contact}", headers=melbourne)
    assert listed.status_code == 200
    assert listed.json()["items"] == []


async def test_no_membership_at_the_tokens_location_is_403(world: World) -> None:
    # The doctor works in Melbourne only: a token naming Sydney is refused.
    issued = await world.runtime.sessions.open(world.users["doctor"], world.locations["sydney"])
    response = await world.client.get(
        "/api/contacts", headers={"Authorization": f"Bearer {issued.token}"}
    )
    assert response.status_code == 403


async def test_revoked_membership_stops_working(world: World) -> None:
    reception = await world.headers("reception")
    assert (await world.client.get("/api/contacts", headers=reception)).status_code == 200
    owner = await world.headers("owner")
    members = (await world.client.get("/api/admin/users?limit=50", headers=owner)).json()
    membership = next(m for m in members["items"] if m["user_id"] == world.users["reception"])
    changed = await world.client.patch(
        f"/api/admin/users/{membership['membership_id']}", headers=owner, json={"is_active": False}
    )
    assert changed.status_code == 200, changed.text
    assert (await world.client.get("/api/contacts", headers=reception)).status_code == 403


async def test_tenant_from_subdomain(settings: Settings, clock: FixedClock) -> None:
    async for world in open_world(settings.replace(base_domain="crm.example"), clock):
        issued = await world.runtime.sessions.open(world.users["owner"], None)
        auth = {"Authorization": f"Bearer {issued.token}"}
        ok = await world.client.get("/auth/me", headers={**auth, "Host": "melbourne.crm.example"})
        assert ok.status_code == 200
        assert ok.json()["location_id"] == world.locations["melbourne"]
        # A location token used on another location's host is refused.
        sydney = await world.headers("owner", "sydney")
        crossed = await world.client.get(
            "/api/contacts", headers={**sydney, "Host": "melbourne.crm.example"}
        )
        assert crossed.status_code == 403
        unknown = await world.client.get("/auth/me", headers={**auth, "Host": "perth.crm.example"})
        assert unknown.status_code == 403
        no_location = await world.client.get("/auth/me", headers=auth)
        assert no_location.status_code == 403


# --- client address -----------------------------------------------------------------


async def test_spoofed_forwarding_headers_from_untrusted_peer_are_ignored(world: World) -> None:
    headers = await world.headers("owner")
    world.peer.address = "198.51.100.7"  # outside the allowlist
    spoofed = {**headers, "X-Forwarded-For": "127.0.0.1", "CF-Connecting-IP": "127.0.0.1"}
    assert (await world.client.get("/api/contacts", headers=spoofed)).status_code == 403
    world.peer.address = "127.0.0.1"
    spoofed = {**headers, "X-Forwarded-For": "198.51.100.7"}
    response = await world.client.get("/api/contacts", headers=spoofed)
    assert response.status_code == 200
    entries = await world.audit("sydney")
    assert entries[-1].ip_address == "127.0.0.1"


async def test_forwarding_headers_from_trusted_proxy(settings: Settings, clock: FixedClock) -> None:
    trusted = settings.replace(trusted_proxies=(ipaddress.ip_network("198.51.100.0/24"),))
    async for world in open_world(trusted, clock):
        headers = await world.headers("owner")
        world.peer.address = "198.51.100.7"
        forwarded = {**headers, "X-Forwarded-For": "203.0.113.9, 127.0.0.1"}
        assert (await world.client.get("/api/contacts", headers=forwarded)).status_code == 200
        cf = {**headers, "CF-Connecting-IP": "203.0.113.9"}
        assert (await world.client.get("/api/contacts", headers=cf)).status_code == 403
        assert (await world.audit("sydney"))[-1].ip_address == "203.0.113.9"


@pytest.mark.parametrize(
    ("peer", "status"),
    [("::1", 200), ("::ffff:127.0.0.1", 200), ("2001:db8::1", 403), ("127.5.6.7", 200)],
)
async def test_ipv6_and_ipv4_mapped_clients(world: World, peer: str, status: int) -> None:
    headers = await world.headers("owner")
    world.peer.address = peer
    assert (await world.client.get("/api/contacts", headers=headers)).status_code == status


# --- input limits and errors -------------------------------------------------------------


async def test_bad_input_is_never_a_500(world: World) -> None:
    headers = await world.headers("owner")
    cases = [
        (
            "POST",
            "/api/contacts",
            {"content": b"{", "headers": {"content-type": "application/json"}},
            422,
        ),
        ("POST", "/api/contacts", {"json": {"first_name": 5}}, 422),
        ("POST", "/api/contacts", {"json": {"first_name": "A", "bogus": 1}}, 422),
        ("POST", "/api/contacts", {"json": {"first_name": "A", "phone": "12"}}, 422),
        ("POST", "/api/contacts", {"json": [1, 2]}, 422),
        (
            "POST",
            "/api/contacts",
            {"content": b"a=b", "headers": {"content-type": "text/plain"}},
            415,
        ),
        ("POST", "/api/contacts", {"json": {"first_name": "x" * 2_000_000}}, 413),
        ("GET", "/api/contacts?limit=0", {}, 422),
        ("GET", "/api/contacts?cursor=%%%", {}, 422),
        ("GET", "/api/contacts?created_from=yesterday", {}, 422),
        ("GET", "/api/contacts/does-not-exist", {}, 404),
        ("PATCH", "/api/bookings/x", {"json": {"status": "teleported"}}, 422),
    ]
    for method, path, kwargs, expected in cases:
        extra = dict(kwargs.get("headers", {}))
        args = {k: v for k, v in kwargs.items() if k != "headers"}
        response = await world.client.request(method, path, headers={**headers, **extra}, **args)
        assert response.status_code == expected, (path, kwargs, response.text[:200])
        problem = response.json()
        assert problem["status"] == expected
        assert problem["title"] and problem["detail"]
        if expected == 422:
            assert problem.get("field"), problem


async def test_idempotency_key_replays_and_conflicts(world: World) -> None:
    headers = {**(await world.headers("owner")), "Idempotency-Key": "req-1"}
    body = {"first_name": "Ida", "email": "ida@example.com"}
    first = await world.client.post("/api/contacts", headers=headers, json=body)
    again = await world.client.post("/api/contacts", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await world.client.post(
        "/api/contacts", headers=headers, json={**body, "first_name": "Other"}
    )
    assert other.status_code == 409
    listed = await world.client.get(
        "/api/contacts?email=ida@example.com", headers=await world.headers("owner")
    )
    assert len(listed.json()["items"]) == 1


async def test_pagination_walks_every_contact_once(world: World) -> None:
    headers = await world.headers("owner")
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/contacts?limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = (await world.client.get(url, headers=headers)).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 12
    assert seen == sorted(seen, reverse=True)


# --- startup checks and documentation -----------------------------------------------------


def test_app_refuses_to_start_with_an_api_route_without_permission() -> None:
    @get("/api/leaky", opt={})
    async def leaky() -> str:
        return "phi"

    settings = Settings(database_url="memory://", secret_key=SECRET, run_worker=False)
    with pytest.raises(RouteWithoutPermission, match="/api/leaky"):
        create_app(CrmConfig(settings=settings, extra_routes=[leaky]))


def test_app_refuses_to_start_without_a_secret_key() -> None:
    from crm_domain.errors import ValidationError

    with pytest.raises(ValidationError, match="CRM_SECRET_KEY"):
        create_app(Settings(database_url="memory://", secret_key=None))


async def test_health_and_openapi_document_permissions_and_errors(world: World) -> None:
    assert (await world.client.get("/health")).json() == {"status": "ok"}
    page = await world.client.get("/schema")
    assert page.status_code == 200
    assert "<html" in page.text.lower()
    schema = (await world.client.get("/schema/openapi.json")).json()
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        if path.startswith("/api")
        for method, op in item.items()
    ]
    assert len(operations) >= 20
    for path, method, op in operations:
        assert "**Permission:**" in op.get("description", ""), (path, method)
        for status in ("401", "403", "422", "429", "503"):
            assert status in op["responses"], (path, method, status)


async def test_no_durable_audit_entry_means_no_data(world: World) -> None:
    contact_id = await _first_contact(world)
    headers = await world.headers("owner")
    await world.runtime.recorder.aclose()  # the audit log refuses new entries from now on
    read = await world.client.get(f"/api/contacts/{contact_id}", headers=headers)
    assert read.status_code == 503
    assert "first_name" not in read.text
    refused = await world.client.get("/api/contacts")
    assert refused.status_code == 503  # not even a refusal goes out unaudited
    assert refused.json()["status"] == 503


async def test_cors_is_off_unless_configured(settings: Settings, clock: FixedClock) -> None:
    async for world in open_world(settings, clock):
        response = await world.client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers
    allowed = settings.replace(cors_origins=("https://app.avatar-imaging.example",))
    async for world in open_world(allowed, clock):
        response = await world.client.get(
            "/health", headers={"Origin": "https://app.avatar-imaging.example"}
        )
        assert response.headers["access-control-allow-origin"] == (
            "https://app.avatar-imaging.example"
        )
