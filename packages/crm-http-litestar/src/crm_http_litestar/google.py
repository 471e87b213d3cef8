"""Verifying Google ID tokens (Sign in with Google) against Google's published keys.

The token is an RS256 JWT.  Its key is looked up by ``kid`` in the JWKS served at
``CRM_GOOGLE_JWKS_URL`` (cached as long as the response's ``Cache-Control``
allows, refetched at most every 30 s when an unknown ``kid`` shows up, so key
rotation works and an attacker cannot make us hammer Google).  Then PyJWT
checks the signature with the algorithm pinned to RS256, ``aud`` = our client
id, ``iss`` = Google, ``exp``/``iat``; we add ``email_verified`` and, if
configured, the Workspace domain (``hd``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import httpx
import jwt
from crm_domain.errors import Unavailable

_MAX_AGE = re.compile(r"max-age=(\d+)")
_REFETCH_AFTER = 30.0


class InvalidGoogleToken(Exception):
    """The ID token is not a valid Google token for this app."""


@attrs.frozen(slots=True, kw_only=True)
class GoogleIdentity:
    """The verified facts of a Google ID token."""

    subject: str
    email: str
    hosted_domain: str | None
    name: str | None
    #: The ``nonce`` claim, when the sign-in request sent one (the console's redirect flow).
    nonce: str | None = None


class GoogleIdTokenVerifier:
    """Checks Google ID tokens; one per app (it caches the JWKS)."""

    def __init__(
        self,
        *,
        jwks_url: str,
        client_id: str,
        issuers: Sequence[str] = ("accounts.google.com", "https://accounts.google.com"),
        hosted_domains: Sequence[str] = (),
        timeout: float = 5.0,
    ) -> None:
        self._jwks_url = jwks_url
        self._client_id = client_id
        self._issuers = list(issuers)
        self._hosted_domains = frozenset(d.lower() for d in hosted_domains)
        self._timeout = timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._expires_at = 0.0
        self._fetched_at = -_REFETCH_AFTER
        self._client: httpx.AsyncClient | None = None

    @property
    def configured(self) -> bool:
        """Whether a client id is set (Google sign-in is off without one)."""
        return bool(self._client_id)

    async def verify(self, id_token: str) -> GoogleIdentity:
        """Return the identity in a valid token, or raise :class:`InvalidGoogleToken`."""
        if not self.configured:
            raise Unavailable("Google sign-in is not configured (CRM_GOOGLE_CLIENT_ID)")
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise InvalidGoogleToken(f"malformed token: {exc}") from None
        if header.get("alg") != "RS256":
            raise InvalidGoogleToken("Google ID tokens are RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidGoogleToken("token names no key (kid)")
        key = await self._key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=["RS256"],
                audience=self._client_id,
                issuer=self._issuers,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            raise InvalidGoogleToken(str(exc)) from None
        return self._identity(claims)

    def _identity(self, claims: Mapping[str, Any]) -> GoogleIdentity:
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise InvalidGoogleToken("token carries no email")
        if claims.get("email_verified") not in (True, "true"):
            raise InvalidGoogleToken("the Google account's email is not verified")
        hd = claims.get("hd")
        if self._hosted_domains and (
            not isinstance(hd, str) or hd.lower() not in self._hosted_domains
        ):
            raise InvalidGoogleToken("the account is not in an allowed Google Workspace domain")
        name = claims.get("name")
        nonce = claims.get("nonce")
        return GoogleIdentity(
            nonce=nonce if isinstance(nonce, str) else None,
            subject=str(claims["sub"]),
            email=email,
            hosted_domain=hd if isinstance(hd, str) else None,
            name=name if isinstance(name, str) else None,
        )

    async def _key(self, kid: str) -> jwt.PyJWK:
        now = time.monotonic()
        expired = now >= self._expires_at
        if ((expired or kid not in self._keys) and now - self._fetched_at >= _REFETCH_AFTER) or (
            expired and not self._keys
        ):
            await self._fetch(now)
        key = self._keys.get(kid)
        if key is None:
            raise InvalidGoogleToken("token signed with an unknown key")
        return key

    async def _fetch(self, now: float) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        try:
            response = await self._client.get(self._jwks_url)
            response.raise_for_status()
            data = response.json()
            keys: dict[str, jwt.PyJWK] = {}
            for item in data.get("keys", []):
                if not isinstance(item, dict) or item.get("kty") != "RSA":
                    continue
                kid = item.get("kid")
                if isinstance(kid, str):
                    keys[kid] = jwt.PyJWK(item, algorithm="RS256")
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            raise Unavailable(f"Google's signing keys could not be fetched ({exc})") from None
        self._keys = keys
        self._fetched_at = now
        match = _MAX_AGE.search(response.headers.get("cache-control", ""))
        self._expires_at = now + (int(match.group(1)) if match else 300)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


__all__ = ["GoogleIdTokenVerifier", "GoogleIdentity", "InvalidGoogleToken"]
