"""The staff console in headless Chromium, served by uvicorn on loopback over a real SQLite file.

A receptionist signs in with the demo's one-click button, confirms a booking on
Today, resolves the task a patient's reply opened, answers the reply by SMS and
finds all of it in the patient's timeline; the readonly user sees no write
buttons and a forged form (with a valid CSRF token) is refused; another
location's contact is a 404 page.  axe-core checks every page visited (no
serious or critical violations).  Without Chromium these tests FAIL — never
skip.

axe-core comes from the npm registry, pinned by ``tests/axe/package-lock.json``
and installed by the nox sessions (``npm ci``); without it these tests FAIL with
the command that installs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from crm_http_litestar.testing import EMAILS
from crm_http_litestar.testing_browser import (
    AXE_INSTALL,
    AXE_SCRIPT,
    ChromiumMissing,
    ConsoleScenario,
    axe_available,
    axe_violations,
    console_settings,
    headless_chromium,
    prepare_console_demo,
    served,
)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ConsoleScenario]]:
    """The demo (plus a day's work for reception) served on a loopback port."""
    database = tmp_path_factory.mktemp("console") / "crm.db"
    scenario = prepare_console_demo(database)
    with served(console_settings(database)) as base:
        yield base, scenario


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium; a missing browser fails the test."""
    try:
        driver = headless_chromium()
    except ChromiumMissing as exc:
        pytest.fail(str(exc))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _by() -> Any:
    from selenium.webdriver.common.by import By

    return By


def test_the_accessibility_checker_is_installed() -> None:
    assert axe_available(), f"axe-core is not installed at {AXE_SCRIPT}: run `{AXE_INSTALL}`"


def _click_and_load(driver: Any, element: Any) -> None:
    """Click something that loads a new page, and wait until the old page is gone."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(_by().TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(old))


def _accessible(driver: Any) -> None:
    violations = axe_violations(driver)
    assert violations == [], json.dumps(
        [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"][:3]]}
            for v in violations
        ],
        indent=1,
    )


def _sign_in(driver: Any, base: str, who: str, location: str = "sydney") -> None:
    by = _by()
    driver.get(f"{base}/console/sign-in")
    assert driver.title.startswith("Sign in")
    assert driver.find_element(by.LINK_TEXT, "Sign in with Google")
    _accessible(driver)
    _click_and_load(
        driver,
        driver.find_element(
            by.CSS_SELECTOR,
            f'button[data-demo-user="{EMAILS[who]}"][data-location="{location}"]',
        ),
    )
    assert urlsplit(driver.current_url).path == "/console/today"


def _offsite_requests(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return [u for u in urls if urlsplit(u).hostname not in ("127.0.0.1", None)]


def test_reception_confirms_a_booking_answers_a_reply_and_sees_it_in_the_timeline(
    console: tuple[str, ConsoleScenario], browser: Any
) -> None:
    base, scenario = console
    by = _by()
    _sign_in(browser, base, "reception")
    _accessible(browser)
    main = browser.find_element(by.TAG_NAME, "main").text
    assert "Bookings today" in main and "Open tasks" in main and "Hot leads" in main

    # Confirm today's pending booking.
    row = browser.find_element(by.ID, f"booking-{scenario.booking_id}")
    assert "pending" in row.text and scenario.contact_name in row.text
    _click_and_load(browser, row.find_element(by.CSS_SELECTOR, 'form[action$="/confirm"] button'))
    assert "Booking confirmed." in browser.find_element(by.CSS_SELECTOR, ".notice").text
    row = browser.find_element(by.ID, f"booking-{scenario.booking_id}")
    assert "confirmed" in row.text
    assert not row.find_elements(by.CSS_SELECTOR, 'form[action$="/confirm"]')

    # The patient's reply waits with the task the SMS service opened; resolve the task.
    replies = browser.find_element(by.CSS_SELECTOR, 'section[aria-labelledby="replies-heading"]')
    reply = next(
        li
        for li in replies.find_elements(by.CSS_SELECTOR, "li.reply")
        if scenario.reply_text in li.text
    )
    _click_and_load(
        browser, reply.find_element(by.CSS_SELECTOR, 'form[action$="/complete"] button')
    )
    assert "Task resolved." in browser.find_element(by.CSS_SELECTOR, ".notice").text

    # Answer the reply by SMS from the contact's page.
    browser.get(f"{base}/console/contacts/{scenario.contact_id}")
    _accessible(browser)
    answer = "Of course: reception will call you today to find a new time."
    browser.find_element(by.ID, "sms-body").send_keys(answer)
    _click_and_load(browser, browser.find_element(by.CSS_SELECTOR, "#send-sms button[type=submit]"))
    assert "SMS queued" in browser.find_element(by.CSS_SELECTOR, ".notice").text
    timeline = browser.find_element(by.ID, "timeline").text
    assert f"SMS out: {answer}" in timeline
    assert f"SMS in: {scenario.reply_text}" in timeline
    assert "Booking: MRI knee\nconfirmed" in timeline or "Booking: MRI knee confirmed" in timeline
    assert "done" in timeline  # the resolved task
    _accessible(browser)

    # Answered and resolved: the reply no longer waits on Today.
    browser.get(f"{base}/console/today")
    assert scenario.reply_text not in browser.find_element(by.TAG_NAME, "main").text

    # Another location's contact: a 404 page, nothing of the record.
    browser.get(f"{base}/console/contacts/{scenario.other_location_contact_id}")
    assert browser.find_element(by.TAG_NAME, "h1").text == "Not found"
    assert "Morgan" not in browser.page_source
    _accessible(browser)
    assert _offsite_requests(browser) == []

    _click_and_load(browser, browser.find_element(by.CSS_SELECTOR, "a[href='/console/today']"))
    _click_and_load(
        browser, browser.find_element(by.CSS_SELECTOR, "form[action='/console/sign-out'] button")
    )
    assert urlsplit(browser.current_url).path == "/console/sign-in"
    browser.get(f"{base}/console/today")
    assert browser.find_element(by.TAG_NAME, "h1").text == "Please sign in"


def test_readonly_user_sees_no_write_buttons_and_a_forged_form_is_refused(
    console: tuple[str, ConsoleScenario], browser: Any
) -> None:
    base, scenario = console
    by = _by()
    _sign_in(browser, base, "auditor")
    _accessible(browser)
    main = browser.find_element(by.TAG_NAME, "main")
    assert scenario.contact_name in main.text  # reads today's bookings
    assert main.find_elements(by.CSS_SELECTOR, "form") == []
    assert main.find_elements(by.TAG_NAME, "button") == []
    browser.get(f"{base}/console/contacts/{scenario.contact_id}")
    _accessible(browser)
    main = browser.find_element(by.TAG_NAME, "main")
    assert scenario.contact_name in main.text
    assert main.find_elements(by.CSS_SELECTOR, "form, textarea, input") == []
    before = browser.find_element(by.ID, "timeline").text

    # A forged form: the page's own valid CSRF token, an action the role does not hold.
    token = browser.find_element(by.CSS_SELECTOR, "input[name=_csrf_token]").get_attribute("value")
    assert token
    browser.execute_script(
        """
        const form = document.createElement('form');
        form.method = 'post';
        form.action = arguments[0];
        const field = document.createElement('input');
        field.type = 'hidden'; field.name = '_csrf_token'; field.value = arguments[1];
        form.appendChild(field);
        document.body.appendChild(form);
        form.submit();
        """,
        f"/console/bookings/{scenario.booking_id}/cancel",
        token,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(lambda d: "/cancel" in d.current_url)
    assert browser.find_element(by.TAG_NAME, "h1").text == "Not allowed"
    assert "Error 403" in browser.find_element(by.TAG_NAME, "main").text
    _accessible(browser)
    browser.get(f"{base}/console/contacts/{scenario.contact_id}")
    assert browser.find_element(by.ID, "timeline").text == before  # nothing changed
    assert "cancelled" not in before


def test_a_manager_reads_reports_asks_a_question_and_checks_the_audit_log(
    console: tuple[str, ConsoleScenario], browser: Any
) -> None:
    base, _scenario = console
    by = _by()
    _sign_in(browser, base, "owner")
    _click_and_load(browser, browser.find_element(by.LINK_TEXT, "Reports"))
    chart = browser.find_element(by.CSS_SELECTOR, "img.chart")
    # The server-drawn SVG loaded as an image under the page's CSP.
    assert browser.execute_script("return arguments[0].naturalWidth", chart) > 100
    _accessible(browser)
    question = browser.find_element(by.ID, "question")
    question.send_keys("no-show rate by week in Sydney since March")
    _click_and_load(
        browser, browser.find_element(by.CSS_SELECTOR, "#question ~ button[type=submit]")
    )
    understood = browser.find_element(by.CSS_SELECTOR, ".understood").text
    assert understood.startswith("Understood as: no_show_rate by week")
    _accessible(browser)
    _click_and_load(browser, browser.find_element(by.LINK_TEXT, "Admin"))
    main = browser.find_element(by.TAG_NAME, "main").text
    assert "Your address is 127.0.0.1" in main
    assert "Verified: all" in main
    _accessible(browser)
    for link in ("Campaigns", "Automations"):
        _click_and_load(browser, browser.find_element(by.LINK_TEXT, link))
        assert browser.find_element(by.TAG_NAME, "h1").text == link
        _accessible(browser)
    assert _offsite_requests(browser) == []
