"""Browser test support: the app served on loopback, headless Chromium, axe-core, a scenario.

Shared by the browser tests (the API docs page, the staff console) and the
``screenshots`` nox session.  Selenium and axe-selenium-python are development
dependencies, imported only when a browser is asked for.  Without Chromium the
caller is told so with an error (tests turn it into a failure, never a skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import uvicorn
from crm_ai import HeuristicProvider
from crm_domain.bootstrap import bootstrap
from crm_domain.clock import SystemClock, UlidFactory
from crm_domain.context import Context
from crm_domain.plugins import load_gateway
from crm_domain.ports.gateway import SupportsMigrations
from crm_domain.services import CreateBooking, CreateContact

from crm_http_litestar.app import create_app
from crm_http_litestar.demo import seed_demo
from crm_http_litestar.plugin import CrmConfig
from crm_http_litestar.settings import Settings
from crm_http_litestar.testing import SECRET, free_port

CHROMIUM = os.environ.get("CRM_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = (
    os.environ.get("CRM_TEST_CHROMEDRIVER")
    or shutil.which("chromedriver")
    or "/usr/bin/chromedriver"
)
#: The demo clinic's SMS number (``CRM_SMS_NUMBERS``) in :func:`console_settings`.
CLINIC_NUMBER = "+61292000000"


class ChromiumMissing(RuntimeError):
    """Chromium or its driver is not installed."""


def headless_chromium(width: int = 1280, height: int = 800) -> Any:
    """Headless Chromium whose network reaches loopback only (Selenium ``WebDriver``)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        raise ChromiumMissing(
            f"headless Chromium is needed, not found: {', '.join(missing)}"
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
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        # Loopback only: names resolve nowhere, and anything not on loopback (Chromium
        # never proxies loopback) goes to a proxy where nothing listens.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
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
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


#: axe-core from the npm registry, pinned by ``tests/axe/package-lock.json`` and
#: installed by the nox sessions (``npm ci``); ``CRM_TEST_AXE`` may name another copy.
AXE_SCRIPT = Path(
    os.environ.get("CRM_TEST_AXE")
    or Path(__file__).resolve().parents[2]
    / "tests"
    / "axe"
    / "node_modules"
    / "axe-core"
    / "axe.min.js"
)
AXE_INSTALL = (
    "uv run --frozen npm ci --no-audit --no-fund --prefix packages/crm-http-litestar/tests/axe"
)


def axe_available() -> bool:
    """Whether axe-core's script is installed (see :data:`AXE_SCRIPT`)."""
    return AXE_SCRIPT.is_file()


def axe_violations(driver: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[Any]:
    """axe-core's violations of the page in ``driver`` at the given impacts.

    The script is injected through WebDriver (not subject to the page's CSP) and
    run with ``axe.run``; a missing script is an ``AssertionError`` saying how to
    install it.
    """
    if not axe_available():
        raise AssertionError(f"axe-core is not installed at {AXE_SCRIPT}: run `{AXE_INSTALL}`")
    driver.execute_script(AXE_SCRIPT.read_text(encoding="utf-8"))
    results = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then((r) => done(r), (e) => done({error: String(e)}));"
    )
    if "error" in results:
        raise AssertionError(f"axe-core failed on the page: {results['error']}")
    return [v for v in results["violations"] if v.get("impact") in impacts]


@contextlib.contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The app on a free loopback port with uvicorn in a thread; yields its base URL."""
    app = create_app(CrmConfig(settings=settings, migrate_on_startup=True))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def console_settings(database: Path) -> Settings:
    """The demo as ``crm serve --demo`` runs it, on ``database``, sending SMS to the log.

    A Google client id is set so the sign-in page shows Google's button too (nothing
    reaches Google unless it is clicked).
    """
    return Settings(
        database_url=f"sqlite+aiosqlite:///{database}",
        secret_key=SECRET,
        demo=True,
        google_client_id="console-test.apps.googleusercontent.com",
        run_worker=False,
        rate_limit_per_user=0,
        rate_limit_per_address=0,
        adapter_settings={
            "CRM_SMS_PROVIDER": "log",
            "CRM_SMS_NUMBERS": f"sydney={CLINIC_NUMBER}",
        },
    )


@attrs.frozen(kw_only=True)
class ConsoleScenario:
    """What the browser tests act on, beside the demo data."""

    #: A Sydney patient with a pending booking earlier today and a reschedule reply.
    contact_id: str
    contact_name: str
    booking_id: str
    reply_text: str
    #: A Melbourne contact (another location for Sydney's staff).
    other_location_contact_id: str


async def seed_console_demo(database_url: str) -> ConsoleScenario:
    """Seed the demo data, then a day's work for reception through the domain services."""
    clock = SystemClock()
    ids = UlidFactory()
    gateway = load_gateway(database_url)
    try:
        if isinstance(gateway, SupportsMigrations):
            await gateway.migrate()
        await seed_demo(gateway, clock, ids)
        services = bootstrap(gateway, clock=clock, ids=ids, ai=HeuristicProvider())
        async with gateway.unit_of_work(None) as uow:
            sydney = await uow.locations.get_by_code("sydney")
            melbourne = await uow.locations.get_by_code("melbourne")
        ctx = Context.system(sydney.id, request_method="TEST", request_path="console scenario")
        patient = await services.contacts.create(
            ctx,
            CreateContact(
                first_name="Jordan",
                last_name="Testpatient",
                phone="+61411222333",
                sms_opt_in=True,
                source="website",
            ),
        )
        tz = ZoneInfo(sydney.timezone)
        now = clock.now().astimezone(tz)
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        starts = max(day_start, now - timedelta(minutes=40))
        booking = await services.bookings.create(
            ctx,
            CreateBooking(
                contact_id=patient.id,
                service_type="MRI knee",
                starts_at=starts,
                ends_at=starts + timedelta(minutes=20),
            ),
        )
        reply = "Can I move my appointment to next week please?"
        await services.sms.receive_inbound(
            ctx, "+61411222333", CLINIC_NUMBER, reply, "test", f"scenario-{ids.new_id()}"
        )
        other_ctx = Context.system(melbourne.id, request_method="TEST", request_path="scenario")
        other = await services.contacts.create(
            other_ctx,
            CreateContact(first_name="Morgan", last_name="Elsewhere", email="morgan@example.com"),
        )
        return ConsoleScenario(
            contact_id=patient.id,
            contact_name="Jordan Testpatient",
            booking_id=booking.id,
            reply_text=reply,
            other_location_contact_id=other.id,
        )
    finally:
        await gateway.close()


