"""Sign in with Google: real RS256 signatures checked against a JWKS served on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from crm_domain.clock import FixedClock
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from crm_http_litestar import Settings
from crm_http_litestar.testing import World, open_world

pytestmark = pytest.mark.anyio
CLIENT_ID = "1234-test.apps.googleusercontent.com"


class Keys:
    """Google's signing keys as this test's JWKS server publishes them."""

    def __init__(self) -> None:
        self.private = {
            kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)
            for kid in ("key-1", "key-2")
        }
        self.requests = 0

    def jwks(self) -> bytes:
        keys = []
        for kid, private in self.private.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return json.dumps({"keys": keys}).encode()


@pytest.fixture
def google_keys() -> Iterator[tuple[Keys, str]]:
    """A JWKS endpoint on 127.0.0.1 (the wire format of googleapis.com/oauth2/v3/certs)."""
    keys = Keys()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            keys.requests += 1
            body = keys.jwks()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "public, max-age=3600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield keys, f"http://127.0.0.1:{server.server_address[1]}/oauth2/v3/certs"
    finally:
        server.shutdown()
        server.server_close()


def id_token(keys: Keys, kid: str = "key-1", signer: str | None = None, **claims: Any) -> str:
    """A Google-shaped ID token signed with one of the keys."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "aud": CLIENT_ID,
        "sub": "109876543210",
        "email": "owner@avatar-imaging.example",
        "email_verified": True,
        "hd": "avatar-imaging.example",
        "iat": now,
        "exp": now + 3600,
        "name": "Olivia Owner",
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    key = keys.private[signer or kid]
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


async def _world(settings: Settings, clock: FixedClock, url: str) -> Any:
    configured = settings.replace(
        google_client_id=CLIENT_ID,
        google_jwks_url=url,
        google_hosted_domains=("avatar-imaging.example",),
    )
    return open_world(configured, clock)


async def _sign_in(world: World, token: str, location: str | None = "sydney") -> Any:
    body: dict[str, Any] = {"id_token": token}
    if location is not None:
        body["location"] = location
    return await world.client.post("/auth/google", json=body)


async def test_google_sign_in_issues_a_working_session(
    settings: Settings, clock: FixedClock, google_keys: tuple[Keys, str]
) -> None:
    keys, url = google_keys
    async for world in await _world(settings, clock, url):
        response = await _sign_in(world, id_token(keys))
        assert response.status_code == 200, response.text
        issued = response.json()
        assert issued["token_type"] == "Bearer"
        assert issued["location"] == "sydney"
        me = await world.client.get(
            "/auth/me", headers={"Authorization": f"Bearer {issued['token']}"}
        )
        assert me.status_code == 200
        assert me.json()["user_id"] == world.users["owner"]
        assert me.json()["roles"] == ["admin"]
        login = [e for e in await world.audit("sydney") if e.action == "LOGIN"]
        assert len(login) == 1
        assert login[0].outcome.value == "success"
        # The Google subject is now bound: another Google account with the same email fails.
        hijack = await _sign_in(world, id_token(keys, sub="999"))
        assert hijack.status_code == 401


async def test_google_tokens_that_must_fail(
    settings: Settings, clock: FixedClock, google_keys: tuple[Keys, str]
) -> None:
    keys, url = google_keys
    now = int(time.time())
    async for world in await _world(settings, clock, url):
        bad = {
            "wrong audience": id_token(keys, aud="someone-else.apps.googleusercontent.com"),
            "wrong issuer": id_token(keys, iss="https://accounts.evil.example"),
            "expired": id_token(keys, iat=now - 7200, exp=now - 3600),
            "unknown kid": id_token(keys, kid="key-9", signer="key-1"),
            "signed by the other key": id_token(keys, kid="key-1", signer="key-2"),
            "other workspace": id_token(keys, hd="gmail.com"),
            "no workspace": id_token(keys, hd=None),
            "unverified email": id_token(keys, email_verified=False),
            "hs256": jwt.encode(
                {"iss": "accounts.google.com", "aud": CLIENT_ID, "sub": "1", "exp": now + 60},
                "secret-secret-secret-secret-secret!",
                algorithm="HS256",
                headers={"kid": "key-1"},
            ),
            "garbage": "not-a-jwt",
        }
        for name, token in bad.items():
            response = await _sign_in(world, token)
            assert response.status_code == 401, (name, response.text)
        stranger = await _sign_in(world, id_token(keys, email="stranger@avatar-imaging.example"))
        assert stranger.status_code == 403
        not_member = await _sign_in(
            world, id_token(keys, email="auditor@avatar-imaging.example"), "melbourne"
        )
        assert not_member.status_code == 403
        refusals = [e for e in await world.audit(None) if e.action == "LOGIN"]
        assert len(refusals) >= len(bad)
        assert {e.outcome.value for e in refusals} == {"denied"}
        # An unknown kid triggered at most one refetch of the key set.
        assert keys.requests <= 2


