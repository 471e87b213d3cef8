"""The browsable API docs (Swagger UI) served by the app itself, from a pinned package.

Litestar's render plugins load their JavaScript from a CDN by default, so the
docs page is blank without internet and changes whenever the CDN's copy does.
Here the Swagger UI files come from the ``swagger-ui-py`` distribution (pinned
in ``uv.lock``) and are served under ``/schema/assets/swagger-ui-<version>/``:
the page works offline, and only an upgrade of the lock changes it.  The path
carries the version, so browsers may cache the files for good.

The files are read from the installed distribution without importing it (its
package imports Jinja and YAML for framework integrations we do not use).
"""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path

from crm_domain.errors import NotFound
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath

#: The distribution that bundles Swagger UI's built files.
DISTRIBUTION = "swagger-ui-py"
#: Where the OpenAPI pages live (``OpenAPIConfig.path``).
SCHEMA_PATH = "/schema"

#: The files the page needs, and their media types; nothing else is served.
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain",
}
#: Versioned URL path: a new lock serves new URLs, so old copies never linger in caches.
_CACHE_FOREVER = "public, max-age=31536000, immutable"


@functools.cache
def _distribution() -> importlib.metadata.Distribution:
    return importlib.metadata.distribution(DISTRIBUTION)


def assets_version() -> str:
    """The version of the installed Swagger UI bundle (the distribution's version)."""
    return _distribution().version


def assets_path() -> str:
    """The URL path the Swagger UI files are served under (no trailing slash)."""
    return f"{SCHEMA_PATH}/assets/swagger-ui-{assets_version()}"


@functools.cache
def _read(name: str) -> bytes:
    return Path(str(_distribution().locate_file(f"swagger_ui/static/{name}"))).read_bytes()


def swagger_plugin() -> SwaggerRenderPlugin:
    """Swagger UI at ``/schema`` and ``/schema/swagger``, every file from this server."""
    base = assets_path()
    return SwaggerRenderPlugin(
        path=["/", "/swagger"],
        js_url=f"{base}/swagger-ui-bundle.js",
        css_url=f"{base}/swagger-ui.css",
        standalone_preset_js_url=f"{base}/swagger-ui-standalone-preset.js",
        # Litestar's default favicon is another CDN link.
        favicon=f"<link rel='icon' type='image/png' href='{base}/favicon-32x32.png'>",
    )


def swagger_assets_handler() -> HTTPRouteHandler:
    """``GET /schema/assets/swagger-ui-<version>/{name}``: public, like the page that uses it.

    Register it on the (public) OpenAPI router; the path is relative to it.
    """
    relative = assets_path().removeprefix(SCHEMA_PATH)

    @get(
        f"{relative}/{{name:str}}",
        include_in_schema=False,
        sync_to_thread=False,
        opt={"public": True},
        name="swagger-ui-assets",
    )
    def swagger_asset(name: FromPath[str]) -> Response[bytes]:
        """One of Swagger UI's files; any other name is a 404."""
        media_type = _ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"no docs asset {name!r}")
        return Response(
            _read(name),
            media_type=media_type,
            headers={"Cache-Control": _CACHE_FOREVER, "X-Content-Type-Options": "nosniff"},
        )

    return swagger_asset


__all__ = [
    "DISTRIBUTION",
    "SCHEMA_PATH",
    "assets_path",
    "assets_version",
    "swagger_assets_handler",
    "swagger_plugin",
]
