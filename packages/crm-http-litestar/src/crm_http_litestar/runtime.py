"""Everything a running server holds: the gateway, the services, caches and the audit recorder.

Built by the app's lifespan from :class:`~crm_http_litestar.settings.Settings`
(and reused by the CLI), so no engine, connection or task exists at import time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta

import attrs
from crm_domain.bootstrap import Services
from crm_domain.clock import UlidFactory
from crm_domain.plugins import load_ai, load_gateway
from crm_domain.policies import GrantSource
from crm_domain.ports.ai import AIProvider
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, SupportsMigrations
from crm_domain.ports.messaging import Mailer, SmsSender
from crm_domain.services import UnsubscribeLinks

from crm_http_litestar.audit import GroupCommitAuditRecorder
from crm_http_litestar.clocks import configured_clock
from crm_http_litestar.google import GoogleIdTokenVerifier
from crm_http_litestar.messaging import (
    MessagingSettings,
    campaign_links,
    close_sms_sender,
    load_optional_mailer,
    load_optional_sms_sender,
)
from crm_http_litestar.rate_limit import RateLimits
from crm_http_litestar.sessions import SessionManager
from crm_http_litestar.settings import Settings
from crm_http_litestar.shared_state import SharedAccessEpoch, SharedRevocations, SharedState
from crm_http_litestar.tokens import TokenCodec

logger = logging.getLogger("crm_http_litestar")


@attrs.define(kw_only=True)
class CrmRuntime:
    """The live objects behind one app (``app.state.crm``)."""

    settings: Settings
    gateway: DatabaseGateway
    clock: Clock
    ids: IdFactory
    recorder: GroupCommitAuditRecorder
    sessions: SessionManager
    grants: GrantSource
    google: GoogleIdTokenVerifier
    services: Services
    rate_limits: RateLimits
    ai: AIProvider | None = None
    #: SMS numbers, webhook keys and the Wix key (``/api/sms``, ``/webhooks/…``).
    messaging: MessagingSettings = attrs.field(factory=MessagingSettings)
    #: The deployment's Redis (``CRM_REDIS_URL``); ``None``: all state in this process.
    shared: SharedState | None = None
    #: Access changes of other processes, when ``shared``.
    access_epoch: SharedAccessEpoch | None = None


def build_services(
    gateway: DatabaseGateway,
    clock: Clock,
    ids: IdFactory,
    ai: AIProvider | None,
    recorder: GroupCommitAuditRecorder,
    access_cache_ttl: int = 30,
    sms_sender: SmsSender | None = None,
    on_access_change: Callable[[], Awaitable[None]] | None = None,
    mailer: Mailer | None = None,
    campaign_links: UnsubscribeLinks | None = None,
    sms_numbers: Mapping[str, str] | None = None,
) -> Services:
    """Wire the domain's use cases with ``crm_domain.bootstrap`` (the one composition point)."""
    from crm_domain.bootstrap import bootstrap

    return bootstrap(
        gateway,
        clock=clock,
        ids=ids,
        ai=ai,
        audit_recorder=recorder,
        access_cache_ttl=timedelta(seconds=access_cache_ttl),
        sms_sender=sms_sender,
        on_access_change=on_access_change,
        mailer=mailer,
        unsubscribe_links=campaign_links,
        sms_numbers=sms_numbers,
    )


def load_optional_ai(settings: Settings) -> AIProvider | None:
    """The configured AI provider, or ``None`` when no ``crm.ai`` adapter is installed yet."""
    try:
        return load_ai(settings.ai_provider, settings.adapter_settings)
    except Exception as exc:  # an AI provider is optional for the HTTP routes of this server
        logger.warning("AI provider %r not available: %s", settings.ai_provider, exc)
        return None