def prepare_console_demo(database: Path) -> ConsoleScenario:
    """:func:`seed_console_demo` from synchronous code (before the server starts)."""
    return asyncio.run(seed_console_demo(f"sqlite+aiosqlite:///{database}"))


#: The screenshot sizes: a laptop, and a tablet held upright.
SCREEN_SIZES = ((1280, 800), (800, 1200))


def demo_sign_in(driver: Any, base: str, email: str, location: str = "sydney") -> None:
    """Sign in with the demo's one-click button for ``email`` at ``location``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/console/sign-in")
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(
        By.CSS_SELECTOR, f'button[data-demo-user="{email}"][data-location="{location}"]'
    ).click()
    # Wait for the signed-in page, or the next navigation would race the form's.
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(old))


def console_screenshots(out_dir: Path) -> list[Path]:
    """PNGs of each console page at :data:`SCREEN_SIZES`, from a fresh demo; returns the files."""
    import tempfile

    from crm_http_litestar.testing import EMAILS

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "crm.db"
        scenario = prepare_console_demo(database)
        with served(console_settings(database)) as base:
            pages = [
                ("sign-in", None, "/console/sign-in"),
                ("today", "owner", "/console/today"),
                ("contact", "owner", f"/console/contacts/{scenario.contact_id}"),
                ("reports", "owner", "/console/reports"),
                ("admin", "owner", "/console/admin"),
                ("campaigns", "owner", "/console/campaigns"),
                ("automations", "owner", "/console/automations"),
                (
                    "not-found",
                    "reception",
                    f"/console/contacts/{scenario.other_location_contact_id}",
                ),
                ("today-readonly", "auditor", "/console/today"),
            ]
            for width, height in SCREEN_SIZES:
                driver = headless_chromium(width, height)
                try:
                    signed_in: str | None = None
                    for name, who, path in pages:
                        if who != signed_in and who is not None:
                            demo_sign_in(driver, base, EMAILS[who])
                            signed_in = who
                        driver.get(f"{base}{path}")
                        target = out_dir / f"{name}-{width}x{height}.png"
                        driver.save_screenshot(str(target))
                        written.append(target)
                finally:
                    driver.quit()
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m crm_http_litestar.testing_browser [OUT_DIR]``: write the console screenshots."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0]) if args else Path("docs/screenshots")
    for path in console_screenshots(out_dir):
        print(path)
    return 0


__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "CLINIC_NUMBER",
    "SCREEN_SIZES",
    "ChromiumMissing",
    "ConsoleScenario",
    "axe_available",
    "axe_violations",
    "console_screenshots",
    "console_settings",
    "demo_sign_in",
    "headless_chromium",
    "prepare_console_demo",
    "seed_console_demo",
    "served",
]


if __name__ == "__main__":
    raise SystemExit(main())
