"""pytest fixtures for browser tests, registered for the whole suite by tests/conftest.py
(`pytest_plugins`), so a test only names them:

    def test_invoice_list(phone_page, portal_url):
        phone_page.goto(portal_url)
        ...

`playwright_instance` and `chromium` live for a test module: one browser for the module's tests,
started by the first test that asks for it. Not for the session: while Playwright's sync API is
open, its event loop runs in the main thread, and every later test calling `asyncio.run` (the
SMTP notifier's) would fail; on an xdist worker any test may come after a browser test. `phone_page` is a fresh phone-sized context (cookies,
storage and downloads of its own) and page, closed after the test. A missing Chromium fails
the test, never skips it, as a missing PostgreSQL does.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from tests.support.browser import launch_chromium, phone_context


@pytest.fixture(scope="module")
def playwright_instance():
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def chromium(playwright_instance):
    browser = missing = None
    try:
        browser = launch_chromium(playwright_instance)
    except FileNotFoundError as exc:
        missing = str(exc)
    if browser is None:  # failed outside the except block, so the message shows once
        pytest.fail(missing, pytrace=False)
    yield browser
    browser.close()


@pytest.fixture
def phone_page(chromium):
    context = phone_context(chromium)
    page = context.new_page()
    yield page
    context.close()
