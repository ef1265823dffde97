"""Drive the example apps in headless Chromium against a real server subprocess.

Run against the reference server while bokeh_flask is being written::

    BOKEH_FLASK_TEST_SERVER=bokeh python -m pytest tests/browser -q

Bokeh 3.x renders every model view inside an open shadow root. Playwright CSS
locators pierce open shadow roots, so ``.product`` (a css class set on the Div
model) finds the Div's host element; ``expect(...).to_have_text`` reads the
shadow content, but ``inner_text()``/``text_content()`` of the host do not, and
neither does ``document.querySelector`` in page JavaScript.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need the 'playwright' package")
from playwright.sync_api import expect  # noqa: E402

from tests.support.browser import click_three_times  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Text of a Bokeh view: the non-<style> children of its shadow root.
SHADOW_TEXT_JS = """
(host) => [...host.shadowRoot.children]
    .filter((el) => el.tagName !== "STYLE")
    .map((el) => el.textContent).join("")
"""

MODEL_JS = "(name) => Bokeh.documents[0].get_model_by_name(name)"


@pytest.fixture(scope="module")
def server(serve_module):
    """One server for the module, hosting all three example apps.

    Short unused-session settings let the dir_app test observe
    ``on_session_destroyed`` soon after its page closes.
    """
    return serve_module(
        EXAMPLES / "sliders.py",
        EXAMPLES / "streaming.py",
        EXAMPLES / "dir_app",
        extra_args=("--check-unused-sessions", "250", "--unused-session-lifetime", "500"),
    )


def open_app(page, server, app):
    """Load an app page and wait until Bokeh has drawn a canvas and has a document."""
    response = page.goto(server.app_url(app))
    assert response is not None and response.status == 200, f"GET /{app} -> {response and response.status}"
    expect(page.locator("canvas").first).to_be_attached()
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length === 1")


def model_prop(page, name, js_expr):
    """Evaluate ``js_expr`` with ``m`` bound to the BokehJS model called ``name``."""
    return page.evaluate(f"(name) => {{ const m = ({MODEL_JS})(name); return {js_expr}; }}", name)


def test_server_announces_all_apps(server):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server)
    assert server.port > 0
    # One startup line per app; they may still be arriving after the first one.
    for app in ("dir_app", "sliders", "streaming"):
        server.wait_for_output(rf"Bokeh app running at: http://\S+:{server.port}/{app}\s", timeout=10)
    assert sorted(server.app_paths) == ["/dir_app", "/sliders", "/streaming"]


# --------------------------------------------------------------------- sliders

def test_sliders_draws_and_python_callbacks_update_divs(page, console, server):
    open_app(page, server, "sliders")

    # The plot is drawn: a canvas inside the figure's view with a real size.
    canvas = page.locator(".sine-plot canvas").first
    box = canvas.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, box

    product = page.locator(".product")
    expect(product).to_have_text("amplitude × frequency = 6.0")
    assert model_prop(page, "sine-source", "Math.max(...m.data.y)") == pytest.approx(2.0, abs=0.05)

    # Move the amplitude slider one step (0.5) with the keyboard on its noUiSlider handle.
    page.locator(".amplitude .noUi-handle").press("ArrowRight")
    # 2.5 × 3.0 = 7.5 is only produced by the Python on_change callback.
    expect(product).to_have_text("amplitude × frequency = 7.5")
    assert model_prop(page, "amplitude", "m.value") == 2.5
    # The server recomputed the curve as well.
    page.wait_for_function(
        "() => Math.abs(Math.max(...Bokeh.documents[0].get_model_by_name('sine-source').data.y) - 2.5) < 0.05")

    # Then frequency, two steps to the left: 2.5 × 2.0 = 5.0.
    freq = page.locator(".frequency .noUi-handle")
    freq.press("ArrowLeft")
    freq.press("ArrowLeft")
    expect(product).to_have_text("amplitude × frequency = 5.0")

    # Button clicks round-trip through Python.
    click_three_times(page)

    console.assert_clean()


def test_sliders_sessions_are_independent(page, console, server):
    """A second tab gets a fresh document: clicks in one do not show in the other."""
    open_app(page, server, "sliders")
    page.locator(".clicker button").click()
    expect(page.locator(".clicks")).to_have_text("clicks: 1")

    other = page.context.new_page()
    try:
        open_app(other, server, "sliders")
        expect(other.locator(".clicks")).to_have_text("clicks: 0")
        expect(other.locator(".product")).to_have_text("amplitude × frequency = 6.0")
    finally:
        other.close()
    console.assert_clean()


# ------------------------------------------------------------------- streaming

def _ticks(host):
    text = host.evaluate(SHADOW_TEXT_JS)
    match = re.search(r"ticks: (\d+) points: (\d+)", text)
    assert match, f"unexpected ticks Div text {text!r}"
    return int(match.group(1)), int(match.group(2))


def test_streaming_counter_increases_without_input(page, console, server):
    open_app(page, server, "streaming")
    host = page.locator(".ticks")
    expect(host).to_have_text(re.compile(r"ticks: \d+ points: \d+"))

    start, _ = _ticks(host)
    # 100 ms periodic callback: five more ticks should arrive well within the timeout.
    page.wait_for_function(
        f"""([host, start]) => {{
            const m = /ticks: (\\d+)/.exec(({SHADOW_TEXT_JS})(host));
            return m !== null && Number(m[1]) >= start + 5;
        }}""",
        arg=[host.element_handle(), start],
        timeout=10_000,
    )
    ticks, points = _ticks(host)
    assert ticks >= start + 5
    assert points == min(ticks, 200)

    # The streamed data reached the plot's data source in the browser, too.
    page.wait_for_function(
        f"() => Bokeh.documents[0].get_model_by_name('stream-source').data.t.length >= {start + 5}")
    console.assert_clean()


# --------------------------------------------------------------------- dir_app

def test_dir_app_template_static_and_theme(page, console, server):
    with page.expect_response(re.compile(r"/dir_app/static/logo\.svg$")) as svg_info, \
         page.expect_response(re.compile(r"/dir_app/static/style\.css$")) as css_info:
        open_app(page, server, "dir_app")

    # templates/index.html: heading and a template variable set from main.py.
    heading = page.locator("#dir-app-heading")
    expect(heading).to_be_visible()
    expect(heading).to_have_text("Directory app demo")
    expect(page.locator("#dir-app-subtitle")).to_have_text("rendered from templates/index.html")
    expect(page).to_have_title("Directory app")

    # static/style.css was served and applied.
    assert css_info.value.status == 200
    expect(heading).to_have_css("color", "rgb(0, 128, 0)")

    # static/logo.svg was served with an SVG content type and actually decoded.
    svg = svg_info.value
    assert svg.status == 200
    assert "svg" in svg.headers.get("content-type", ""), svg.headers
    page.wait_for_function("() => { const i = document.getElementById('dir-app-logo');"
                           " return i.complete && i.naturalWidth > 0; }")

    # Bokeh's own app root still rendered below the template content.
    expect(page.locator(".greeting")).to_have_text("Hello from a directory app")

    # theme.yaml was applied to the document's models.
    assert model_prop(page, "themed-plot", "m.background_fill_color") == "#e6e6fa"
    assert model_prop(page, "themed-plot", "m.title.text_color") == "#dc143c"

    console.assert_clean()


def test_dir_app_static_404_for_missing_file(page, server):
    response = page.request.get(f"{server.browser_url}/dir_app/static/no-such-file.css")
    assert response.status == 404


def test_dir_app_session_lifecycle_hooks(page, server):
    mark = server.mark()
    open_app(page, server, "dir_app")
    created = server.wait_for_output(r"dir_app: session created (\S+)", timeout=10, since=mark)
    session_id = created.group(1)
    page.close()  # drops the websocket, leaving the session unused
    # --unused-session-lifetime 500 / --check-unused-sessions 250 (see the fixture).
    server.wait_for_output(rf"dir_app: session destroyed {re.escape(session_id)}", timeout=15, since=mark)


def test_dir_app_server_hooks_on_start_and_stop(serve):
    """on_server_loaded runs at startup and on_server_unloaded on SIGTERM."""
    own = serve(EXAMPLES / "dir_app")
    own.wait_for_output(r"dir_app: server loaded", timeout=10)
    output = own.stop()
    assert own.proc.returncode is not None
    assert "dir_app: server unloaded" in output, output
