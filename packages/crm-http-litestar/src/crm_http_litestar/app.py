"""The app factory: ``create_app(settings)`` returns ``Litestar(plugins=[CrmPlugin(config)])``."""

from __future__ import annotations

from litestar import Litestar

from crm_http_litestar.pipeline import check_route_permissions
from crm_http_litestar.plugin import CrmConfig, CrmPlugin
from crm_http_litestar.settings import Settings


def create_app(settings: Settings | CrmConfig | None = None) -> Litestar:
    """Build the CRM's Litestar app from settings (or a full :class:`CrmConfig`).

    Raises :class:`~crm_http_litestar.pipeline.RouteWithoutPermission` at once if a
    route under ``/api`` declares no permission (the startup hook checks again,
    for apps assembled by other means).
    """
    if settings is None:
        settings = Settings.from_env()
    config = settings if isinstance(settings, CrmConfig) else CrmConfig(settings=settings)
    config.settings.require_secret()
    app = Litestar(plugins=[CrmPlugin(config)], debug=False)
    check_route_permissions(app)
    return app


def create_app_from_env() -> Litestar:
    """The app of one of several server processes (``crm serve --workers N``).

    Settings come from the environment alone; the parent already migrated and
    seeded what ``--demo`` asks for, so a process neither migrates nor seeds.
    """
    return create_app(Settings.from_env())


__all__ = ["create_app", "create_app_from_env"]
