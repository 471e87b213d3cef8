"""Session tokens: short-lived HS256 JWTs signed with ``CRM_SECRET_KEY`` (PyJWT).

The algorithm is pinned: ``jwt.decode`` is given exactly ``["HS256"]``, so a token
claiming ``alg: none`` or an RS/ES algorithm (the HS/RS confusion attack, where
a public key is used as an HMAC secret) is refused before any key is used.
Every claim the server relies on is required.  A token alone is not enough:
its ``jti`` names a server-side session that must still be live
(:mod:`crm_http_litestar.sessions`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import attrs
import jwt

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub", "jti")


class InvalidToken(Exception):
    """The token is missing, malformed, wrongly signed, expired or for someone else."""


@attrs.frozen(slots=True, kw_only=True)
class TokenClaims:
    """The verified claims of a session token."""

    user_id: str
    session_id: str
    location_id: str | None
    issued_at: datetime
    expires_at: datetime


@attrs.frozen(kw_only=True)
class TokenCodec:
    """Signs and verifies session tokens for one key, issuer and audience."""

    secret_key: str = attrs.field(repr=False)
    issuer: str
    audience: str
    #: Clock skew tolerated on ``exp``/``iat`` between processes.
    leeway_seconds: int = 5
    #: Tokens already verified, by their exact text.  A client sends the same token
    #: on every request; re-checking the HMAC of identical bytes under the same key
    #: cannot give another answer, only ``exp`` can change (checked on every hit).
    _verified: dict[str, TokenClaims] = attrs.field(factory=dict, init=False, repr=False, eq=False)
    max_cached: int = 10_000

    def issue(
        self,
        *,
        user_id: str,
        session_id: str,
        location_id: str | None,
        issued_at: datetime,
        ttl: timedelta,
    ) -> str:
        """Return a signed token for this session."""
        claims: dict[str, object] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "jti": session_id,
            "iat": int(issued_at.timestamp()),
            "exp": int((issued_at + ttl).timestamp()),
        }
        if location_id is not None:
            claims["location"] = location_id
        return jwt.encode(claims, self.secret_key, algorithm=ALGORITHM)

    def verify(self, token: str) -> TokenClaims:
        """Return the claims of a valid token or raise :class:`InvalidToken`."""
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached.expires_at.timestamp() + self.leeway_seconds:
                return cached
            del self._verified[token]
        claims = self._verify(token)
        if len(self._verified) >= self.max_cached:
            self._verified.clear()  # crude but bounded; refilled by live clients at once
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self.secret_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS), "verify_signature": True},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        location = claims.get("location")
        sub, jti = claims["sub"], claims["jti"]
        if not isinstance(sub, str) or not isinstance(jti, str) or not sub or not jti:
            raise InvalidToken("sub and jti must be non-empty strings")
        if location is not None and not isinstance(location, str):
            raise InvalidToken("location must be a string")
        return TokenClaims(
            user_id=sub,
            session_id=jti,
            location_id=location,
            issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


__all__ = ["ALGORITHM", "InvalidToken", "TokenClaims", "TokenCodec", "bearer_token"]
