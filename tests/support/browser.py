"""Fixtures for the headless-browser tests, a plugin loaded by ``tests/conftest.py``.

* ``browser``  -- one Playwright Chromium per test session.
* ``page``     -- a fresh browser context + page per test; console errors,
  uncaught page errors and HTTP >= 400 responses are recorded in the
  ``console`` fixture (``console.assert_clean()`` fails the test on any).
* ``serve`` / ``serve_module`` come from ``tests/conftest.py``.

They live here rather than in ``tests/browser/conftest.py`` so that browser
tests elsewhere (``tests/test_nginx.py``) share the one session-wide browser:
a second ``sync_playwright()`` in the same session fails.

Pages should be opened through ``server.browser_url`` (``http://localhost:PORT``):
the server's default websocket-origin allowlist is ``localhost:PORT``, so a page
loaded from ``127.0.0.1:PORT`` would have its websocket refused.
"""
from __future__ import annotations

import re
import typing as t

import os

import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None
    expect = None


CHROMIUM = os.environ.get("BOKEH_FLASK_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium stalls trying to reach the (closed) network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

DEFAULT_TIMEOUT_MS = 15_000  # Playwright actions and expect() assertions


# ---------------------------------------------------------------------------
# Browser
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    if sync_playwright is None:
        pytest.skip("browser tests need the 'playwright' Python package (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} "
                    "(set BOKEH_FLASK_TEST_CHROMIUM to another executable)")
    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class ConsoleLog:
    """What a page reported: console messages, uncaught errors, failed HTTP responses."""

    def __init__(self):
        self.messages: list[str] = []
        self.errors: list[str] = []
        self.page_errors: list[str] = []
        self.bad_responses: list[str] = []

    def _on_console(self, msg) -> None:
        self.messages.append(f"{msg.type}: {msg.text}")
        if msg.type == "error":
            self.errors.append(msg.text)

    def _on_page_error(self, error) -> None:
        self.page_errors.append(str(error))

    def _on_response(self, response) -> None:
        if response.status >= 400:
            self.bad_responses.append(f"{response.status} {response.url}")

    def problems(self) -> list[str]:
        return ([f"console error: {e}" for e in self.errors]
                + [f"page error: {e}" for e in self.page_errors]
                + [f"HTTP {r}" for r in self.bad_responses])

    def assert_clean(self, ignore: t.Sequence[str] = ()) -> None:
        """No problems, except those matching an ``ignore`` pattern (an expected 401, say)."""
        problems = [p for p in self.problems() if not any(re.search(pattern, p) for pattern in ignore)]
        assert not problems, "browser reported problems:\n  " + "\n  ".join(problems)


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def page(browser, console):
    context = browser.new_context()
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    page.on("console", console._on_console)
    page.on("pageerror", console._on_page_error)
    page.on("response", console._on_response)
    try:
        yield page
    finally:
        context.close()


def click_three_times(page) -> None:
    """Click the sliders example's button three times; its Python callback must count them."""
    clicks = page.locator(".clicks")
    expect(clicks).to_have_text("clicks: 0")
    button = page.locator(".clicker button")
    for _ in range(3):
        button.click()
    expect(clicks).to_have_text("clicks: 3")
