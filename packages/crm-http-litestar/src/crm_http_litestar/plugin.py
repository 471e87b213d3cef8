"""``CrmPlugin``: everything the CRM adds to a Litestar app, from one frozen config."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
from crm_domain import __version__ as domain_version
from crm_domain.ports.ai import AIProvider
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.ports.messaging import SmsSender
from litestar import Litestar, Router
from litestar.config.app import AppConfig
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.logging.config import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins import InitPluginProtocol
from litestar.types import ControllerRouterHandler

from crm_http_litestar.docs_ui import SCHEMA_PATH, swagger_assets_handler, swagger_plugin
from crm_http_litestar.pipeline import (
    STATE_KEY,
    Authenticate,
    RequestGate,
    check_route_permissions,
    rbac_guard,
)
from crm_http_litestar.problems import exception_handlers
from crm_http_litestar.runtime import open_runtime
from crm_http_litestar.schemas import close_body_schemas
from crm_http_litestar.settings import Settings


@attrs.frozen(kw_only=True)
class CrmConfig:
    """What the plugin needs: settings, plus ports to use instead of the configured ones (tests)."""

    settings: Settings
    gateway: DatabaseGateway | None = None
    clock: Clock | None = None
    ids: IdFactory | None = None
    ai: AIProvider | None = None
    #: The SMS sender to use instead of ``CRM_SMS_PROVIDER``'s (tests, embedding).
    sms_sender: SmsSender | None = None
    #: Apply migrations when the app starts (``crm serve --demo`` does it before).
    migrate_on_startup: bool = False
    #: Where the server listens, for the lines ``--demo`` prints.
    announce_base_url: str = "http://127.0.0.1:8000"
    #: Extra route handlers (they go through the same pipeline and checks).
    extra_routes: Sequence[ControllerRouterHandler] = ()


class CrmPlugin(InitPluginProtocol):
    """Adds lifespan, routes, the security pipeline, guards, problem details and OpenAPI."""

    __slots__ = ("config",)

    def __init__(self, config: CrmConfig) -> None:
        self.config = config

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Install the CRM into the app being built."""
        from crm_http_litestar.console import (
            console_csrf_config,
            console_router,
            console_template_config,
        )
        from crm_http_litestar.routes import all_routes
        from crm_http_litestar.routes._deps import provide_crm

        settings = self.config.settings
        # One router around every route, so the body limit applies to all of them
        # (Litestar reads the app-level limit from its constructor, not from the config).
        app_config.route_handlers.append(
            Router(
                path="/",
                route_handlers=[*all_routes(), console_router(), *self.config.extra_routes],
                request_max_body_size=settings.max_body_bytes,
            )
        )
        close_body_schemas(app_config.plugins)  # OpenAPI says bodies refuse unknown fields
        app_config.lifespan.append(self._lifespan)
        app_config.on_startup.append(check_route_permissions)

        # Rate limits are applied inside Authenticate: the address budget before the
        # token is read, the user's budget once the token names the user.
        middleware: list[Any] = [DefineMiddleware(RequestGate), DefineMiddleware(Authenticate)]
        app_config.middleware = [*middleware, *app_config.middleware]
        app_config.guards = [rbac_guard, *app_config.guards]
        app_config.exception_handlers = {
            **(app_config.exception_handlers or {}),
            **exception_handlers(),
        }
        app_config.dependencies = {
            **(app_config.dependencies or {}),
            "crm": Provide(provide_crm, sync_to_thread=False),
        }
        app_config.request_max_body_size = settings.max_body_bytes
        # The staff console: server-rendered pages whose forms need CSRF protection.
        app_config.template_config = console_template_config()
        public_url = settings.adapter_settings.get("CRM_PUBLIC_URL", "").strip().lower()
        app_config.csrf_config = console_csrf_config(
            settings.require_secret(), secure=public_url.startswith("https://")
        )
        # Warnings and errors from libraries; our own INFO (worker, audit) stays visible.
        # Unhandled errors are logged once, by the problem-details handler.
        app_config.logging_config = LoggingConfig(
            root={"handlers": ["queue_listener"], "level": "WARNING"},
            loggers={"crm_http_litestar": {"level": "INFO", "propagate": True}},
            log_exceptions="never",
        )
        if settings.cors_origins:
            app_config.cors_config = CORSConfig(allow_origins=list(settings.cors_origins))
        app_config.openapi_config = OpenAPIConfig(
            title="Avatar Imaging CRM API",
            version=domain_version,
            description=(
                "Every /api route needs `Authorization: Bearer <token>` (from `crm token` or "
                "`POST /auth/google`), a location you are a member of, and a client address "
                "in that location's IP allowlist. Each operation names its permission. "
                "Errors are RFC 9457 problem details."
            ),
            path=SCHEMA_PATH,
            # Swagger UI from a pinned package, served here: the page works offline and
            # changes only with uv.lock (Litestar's defaults load a CDN's latest copy).
            render_plugins=[swagger_plugin()],
            openapi_router=Router(
                path=SCHEMA_PATH, route_handlers=[swagger_assets_handler()], opt={"public": True}
            ),
            components=Components(
                security_schemes={
                    "session": SecurityScheme(
                        type="http", scheme="bearer", bearer_format="JWT (HS256 session token)"
                    )
                }
            ),
            security=[{"session": []}],
        )
        return app_config

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Litestar) -> AsyncIterator[None]:
        config = self.config
        async with open_runtime(
            config.settings,
            gateway=config.gateway,
            clock=config.clock,
            ids=config.ids,
            ai=config.ai,
            sms_sender=config.sms_sender,
            migrate_first=config.migrate_on_startup,
        ) as runtime:
            app.state[STATE_KEY] = runtime
            if config.settings.demo:
                from crm_http_litestar.demo import announce_demo

                await announce_demo(runtime, config.announce_base_url)
            worker = None
            if config.settings.run_worker:
                from crm_http_litestar.worker import start_in_process_worker

                worker = await start_in_process_worker(runtime)
            try:
                yield
            finally:
                if worker is not None:
                    await worker.stop()
                app.state.pop(STATE_KEY, None)


__all__ = ["CrmConfig", "CrmPlugin"]
