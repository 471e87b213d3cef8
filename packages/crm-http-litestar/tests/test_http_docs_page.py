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
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from crm_http_litestar import CrmConfig, Settings, create_app
from crm_http_litestar.docs_ui import assets_path, assets_version
from crm_http_litestar.testing import SECRET, World

CHROMIUM = os.environ.get("CRM_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = (
    os.environ.get("CRM_TEST_CHROMEDRIVER")
    or shutil.which("chromedriver")
    or "/usr/bin/chromedriver"
)
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The app on a free loopback port (a fresh SQLite file; the docs need no data)."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}",
        secret_key=SECRET,
        run_worker=False,
    )
    app = create_app(CrmConfig(settings=settings, migrate_on_startup=True))
    port = _free_port()
    served = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not served.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        served.should_exit = True
        thread.join(timeout=20)


def _chromium() -> Any:
    """Headless Chromium whose network reaches loopback only; fails if it is not installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"headless Chromium is needed for the docs page test, not found: {', '.join(missing)}"
            " — `apt-get install -y chromium chromium-driver` (.ci/run does it)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        # Loopback only: names resolve nowhere, and anything not on loopback (Chromium
        # never proxies loopback) goes to a proxy where nothing listens.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        # Nothing of Chromium's own talking to the internet either.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--no-first-run",
        "--no-pings",
    ):
        options.add_argument(flag)
    # The performance log carries every request the page makes (DevTools Network events).
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


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
