"""A browser logs in to a Flask site whose own login guards its Bokeh app."""
from __future__ import annotations

import re
import sys

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.support.servers import EXAMPLES  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_site_login_guards_the_app(serve, page, console):
    site = serve.command([sys.executable, str(EXAMPLES / "flask_login" / "app.py"), "--port", "0"],
                         re.compile(r"Site running at: http://127\.0\.0\.1:(?P<port>\d+)/"))
    base = f"http://localhost:{site.port}"
    page.goto(f"{base}/apps/greeting")
    expect(page).to_have_url(f"{base}/login?next=%2Fapps%2Fgreeting")
    page.fill("input[name=name]", "frank")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/apps/greeting")
    expect(page.locator(".greeting")).to_have_text("Hello frank, this document is yours.")
    console.assert_clean()
