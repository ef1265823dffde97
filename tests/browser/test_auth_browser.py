"""A browser logs in through the example auth module, then uses an app."""
from __future__ import annotations

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.support.browser import click_three_times  # noqa: E402

from tests.support.servers import EXAMPLES  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_login_then_use_the_sliders(serve, page, console):
    server = serve(EXAMPLES / "sliders.py", extra_args=["--auth-module", EXAMPLES / "auth" / "auth_module.py",
                                                        "--cookie-secret", "browser-test-secret"])
    page.goto(server.app_url("sliders"))
    expect(page).to_have_url(f"{server.browser_url}/login?next=%2Fsliders")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "wonderland")
    page.click("button[type=submit]")
    expect(page).to_have_url(server.app_url("sliders"))
    expect(page.locator("canvas").first).to_be_attached()
    click_three_times(page)
    console.assert_clean()
    page.goto(server.browser_url + "/logout")
    expect(page).to_have_url(f"{server.browser_url}/login")
