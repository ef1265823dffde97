"""A browser logs in through the example auth module, then uses an app."""
from __future__ import annotations

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.support.browser import click_three_times  # noqa: E402

from tests.support.servers import EXAMPLES, REPO_ROOT  # noqa: E402

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


def test_login_through_a_tornado_login_handler_with_xsrf(serve, page, console):
    """An auth module written for bokeh serve: a Tornado LoginHandler rendering a template beside it,
    with --enable-xsrf-cookies and --cookie-secret, runs unchanged."""
    auth = REPO_ROOT / "tests" / "apps" / "tornado_auth" / "auth.py"
    server = serve(REPO_ROOT / "tests" / "apps" / "whoami_app.py",
                   extra_args=["--auth-module", auth, "--enable-xsrf-cookies", "--cookie-secret", "browser-secret"])
    page.goto(server.app_url("whoami_app"))
    expect(page).to_have_url(f"{server.browser_url}/login?next=%2Fwhoami_app")
    page.fill("#username", "alice")
    page.fill("#password", "not it")
    page.click("#submit")
    expect(page.locator(".error")).to_have_text("wrong password")  # the template, rendered again (401)
    page.fill("#username", "alice")
    page.fill("#password", "wonderland")
    page.click("#submit")  # the form carries Tornado's _xsrf field, checked by Tornado
    expect(page).to_have_url(server.app_url("whoami_app"))
    expect(page.get_by_text("user=alice")).to_be_visible()  # BokehJS rendered the document over the websocket
    console.assert_clean(ignore=[r"401"])
    page.goto(server.browser_url + "/logout")
    page.goto(server.app_url("whoami_app"))
    expect(page).to_have_url(f"{server.browser_url}/login?next=%2Fwhoami_app")
