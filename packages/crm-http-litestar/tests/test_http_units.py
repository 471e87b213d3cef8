"""Small pieces: client address resolution, settings, tokens."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from crm_domain.errors import ValidationError

from crm_http_litestar.client_ip import parse_ip, resolve_client_ip
from crm_http_litestar.settings import DEMO_KEY_FILE, Settings, demo_key_path, parse_networks
from crm_http_litestar.tokens import InvalidToken, TokenCodec, bearer_token

PROXY = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))


def _resolve(peer: str, **headers: str) -> str | None:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    address = resolve_client_ip(peer, raw, PROXY)
    return None if address is None else str(address)


def test_peer_is_the_client_unless_it_is_a_trusted_proxy() -> None:
    assert _resolve("203.0.113.5", x_forwarded_for="1.2.3.4") == "203.0.113.5"
    assert _resolve("203.0.113.5", cf_connecting_ip="1.2.3.4") == "203.0.113.5"
    assert _resolve("10.1.1.1", x_forwarded_for="1.2.3.4") == "1.2.3.4"
    assert _resolve("10.1.1.1", cf_connecting_ip="1.2.3.4", x_forwarded_for="5.6.7.8") == "1.2.3.4"
    # Left-most entries were written by the client: the right-most untrusted hop wins.
    assert _resolve("10.1.1.1", x_forwarded_for="9.9.9.9, 1.2.3.4, 10.2.2.2") == "1.2.3.4"
    assert _resolve("10.1.1.1", x_forwarded_for="junk") == "10.1.1.1"
    assert _resolve("10.1.1.1") == "10.1.1.1"
    assert _resolve("2001:db8::7", x_forwarded_for="2001:db9::1") == "2001:db9::1"


def test_addresses_are_normalised() -> None:
    assert str(parse_ip("::ffff:127.0.0.1")) == "127.0.0.1"
    assert str(parse_ip("[::1]")) == "::1"
    assert str(parse_ip("fe80::1%eth0")) == "fe80::1"
    assert parse_ip("testclient") is None
    assert parse_ip(None) is None
    assert _resolve("::ffff:10.1.1.1", x_forwarded_for="1.2.3.4") == "1.2.3.4"


def test_settings_from_env_and_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "CRM_TOKEN_TTL=120\nCRM_BASE_DOMAIN=crm.example\nCRM_SECRET_KEY=" + "k" * 40
    )
    settings = Settings.from_env(
        {"CRM_TOKEN_TTL": "300", "CRM_TRUSTED_PROXIES": "10.0.0.0/8, ::1"}, env_file=env_file
    )
    assert settings.token_ttl == 300  # the environment wins over .env
    assert settings.base_domain == "crm.example"
    assert settings.secret_key == "k" * 40
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    assert settings.database_url == "sqlite+aiosqlite:///./crm.db"
    with pytest.raises(ValidationError, match="CRM_TOKEN_TTL"):
        Settings.from_env({"CRM_TOKEN_TTL": "soon"}, env_file=None)
    with pytest.raises(ValidationError, match="CRM_SECRET_KEY"):
        Settings.from_env({"CRM_SECRET_KEY": "short"}, env_file=None)
    with pytest.raises(ValidationError, match="CRM_ACCESS_CACHE_TTL"):
        Settings.from_env({"CRM_ACCESS_CACHE_TTL": "61"}, env_file=None)
    with pytest.raises(ValidationError):
        parse_networks("10.0.0.0/8 nonsense")
    with pytest.raises(ValidationError, match="CRM_SECRET_KEY"):
        Settings.from_env({}, env_file=None).require_secret()


def test_demo_key_is_kept_beside_the_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'crm.db'}"
    assert demo_key_path(url) == tmp_path / "data" / DEMO_KEY_FILE
    first = Settings.from_env({"CRM_DATABASE_URL": url}, env_file=None, demo=True)
    again = Settings.from_env({"CRM_DATABASE_URL": url}, env_file=None, demo=True)
    assert first.secret_key and first.secret_key == again.secret_key
    assert (demo_key_path(url).stat().st_mode & 0o777) == 0o600
    cli = Settings.from_env({"CRM_DATABASE_URL": url}, env_file=None).with_demo_key(create=False)
    assert cli.secret_key == first.secret_key


def test_token_codec_round_trip_and_refusals() -> None:
    codec = TokenCodec(secret_key="s" * 40, issuer="iss", audience="aud")
    now = datetime.now(UTC)
    token = codec.issue(
        user_id="u1", session_id="s1", location_id="l1", issued_at=now, ttl=timedelta(minutes=5)
    )
    claims = codec.verify(token)
    assert (claims.user_id, claims.session_id, claims.location_id) == ("u1", "s1", "l1")
    other = TokenCodec(secret_key="s" * 40, issuer="iss", audience="other")
    with pytest.raises(InvalidToken):
        other.verify(token)
    expired = codec.issue(
        user_id="u1",
        session_id="s1",
        location_id=None,
        issued_at=now - timedelta(hours=2),
        ttl=timedelta(minutes=5),
    )
    with pytest.raises(InvalidToken):
        codec.verify(expired)


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None