async def migrate(gateway: DatabaseGateway) -> bool:
    """Apply schema migrations if the gateway has any; ``False`` when it has none."""
    if isinstance(gateway, SupportsMigrations):
        await gateway.migrate()
        return True
    return False


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    gateway: DatabaseGateway | None = None,
    clock: Clock | None = None,
    ids: IdFactory | None = None,
    ai: AIProvider | None = None,
    sms_sender: SmsSender | None = None,
    migrate_first: bool = False,
    mailer: Mailer | None = None,
) -> AsyncIterator[CrmRuntime]:
    """Open the gateway and wire everything; close it all on exit."""
    secret = settings.require_secret()
    # CRM_CLOCK_FILE: a clock tests move from outside the process (crm_http_litestar.clocks).
    clock = clock or configured_clock(dict(settings.adapter_settings))
    ids = ids or UlidFactory()
    owned = gateway is None
    gateway = gateway or load_gateway(settings.database_url)
    shared = (
        SharedState.from_url(settings.redis_url, settings.redis_namespace)
        if settings.redis_url
        else None
    )
    try:
        if shared is not None:
            await shared.ping()
        if migrate_first:
            await migrate(gateway)
        recorder = GroupCommitAuditRecorder(
            gateway, max_batch=settings.audit_batch_size, max_queue=settings.audit_queue_size
        )
        codec = TokenCodec(
            secret_key=secret, issuer=settings.token_issuer, audience=settings.token_audience
        )
        ai = ai or load_optional_ai(settings)
        messaging = MessagingSettings.from_settings(settings)
        owned_sender = sms_sender is None
        sms_sender = sms_sender or load_optional_sms_sender(settings, messaging)
        access_epoch: SharedAccessEpoch | None = None
        if shared is not None:

            def drop_access_caches() -> None:
                services.access.invalidate()
                services.grants.invalidate()

            access_epoch = SharedAccessEpoch(shared, clock, drop_access_caches)
        owned_mailer = mailer is None
        mailer = mailer or load_optional_mailer(settings)
        services = build_services(
            gateway,
            clock,
            ids,
            ai,
            recorder,
            settings.access_cache_ttl,
            sms_sender=sms_sender,
            on_access_change=None if access_epoch is None else access_epoch.publish,
            mailer=mailer,
            campaign_links=campaign_links(settings),
            sms_numbers=messaging.sms_numbers,
        )
        runtime = CrmRuntime(
            settings=settings,
            gateway=gateway,
            clock=clock,
            ids=ids,
            recorder=recorder,
            sessions=SessionManager(
                gateway,
                codec,
                clock,
                ids,
                token_ttl=timedelta(seconds=settings.token_ttl),
                idle_timeout=timedelta(seconds=settings.session_idle_timeout),
                revocations=None if shared is None else SharedRevocations(shared, clock),
            ),
            grants=services.grants,
            google=GoogleIdTokenVerifier(
                jwks_url=settings.google_jwks_url,
                client_id=settings.google_client_id,
                issuers=settings.google_issuers,
                hosted_domains=settings.google_hosted_domains,
            ),
            services=services,
            # The app's clock, so tests move time instead of sleeping.
            rate_limits=RateLimits(
                per_user=settings.rate_limit_per_user,
                per_address=settings.rate_limit_per_address,
                now=lambda: clock.now().timestamp(),
                shared=shared,
            ),
            ai=ai,
            messaging=messaging,
            shared=shared,
            access_epoch=access_epoch,
        )
        try:
            yield runtime
        finally:
            await recorder.aclose()
            await runtime.google.aclose()
            if owned_sender:
                await close_sms_sender(sms_sender)
            aclose = getattr(mailer, "aclose", None)
            if owned_mailer and aclose is not None:
                try:
                    await aclose()
                except Exception as exc:  # a failed QUIT at shutdown loses nothing
                    logger.warning("closing the mailer failed: %s", exc)
    finally:
        if shared is not None:
            await shared.aclose()
        if owned:
            await gateway.close()


__all__ = ["CrmRuntime", "build_services", "load_optional_ai", "migrate", "open_runtime"]
