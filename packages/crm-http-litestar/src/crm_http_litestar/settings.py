"""Server settings, read from the environment (and a ``.env`` file) as docs/contract.md lists."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from crm_domain.errors import ValidationError
from dotenv import dotenv_values

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./crm.db"
#: File name of the key ``--demo`` generates, kept in the database file's directory.
DEMO_KEY_FILE = ".crm-demo-key"
#: Shortest acceptable signing key: HS256 wants at least 256 bits of secret.
MIN_SECRET_LENGTH = 32
#: ``iss`` and ``aud`` of session tokens: a token minted for another service is refused.
SESSION_ISSUER = "avatar-imaging-crm"
SESSION_AUDIENCE = "avatar-imaging-crm-api"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(name, f"must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValidationError(name, f"must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ValidationError(name, f"must be true or false, got {raw!r}")


def parse_networks(raw: str, *, setting: str = "CRM_TRUSTED_PROXIES") -> tuple[Network, ...]:
    """Parse a comma- or space-separated list of CIDRs (bare addresses are host networks)."""
    networks: list[Network] = []
    for item in raw.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValidationError(setting, f"not an IP network: {item!r}") from None
    return tuple(networks)


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item for item in env.get(name, "").replace(",", " ").split() if item)


def _redis_url(env: Mapping[str, str]) -> str:
    raw = env.get("CRM_REDIS_URL", "").strip()
    if raw and not raw.lower().startswith(("redis://", "rediss://", "unix://")):
        raise ValidationError(
            "CRM_REDIS_URL", f"must be a redis://, rediss:// or unix:// URL, got {raw!r}"
        )
    return raw


def sqlite_path(database_url: str) -> Path | None:
    """The file behind a ``sqlite…:///path`` URL, or ``None`` for other stores or memory."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or not scheme.lower().startswith("sqlite"):
        return None
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def demo_key_path(database_url: str) -> Path:
    """Where ``--demo`` keeps its generated key: beside the SQLite file, else the working dir."""
    db = sqlite_path(database_url)
    return (db.parent if db is not None else Path()) / DEMO_KEY_FILE


