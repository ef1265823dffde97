"""Examples and a template app in a browser under ``--num-procs 2``.

Without a page template the document is built where the websocket lands; with one it is
built in the page request and the websocket is relayed to that worker when it lands in
the other one.
"""
from __future__ import annotations

import os
import re
import signal
import threading

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.support.browser import click_three_times  # noqa: E402
from tests.support.servers import EXAMPLES, REPO_ROOT  # noqa: E402

#: what BokehJS logs once a reconnect attempt has either worked or failed for good
RECONNECT_OUTCOMES = ("Reconnected websocket", "Failed to repull session")

pytestmark = [pytest.mark.browser, pytest.mark.slow]

APPS = REPO_ROOT / "tests" / "apps"
TEMPLATE_APP = APPS / "template_app"


def test_sliders_with_two_workers(serve, page, console):
    server = serve(EXAMPLES / "sliders.py", EXAMPLES / "dir_app", TEMPLATE_APP, extra_args=["--num-procs", "2"])
    page.goto(server.app_url("sliders"))
    expect(page.locator("canvas").first).to_be_attached()
    product = page.locator(".product")
    expect(product).to_have_text("amplitude × frequency = 6.0")
    page.locator(".amplitude .noUi-handle").press("ArrowRight")
    expect(product).to_have_text("amplitude × frequency = 7.5")
    click_three_times(page)
    expect(page).to_have_title("Sliders")
    page.goto(server.app_url("dir_app"))  # a page template: built in the page request
    expect(page.locator("#dir-app-heading")).to_be_visible()
    expect(page.locator(".greeting")).to_have_text("Hello from a directory app")
    console.assert_clean()


def test_a_template_page_works_through_the_relay(serve, page, console):
    server = serve(TEMPLATE_APP, extra_args=["--num-procs", "2"])
    page_workers: list[int] = []

    def freeze_page_worker(route):
        # Once the page has arrived, the worker that built it sleeps for a moment (until after the
        # websocket has opened), so that the websocket lands in the other worker. BokehJS comes
        # over new connections (also the other worker's): the browser's keep-alive connection
        # to the sleeping worker would hold it back until the worker wakes up.
        if not page_workers:
            page_workers.append(int(server.wait_for_output(r"BUILT n=4 session=\S+ pid=(\d+)").group(1)))
            os.kill(page_workers[0], signal.SIGSTOP)
            threading.Timer(3.0, os.kill, (page_workers[0], signal.SIGCONT)).start()
        route.fulfill(response=route.fetch())

    page.route(re.compile(r".*/static/.*"), freeze_page_worker)
    page.goto(server.app_url("template_app?n=4"))
    expect(page.locator("#template-app-heading")).to_be_visible()
    click_three_times(page)  # Python callbacks in the page's worker, through the other worker's relay
    expect(page).to_have_title("Template app")
    expect(page.get_by_text(re.compile(r"^n=4 c=- pid=\d+$"))).to_have_text(f"n=4 c=- pid={page_workers[0]}")
    server.wait_for_output(rf"Relaying the websocket of session \S+ to worker {page_workers[0]}\b")
    assert server.output().count("BUILT n=4 ") == 1
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
