"""The sliders example in a browser under ``--num-procs 2`` (documents built where the websocket lands)."""
from __future__ import annotations

import os
import re
import signal

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.support.browser import click_three_times  # noqa: E402
from tests.support.servers import EXAMPLES, REPO_ROOT  # noqa: E402

APPS = REPO_ROOT / "tests" / "apps"
#: what BokehJS logs once a reconnect attempt has either worked or failed for good
RECONNECT_OUTCOMES = ("Reconnected websocket", "Failed to repull session")

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


def test_a_stopping_worker_hands_its_page_to_another(serve, page, console):
    """SIGTERM to one worker (what --max-requests recycling does too): 1001, and the page reconnects."""
    server = serve(APPS / "worker_app.py", extra_args=["--num-procs", "2"])
    page.goto(server.app_url("worker_app"))
    worker, clicks = page.locator(".worker"), page.locator(".clicks")
    expect(worker).to_have_text(re.compile(r"pid=\d+"))
    victim = int(page.get_by_text(re.compile(r"^pid=\d+$")).inner_text().split("=")[1])  # inside the shadow DOM
    page.locator(".clicker button").click()
    expect(clicks).to_have_text("clicks: 1")
    with page.expect_console_message(lambda m: any(s in m.text for s in RECONNECT_OUTCOMES), timeout=20_000):
        os.kill(victim, signal.SIGTERM)  # gunicorn's master starts a replacement
    lost = [m for m in console.messages if "Lost websocket" in m]
    assert lost and re.search(r"Lost websocket \d+ connection, 1001\b", lost[0]), console.messages
    # another worker rebuilt the session from the page's token: a fresh document whose callbacks run there
    expect(worker).not_to_have_text(f"pid={victim}")
    expect(clicks).to_have_text("clicks: 0")
    page.locator(".clicker button").click()
    expect(clicks).to_have_text("clicks: 1")
    console.assert_clean()
    assert server.proc.poll() is None
