"""The API docs page works offline: every file it needs comes from this server.

The browser test serves the app with uvicorn on a loopback port and opens
``/schema`` and ``/schema/swagger`` in headless Chromium (Debian's ``chromium``
and ``chromium-driver``, driven by Selenium) whose network is limited to
loopback: host names resolve nowhere and anything not on loopback goes to a
dead proxy.  It then checks that Swagger UI listed every operation of the
OpenAPI document and that the page asked nothing of any other host.  Without
Chromium the test FAILS — never skips — so CI cannot pass without it
(``.ci/run`` installs it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from crm_http_litestar import Settings
from crm_http_litestar.docs_ui import assets_path, assets_version
from crm_http_litestar.testing import SECRET, World
from crm_http_litestar.testing_browser import ChromiumMissing, headless_chromium, served

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The app on a free loopback port (a fresh SQLite file; the docs need no data)."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}",
        secret_key=SECRET,
        run_worker=False,
    )
    with served(settings) as base:
        yield base


def _chromium() -> Any:
    """Headless Chromium whose network reaches loopback only; fails if it is not installed."""
    try:
        return headless_chromium()
    except ChromiumMissing as exc:
        pytest.fail(f"the docs page test needs it: {exc}")


def _requested_urls(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_docs_pages_list_every_operation_with_no_network_but_loopback(server: str) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    schema = httpx.get(f"{server}/schema/openapi.json", timeout=10).json()
    expected = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in METHODS
    }
    assert len(expected) >= 20
    driver = _chromium()
    try:
        driver.set_page_load_timeout(30)
        for page in ("/schema", "/schema/swagger"):
            driver.get(f"{server}{page}")
            try:
                WebDriverWait(driver, 30).until(
                    lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(expected)
                )
            except TimeoutException:
                listed = len(driver.find_elements(By.CSS_SELECTOR, ".opblock"))
                pytest.fail(
                    f"{page}: Swagger UI listed {listed} of {len(expected)} operations;"
                    f" the page requested {_requested_urls(driver)}"
                )
            shown = {
                (
                    block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.strip(),
                    block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute(
                        "data-path"
                    ),
                )
                for block in driver.find_elements(By.CSS_SELECTOR, ".opblock")
            }
            assert shown == expected, page
            assert driver.title == schema["info"]["title"]
            urls = _requested_urls(driver)
            assets = [url for url in urls if urlsplit(url).path.startswith(assets_path())]
            assert len(assets) >= 3, urls  # the bundle, the preset and the stylesheet at least
            elsewhere = [
                url
                for url in urls
                if urlsplit(url).scheme not in ("data", "blob")
                and urlsplit(url).hostname != "127.0.0.1"
            ]
            assert elsewhere == [], elsewhere
    finally:
        driver.quit()


@pytest.mark.anyio
async def test_docs_page_names_only_this_servers_files(world: World) -> None:
    for page in ("/schema", "/schema/swagger"):
        html = (await world.client.get(page)).text
        assert "https://" not in html.split("<body>", 1)[0], page  # nothing from a CDN
        assert f"{assets_path()}/swagger-ui-bundle.js" in html
    assert assets_path() == f"/schema/assets/swagger-ui-{assets_version()}"
    # Public like the page (no token), versioned and cacheable for good.
    bundle = await world.client.get(f"{assets_path()}/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert "immutable" in bundle.headers["cache-control"]
    assert b"SwaggerUIBundle" in bundle.content
    css = await world.client.get(f"{assets_path()}/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css")
    # Only the page's files: nothing else of the installed package, no path tricks.
    for name in ("swagger-editor-bundle.js", "..%2F__init__.py", "core.py"):
        refused = await world.client.get(f"{assets_path()}/{name}")
        assert refused.status_code == 404, name
        assert refused.headers["content-type"].startswith("application/problem+json")
