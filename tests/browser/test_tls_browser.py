"""A browser uses an app over https:// and wss:// (self-signed certificate)."""
from __future__ import annotations

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.support.browser import click_three_times  # noqa: E402

from tests.support.servers import EXAMPLES  # noqa: E402
from tests.support.tls import KEY_PASSWORD, self_signed_certificate  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_sliders_over_tls(serve, browser, tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("BOKEH_SSL_PASSWORD", KEY_PASSWORD)
    server = serve(EXAMPLES / "sliders.py", extra_args=["--ssl-certfile", cert, "--ssl-keyfile", key])
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        sockets = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.goto(f"https://localhost:{server.port}/sliders")
        expect(page.locator("canvas").first).to_be_attached()
        click_three_times(page)
        assert sockets == [f"wss://localhost:{server.port}/sliders/ws"]
    finally:
        context.close()
