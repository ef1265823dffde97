"""The sliders example in a browser under ``--num-procs 2`` (documents built where the websocket lands)."""
from __future__ import annotations

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.support.browser import click_three_times  # noqa: E402
from tests.support.servers import EXAMPLES  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_sliders_with_two_workers(serve, page, console):
    server = serve(EXAMPLES / "sliders.py", EXAMPLES / "dir_app", extra_args=["--num-procs", "2"])
    page.goto(server.app_url("sliders"))
    expect(page.locator("canvas").first).to_be_attached()
    product = page.locator(".product")
    expect(product).to_have_text("amplitude × frequency = 6.0")
    page.locator(".amplitude .noUi-handle").press("ArrowRight")
    expect(product).to_have_text("amplitude × frequency = 7.5")
    click_three_times(page)
    expect(page).to_have_title("Sliders")
    page.goto(server.app_url("dir_app"))  # a page template: built in the page request, as before
    expect(page.locator("#dir-app-heading")).to_be_visible()
    console.assert_clean()
