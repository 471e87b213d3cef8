"""Server-side sessions behind session tokens: idle timeout and logout that really revokes.

A token is only a pointer to a :class:`~crm_domain.entities.Session` record.  The
record is read through a small cache so the hot path does not hit the store on
every request; the cache is short-lived (``record_ttl``, a few seconds) so a
logout in another worker process takes effect within that time, and a logout
in this process evicts it at once.  With shared ``revocations`` (Redis, when
``CRM_REDIS_URL`` is set) every request also asks whether any process ended
the session, so a logout is effective everywhere at once.  Activity is written back (``touch``) at
most every ``touch_interval``: the idle clock may therefore end a session up to
that much *early*, never late.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta
from typing import TYPE_CHECKING

import attrs
from crm_domain.entities import Session
from crm_domain.errors import NotFound
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway

from crm_http_litestar.tokens import InvalidToken, TokenClaims, TokenCodec

if TYPE_CHECKING:
    from crm_http_litestar.shared_state import SharedRevocations


@attrs.define(slots=True)
class _Cached:
    session: Session
    fetched_at_ts: float
    #: Last activity seen by this process (may be newer than ``session.last_seen_at``).
    last_seen_ts: float
    stored_seen_ts: float


@attrs.frozen(slots=True, kw_only=True)
class IssuedToken:
    """A new session and its signed token."""

    token: str
    session: Session


class SessionManager:
    """Opens, checks and revokes sessions."""

    def __init__(
        self,
        gateway: DatabaseGateway,
        codec: TokenCodec,
        clock: Clock,
        ids: IdFactory,
        *,
        token_ttl: timedelta,
        idle_timeout: timedelta,
        record_ttl: timedelta = timedelta(seconds=5),
        max_cached: int = 50_000,
        revocations: SharedRevocations | None = None,
    ) -> None:
        self._gateway = gateway
        self._codec = codec
        self._clock = clock
        self._ids = ids
        self.token_ttl = token_ttl
        self.idle_timeout = idle_timeout
        self._record_ttl = record_ttl.total_seconds()
        # Touch often enough that the stored idle clock is at most 1/10 of the timeout behind.
        self._touch_interval = min(30.0, idle_timeout.total_seconds() / 10)
        self._max_cached = max_cached
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._revocations = revocations

    @property
    def codec(self) -> TokenCodec:
        """The token signer/verifier."""
        return self._codec

    async def open(
        self, user_id: str, location_id: str | None, *, ttl: timedelta | None = None
    ) -> IssuedToken:
        """Store a new session and return its token."""
        now = self._clock.now()
        lifetime = ttl or self.token_ttl
        session = Session(
            id=self._ids.new_id(),
            user_id=user_id,
            location_id=location_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
        )
        async with self._gateway.unit_of_work(None) as uow:
            await uow.sessions.add(session)
            await uow.commit()
        token = self._codec.issue(
            user_id=user_id,
            session_id=session.id,
            location_id=location_id,
            issued_at=now,
            ttl=lifetime,
        )
        return IssuedToken(token=token, session=session)

    async def authenticate(self, token: str) -> tuple[TokenClaims, Session]:
        """Verify the token and its live session; raise :class:`InvalidToken` otherwise."""
        claims = self._codec.verify(token)
        now = self._clock.now()
        now_ts = now.timestamp()
        cached = self._cache.get(claims.session_id)
        if cached is None or now_ts - cached.fetched_at_ts >= self._record_ttl:
            cached = await self._load(claims.session_id, now_ts, cached)
        session = cached.session
        if session.user_id != claims.user_id or session.location_id != claims.location_id:
            raise InvalidToken("token does not match its session")
        if session.revoked_at is not None:
            raise InvalidToken("session was signed out")
        if now >= session.expires_at:
            raise InvalidToken("session expired")
        if self._revocations is not None and await self._revocations.is_revoked(session.id):
            self._cache.pop(claims.session_id, None)
            raise InvalidToken("session was signed out")
        if now_ts - cached.last_seen_ts > self.idle_timeout.total_seconds():
            self._cache.pop(claims.session_id, None)
            raise InvalidToken("session ended after inactivity (automatic logoff)")
        cached.last_seen_ts = now_ts
        if now_ts - cached.stored_seen_ts >= self._touch_interval:
            async with self._gateway.unit_of_work(None) as uow:
                await uow.sessions.touch(session.id, now)
                await uow.commit()
            cached.stored_seen_ts = now_ts
        return claims, session

    async def _load(self, session_id: str, now_ts: float, previous: _Cached | None) -> _Cached:
        try:
            async with self._gateway.unit_of_work(None) as uow:
                session = await uow.sessions.get(session_id)
        except NotFound:
            self._cache.pop(session_id, None)
            raise InvalidToken("unknown session") from None
        stored = session.last_seen_at.timestamp()
        local = max(stored, previous.last_seen_ts) if previous is not None else stored
        entry = _Cached(
            session=session, fetched_at_ts=now_ts, last_seen_ts=local, stored_seen_ts=stored
        )
        self._cache[session_id] = entry
        self._cache.move_to_end(session_id)
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        return entry

    async def revoke(self, session_id: str) -> None:
        """End a session for good (logout); later requests with its token get 401."""
        self._cache.pop(session_id, None)
        if self._revocations is not None:
            # First, and fail closed: once this returns no process accepts the token.
            async with self._gateway.unit_of_work(None) as uow:
                session = await uow.sessions.get(session_id)
            await self._revocations.revoke(session_id, session.expires_at)
        async with self._gateway.unit_of_work(None) as uow:
            await uow.sessions.revoke(session_id, self._clock.now())
            await uow.commit()

    def forget(self, session_id: str | None = None) -> None:
        """Drop cached records (one, or all) so the next request reads the store."""
        if session_id is None:
            self._cache.clear()
        else:
            self._cache.pop(session_id, None)


__all__ = ["IssuedToken", "SessionManager"]