async def test_without_location_a_single_membership_is_chosen(
    settings: Settings, clock: FixedClock, google_keys: tuple[Keys, str]
) -> None:
    keys, url = google_keys
    async for world in await _world(settings, clock, url):
        response = await _sign_in(
            world, id_token(keys, email="doctor.melbourne@avatar-imaging.example"), None
        )
        assert response.status_code == 200, response.text
        assert response.json()["location"] == "melbourne"


async def test_console_google_sign_in_sets_the_cookie_only_for_our_own_nonce(
    settings: Settings, clock: FixedClock, google_keys: tuple[Keys, str]
) -> None:
    from urllib.parse import parse_qs, urlsplit

    from crm_http_litestar.testing import console_browser

    keys, url = google_keys
    email = "reception.sydney@avatar-imaging.example"
    async for world in await _world(settings, clock, url):
        async with console_browser(world, None) as browser:
            page = await browser.get("/console/sign-in")
            assert 'href="/console/sign-in/google"' in page.text
            start = await browser.client.get("/console/sign-in/google", follow_redirects=False)
            assert start.status_code == 303
            target = urlsplit(start.headers["location"])
            params = parse_qs(target.query)
            assert (target.scheme, target.netloc) == ("https", "accounts.google.com")
            assert params["client_id"] == [CLIENT_ID]
            assert params["response_type"] == ["id_token"]
            assert params["response_mode"] == ["form_post"]
            assert params["redirect_uri"] == ["http://testserver.local/console/sign-in/google"]
            nonce = params["nonce"][0]
            assert params["state"] == [nonce]
            callback = "/console/sign-in/google"
            # Google posts cross-site (no CSRF token); a state we did not sign is refused.
            forged = await browser.post(
                callback,
                {"id_token": id_token(keys, email=email, nonce="n"), "state": "n"},
                csrf=False,
            )
            assert forged.status_code == 401
            # Our state, but a token minted for another sign-in (its nonce differs).
            replayed = await browser.post(
                callback,
                {"id_token": id_token(keys, email=email, nonce="other"), "state": nonce},
                csrf=False,
            )
            assert replayed.status_code == 401
            assert "crm_console=" not in replayed.headers.get("set-cookie", "")
            signed_in = await browser.post(
                callback,
                {"id_token": id_token(keys, email=email, nonce=nonce), "state": nonce},
                csrf=False,
            )
            assert signed_in.status_code == 303, signed_in.text
            assert signed_in.headers["location"] == "/console/today"
            cookie = signed_in.headers["set-cookie"]
            assert cookie.startswith("crm_console=") and "HttpOnly" in cookie
            today = await browser.get("/console/today")
            assert today.status_code == 200
            assert "receptionist" in today.text


async def test_console_google_sign_in_at_a_chosen_location_for_staff_of_several(
    settings: Settings, clock: FixedClock, google_keys: tuple[Keys, str]
) -> None:
    from urllib.parse import parse_qs, urlsplit

    from crm_http_litestar.testing import console_browser

    keys, url = google_keys
    async for world in await _world(settings, clock, url):
        async with console_browser(world, None) as browser:

            async def nonce_for(location: str) -> str:
                query = f"?location={location}" if location else ""
                start = await browser.client.get(f"/console/sign-in/google{query}")
                return parse_qs(urlsplit(start.headers["location"]).query)["nonce"][0]

            async def answer(nonce: str, state: str | None = None) -> Any:
                return await browser.post(
                    "/console/sign-in/google",
                    {"id_token": id_token(keys, nonce=nonce), "state": state or nonce},
                    csrf=False,
                )

            # The owner works at Sydney and Melbourne: without a location, no session.
            unnamed = await answer(await nonce_for(""))
            assert unnamed.status_code == 403
            assert "enter the location" in unnamed.text
            # A state whose location was changed after we signed it is not ours.
            nonce = await nonce_for("sydney")
            tampered = nonce.replace(".sydney.", ".melbourne.")
            assert (await answer(tampered)).status_code == 401
            bad = await browser.client.get("/console/sign-in/google?location=../x")
            assert bad.status_code == 422
            signed_in = await answer(await nonce_for("melbourne"))
            assert signed_in.status_code == 303, signed_in.text
            today = await browser.get("/console/today")
            assert today.status_code == 200
            assert "Avatar Imaging Melbourne" in today.text