@attrs.frozen(kw_only=True)
class Settings:
    """Everything the server, the CLI and the worker read from the environment.

    Build it with :meth:`from_env`; tests build it directly.
    """

    database_url: str = DEFAULT_DATABASE_URL
    #: HS256 signing key of session tokens; ``None`` only until :meth:`with_demo_key`.
    secret_key: str | None = None
    token_ttl: int = 900
    #: HIPAA automatic logoff: a session unused this long is over.
    session_idle_timeout: int = 900
    token_issuer: str = SESSION_ISSUER
    token_audience: str = SESSION_AUDIENCE
    trusted_proxies: tuple[Network, ...] = ()
    base_domain: str = ""
    ai_provider: str = "heuristic"
    #: Raw environment handed to adapters (AI provider keys, mailer settings …).
    adapter_settings: Mapping[str, str] = attrs.field(factory=dict)
    google_client_id: str = ""
    google_jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    google_issuers: tuple[str, ...] = ("accounts.google.com", "https://accounts.google.com")
    #: Google Workspace domains allowed to sign in (``hd`` claim); empty allows any.
    google_hosted_domains: tuple[str, ...] = ()
    #: Seconds roles, memberships and IP rules may be cached (CONTRACT: at most 60).
    access_cache_ttl: int = 30
    #: Requests per minute per signed-in user (all their sessions together); 0 = no limit.
    rate_limit_per_user: int = 600
    #: Requests per minute per client address (IPv6: per /64) that prove no identity:
    #: public routes, no token, a token or session that is not valid; 0 = no limit.
    rate_limit_per_address: int = 120
    max_body_bytes: int = 1_000_000
    #: Browser origins allowed by CORS; empty (the default) sends no CORS headers at all.
    cors_origins: tuple[str, ...] = ()
    #: Read-audit group commit: entries per transaction and entries waiting at most.
    audit_batch_size: int = 500
    audit_queue_size: int = 10_000
    #: Redis shared by every server process (rate limits, logouts, access changes);
    #: empty keeps all of it in each process.
    redis_url: str = ""
    #: Prefix of every Redis key, so deployments (and test runs) can share one Redis.
    redis_namespace: str = "crm"
    #: Run the outbox consumer inside the server process (the embedded default).
    run_worker: bool = True
    demo: bool = False

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        env_file: str | os.PathLike[str] | None = ".env",
        demo: bool = False,
    ) -> Settings:
        """Read settings; real environment variables win over the ``.env`` file."""
        env: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        cache_ttl = _int(env, "CRM_ACCESS_CACHE_TTL", 30)
        if cache_ttl > 60:
            raise ValidationError("CRM_ACCESS_CACHE_TTL", "roles may be cached for at most 60 s")
        secret = env.get("CRM_SECRET_KEY", "").strip() or None
        if secret is not None and len(secret) < MIN_SECRET_LENGTH:
            raise ValidationError(
                "CRM_SECRET_KEY", f"must be at least {MIN_SECRET_LENGTH} characters"
            )
        settings = cls(
            database_url=env.get("CRM_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL,
            secret_key=secret,
            token_ttl=_int(env, "CRM_TOKEN_TTL", 900, minimum=1),
            session_idle_timeout=_int(env, "CRM_SESSION_IDLE_TIMEOUT", 900, minimum=1),
            trusted_proxies=parse_networks(env.get("CRM_TRUSTED_PROXIES", "")),
            base_domain=env.get("CRM_BASE_DOMAIN", "").strip().lower().strip("."),
            ai_provider=env.get("CRM_AI_PROVIDER", "").strip() or "heuristic",
            adapter_settings={k: v for k, v in env.items() if k.startswith("CRM_")},
            google_client_id=env.get("CRM_GOOGLE_CLIENT_ID", "").strip(),
            google_jwks_url=env.get("CRM_GOOGLE_JWKS_URL", "").strip()
            or "https://www.googleapis.com/oauth2/v3/certs",
            google_hosted_domains=_list(env, "CRM_GOOGLE_HOSTED_DOMAINS"),
            access_cache_ttl=cache_ttl,
            # CRM_RATE_LIMIT_PER_MINUTE is the former name (then per address, for everyone).
            rate_limit_per_user=_int(
                env,
                "CRM_RATE_LIMIT_PER_USER",
                _int(env, "CRM_RATE_LIMIT_PER_MINUTE", 600),
            ),
            rate_limit_per_address=_int(env, "CRM_RATE_LIMIT_PER_ADDRESS", 120),
            max_body_bytes=_int(env, "CRM_MAX_BODY_BYTES", 1_000_000, minimum=1024),
            cors_origins=_list(env, "CRM_CORS_ORIGINS"),
            run_worker=_bool(env, "CRM_RUN_WORKER", True),
            redis_url=_redis_url(env),
            redis_namespace=env.get("CRM_REDIS_NAMESPACE", "").strip() or "crm",
            demo=demo,
        )
        return settings.with_demo_key() if demo else settings

    def with_demo_key(self, *, create: bool = True) -> Settings:
        """Use ``CRM_SECRET_KEY`` if set, else the demo key beside the database (made if asked)."""
        if self.secret_key is not None:
            return self
        path = demo_key_path(self.database_url)
        if path.is_file():
            key = path.read_text(encoding="utf-8").strip()
        elif create:
            key = secrets.token_urlsafe(48)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Owner-only: the key signs every session token of the demo.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(key + "\n")
        else:
            return self
        return attrs.evolve(self, secret_key=key)

    def require_secret(self) -> str:
        """The signing key, or a ``ValidationError`` naming ``CRM_SECRET_KEY``."""
        if self.secret_key is None:
            raise ValidationError(
                "CRM_SECRET_KEY",
                "is required (or run `crm serve --demo`, which generates a demo key)",
            )
        return self.secret_key

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed."""
        return attrs.evolve(self, **changes)


__all__ = ["DEFAULT_DATABASE_URL", "DEMO_KEY_FILE", "Settings", "demo_key_path", "parse_networks"]
