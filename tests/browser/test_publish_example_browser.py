"""The publishing examples as a user runs them: ``examples/publish/publish.py`` publishes to a
``--multi-user`` server, ``examples/publish/site.py`` (another origin) embeds the public link,
and Chromium shows the plot and the slider there, then the points ``publish.py --stream`` adds.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.support.servers import EXAMPLES, REPO_ROOT  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PUBLISH = EXAMPLES / "publish" / "publish.py"
SITE = EXAMPLES / "publish" / "site.py"
SITE_READY = re.compile(r"Running on http://127\.0\.0\.1:(?P<port>\d+)")
PASSWORD = "a long password"
POINTS_JS = "() => Bokeh.documents[0].get_model_by_name('sales').renderers[0].data_source.data.x.length"


def free_port() -> int:
    """A loopback port that was free a moment ago (the site's port must be known before the server starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def publish(url: str, home, *args: str) -> subprocess.CompletedProcess[str]:
    """``python examples/publish/publish.py --url URL --user alice --password ...`` with HOME in ``home``."""
    env = dict(os.environ, HOME=str(home))
    result = subprocess.run([sys.executable, str(PUBLISH), "--url", url, "--user", "alice", "--password", PASSWORD,
                             *args], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, f"publish.py failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_publish_then_embed_the_public_link(serve, page, console, tmp_path):
    site_port = free_port()
    server = serve(extra_args=["--multi-user", "--data-directory", tmp_path / "data",
                               "--allow-websocket-origin", f"localhost:{site_port}"])
    root = server.browser_url + "/"
    home = tmp_path / "home"
    home.mkdir()

    first = publish(root, home)
    assert f"public link:  {root}bokeh/doc/quarterly?public=true" in first.stdout, first.stdout
    keys = json.loads((home / ".bokeh" / "bokeh-flask-keys.json").read_text())
    assert keys[root]["username"] == "alice"  # registered, and the key went to $HOME/.bokeh

    site = serve.command([sys.executable, str(SITE), "--port", str(site_port), "--bokeh-url", root], SITE_READY)
    assert site.port == site_port
    response = page.goto(f"http://localhost:{site_port}/")
    assert response is not None and response.status == 200
    expect(page.locator("h1")).to_have_text("Our quarterly numbers")
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length === 1")
    canvas = page.locator("canvas").first
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, box
    expect(page.locator(".noUi-handle")).to_be_visible()  # the slider
    expect(page.get_by_text(re.compile(r"^target"))).to_be_visible()
    assert page.evaluate("() => Bokeh.documents[0].get_model_by_name('target').value") == 5
    assert page.evaluate(POINTS_JS) == 4

    # a second run logs in from the saved key, replaces the document and streams three points
    publish(root, home, "--stream", "3")
    page.wait_for_function(f"() => ({POINTS_JS})() === 7", timeout=30_000)
    console.assert_clean()
