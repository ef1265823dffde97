"""The Flask integration examples, driven in headless Chromium.

* ``examples/flask_site``: a Flask site (own pages, hooks, session cookie,
  JSON route) with the example apps mounted under ``/apps`` and embedded on
  its own ``/dashboard`` page; run by ``python app.py`` and by
  ``gunicorn -k gevent ... app:app``.
* ``examples/embed``: a page of origin A embedding the sliders app served by
  bokeh-flask on origin B -- accepted with ``--allow-websocket-origin
  localhost:<A port>``, refused without it.
* ``examples/per_user``: a Flask view that prepares one session per request
  with ``bokeh.client.pull_session`` and embeds it with ``server_session``.

Every server is a subprocess. bokeh-flask servers and ``flask_site`` listen on
a port the OS picks (read back from their startup log line); the embedding
sites' ports must be on the Bokeh server's allowlist before it starts, so
those are chosen up front by binding port 0 and releasing it. Servers are
started together and waited for afterwards, to keep startup time down.
"""
from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.servers import (RUNNING_AT, REPO_ROOT, STARTUP_TIMEOUT, STOP_TIMEOUT, RunningServer,
                                   _OutputReader, _stop_process, gunicorn_private_args, server_command)

pytest.importorskip("playwright.sync_api", reason="browser tests need the 'playwright' package")
from playwright.sync_api import expect  # noqa: E402

from tests.support.browser import click_three_times  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXAMPLES = REPO_ROOT / "examples"
SLIDERS = EXAMPLES / "sliders.py"

SITE_READY = re.compile(r"Site running at: http://[^\s:/]+:(?P<port>\d+)/")
EMBED_READY = re.compile(r"Embedding site running at: http://[^\s:/]+:(?P<port>\d+)/")
PER_USER_READY = re.compile(r"Per-user site running at: http://[^\s:/]+:(?P<port>\d+)/")
GUNICORN_READY = re.compile(r"Listening at: http://[^\s:/]+:(?P<port>\d+)")

MODEL_JS = "(name) => Bokeh.documents[0].get_model_by_name(name)"


# --------------------------------------------------------------- processes

def free_port() -> int:
    """A port that was free a moment ago (for servers whose port must be known in advance)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Starting:
    """A server process that has been launched; ``ready()`` waits for its startup line."""

    def __init__(self, cmd: list[str], ready: re.Pattern, env: dict[str, str] | None = None):
        self.cmd = cmd
        self.ready_line = ready
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, encoding="utf-8", errors="replace", bufsize=1)
        self.reader = _OutputReader(self.proc)
        self.server: RunningServer | None = None

    def ready(self) -> RunningServer:
        if self.server is None:
            match = self.reader.wait_for(self.ready_line, STARTUP_TIMEOUT)
            if match is None:
                self.stop()
                pytest.fail(f"no {self.ready_line.pattern!r} line from: {' '.join(self.cmd)}\n"
                            f"exit code {self.proc.returncode}; output:\n{self.reader.text()}")
            port = int(match.group("port"))
            assert port != 0, f"reported port 0 instead of the bound port:\n{self.reader.text()}"
            self.server = RunningServer(f"http://127.0.0.1:{port}", self.proc, port, self.reader)
        return self.server

    def stop(self) -> None:
        _stop_process(self.proc)
        self.reader.join()


class Launcher:
    """Starts processes; stops every one of them (by PID) at teardown."""

    def __init__(self):
        self._started: list[_Starting] = []

    def start(self, cmd: list[str], ready: re.Pattern, env: dict[str, str] | None = None) -> _Starting:
        starting = _Starting([str(c) for c in cmd], ready, env)
        self._started.append(starting)
        return starting

    def bokeh(self, *files, extra_args=()) -> _Starting:
        """A bokeh-flask (or, with BOKEH_FLASK_TEST_SERVER=bokeh, bokeh) server."""
        return self.start([*server_command(), *files, "--port", "0", "--address", "127.0.0.1", *extra_args],
                          RUNNING_AT)

    def script(self, path: Path, *args, ready: re.Pattern) -> _Starting:
        return self.start([sys.executable, path, *args], ready)

    def stop_all(self) -> None:
        """SIGTERM to all first, so they shut down in parallel; then wait (SIGKILL stragglers)."""
        for starting in self._started:
            if starting.proc.poll() is None:
                starting.proc.terminate()
        for starting in reversed(self._started):
            try:
                starting.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                starting.proc.kill()
                starting.proc.wait(timeout=STOP_TIMEOUT)
            starting.reader.join()
        self._started.clear()


@pytest.fixture(scope="module")
def launcher():
    launcher = Launcher()
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def servers(launcher):
    """Every server of this module, started concurrently in two waves.

    * ``site``: examples/flask_site on its own (``python app.py``);
    * ``gunicorn_site``: the same site under gunicorn with two of bokeh-flask's gevent workers;
    * ``bokeh``: bokeh-flask serving sliders, allowing the ``embed`` and
      ``per_user`` origins; ``embed`` and ``per_user`` point at it;
    * ``bokeh_strict``: bokeh-flask serving sliders with the default
      allowlist; ``embed_refused`` points at it.
    """
    embed_port, per_user_port = free_port(), free_port()
    site = launcher.script(EXAMPLES / "flask_site" / "app.py", "--port", "0", ready=SITE_READY)
    gunicorn = None
    if importlib.util.find_spec("gunicorn") is not None:
        gunicorn = launcher.start(
            [sys.executable, "-m", "gunicorn", "-k", "bokeh_flask.gunicorn_worker.GeventWorker", "-w", "2",
             "--bind", "127.0.0.1:0",
             *gunicorn_private_args(), "--chdir", EXAMPLES / "flask_site", "app:app"],
            GUNICORN_READY)
    bokeh = launcher.bokeh(SLIDERS, extra_args=("--allow-websocket-origin", f"localhost:{embed_port}",
                                                "--allow-websocket-origin", f"localhost:{per_user_port}"))
    strict = launcher.bokeh(SLIDERS)
    bokeh_url = bokeh.ready().app_url("sliders")
    strict_url = strict.ready().app_url("sliders")
    embed = launcher.script(EXAMPLES / "embed" / "app.py", "--port", embed_port, "--bokeh-url", bokeh_url,
                            ready=EMBED_READY)
    refused = launcher.script(EXAMPLES / "embed" / "app.py", "--port", "0", "--bokeh-url", strict_url,
                              ready=EMBED_READY)
    per_user = launcher.script(EXAMPLES / "per_user" / "app.py", "--port", per_user_port,
                               "--bokeh-url", bokeh_url, ready=PER_USER_READY)
    return {"site": site.ready(), "gunicorn_site": gunicorn and gunicorn.ready(),
            "bokeh": bokeh.ready(), "bokeh_strict": strict.ready(),
            "embed": embed.ready(), "embed_refused": refused.ready(), "per_user": per_user.ready()}


# ---------------------------------------------------------------- helpers

def model_prop(page, name, js_expr):
    """Evaluate ``js_expr`` with ``m`` bound to the BokehJS model called ``name``."""
    return page.evaluate(f"(name) => {{ const m = ({MODEL_JS})(name); return {js_expr}; }}", name)


def record_websockets(page) -> list[str]:
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    return urls


def wait_for_document(page) -> None:
    """Bokeh has a document and has drawn the sine plot with a real size."""
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length === 1")
    canvas = page.locator(".sine-plot canvas").first
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, box


def exercise_sliders(page) -> None:
    """Python callbacks answer a slider move and three clicks (fresh sliders session)."""
    wait_for_document(page)
    product = page.locator(".product")
    expect(product).to_have_text("amplitude × frequency = 6.0")
    page.locator(".amplitude .noUi-handle").press("ArrowRight")
    # 2.5 × 3.0 = 7.5 comes only from the server-side on_change callback.
    expect(product).to_have_text("amplitude × frequency = 7.5")
    click_three_times(page)


def read_session(url: str, session_id: str) -> tuple[str, str]:
    """Plot title and clicks text of a server session, read with ``bokeh.client``.

    On a thread of its own: Playwright's sync API keeps an asyncio loop running
    on this one, and the client needs to run its own.
    """
    from bokeh.client import pull_session

    def pull():
        with pull_session(session_id=session_id, url=url) as session:
            doc = session.document
            return doc.get_model_by_name("sine-plot").title.text, doc.get_model_by_name("clicks").text

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(pull).result(timeout=20)
    finally:
        pool.shutdown(wait=False)


def ws_url(server: RunningServer, path: str) -> str:
    return f"ws://localhost:{server.port}{path}"


# ------------------------------------------------------------- flask_site

def test_site_own_routes_hooks_and_session(page, servers):
    site = servers["site"]
    api = page.request  # shares the browser context's cookie jar

    first = api.get(f"{site.browser_url}/api/status")
    assert first.ok and first.headers["content-type"] == "application/json"
    assert first.headers["x-site"] == "flask-site-example"  # after_request hook
    status = first.json()
    assert status["user"] == "guest" and status["visits"] == 1
    assert status["apps"] == ["/dir_app", "/sliders", "/streaming"]
    # The before_request hook counts visits in the signed session cookie.
    assert api.get(f"{site.browser_url}/api/status").json()["visits"] == 2
    assert api.get(f"{site.browser_url}/login/alice").json() == {"user": "alice"}

    response = page.goto(site.browser_url + "/")
    assert response.status == 200
    expect(page.locator("#site-heading")).to_have_text("A Flask site with Bokeh apps")
    expect(page.locator("#visits")).to_have_text("Signed in as alice; visit 3")
    expect(page.locator("#app-links a")).to_have_text(["dir_app", "sliders", "streaming"])

    # The site's hooks wrap the mounted Bokeh routes too...
    bokeh_page = api.get(f"{site.browser_url}/apps/sliders/")
    assert bokeh_page.ok and bokeh_page.headers["x-site"] == "flask-site-example"
    assert "/apps/static/js/bokeh.min.js" in bokeh_page.text()
    # ...whose BokehJS lives under the prefix, clear of the site's own /static/...
    assert api.get(f"{site.browser_url}/apps/static/js/bokeh.min.js").ok
    # ...and the site's JSON route sees the session that page request created.
    after = api.get(f"{site.browser_url}/api/status").json()
    assert after["visits"] == 4 and after["sessions"] == status["sessions"] + 1


def test_site_index_lists_apps_and_full_page_app_works(page, console, servers):
    site = servers["site"]
    sockets = record_websockets(page)
    page.goto(f"{site.browser_url}/apps/")
    links = page.locator("li a")
    expect(links).to_have_text(["/dir_app", "/sliders", "/streaming"])
    expect(links.nth(1)).to_have_attribute("href", "/apps/sliders")

    links.nth(1).click()
    expect(page).to_have_url(f"{site.browser_url}/apps/sliders")
    exercise_sliders(page)
    assert sockets == [ws_url(site, "/apps/sliders/ws")]
    console.assert_clean()


def test_site_dashboard_embeds_sliders_same_origin(page, console, servers):
    site = servers["site"]
    sockets = record_websockets(page)
    response = page.goto(f"{site.browser_url}/dashboard")
    assert response.status == 200 and response.headers["x-site"] == "flask-site-example"
    expect(page.locator("#dashboard-heading")).to_have_text("Dashboard")
    # Rendered into the page's own container, under the site's navigation.
    expect(page.locator("#embedded-app .sine-plot")).to_be_attached()
    exercise_sliders(page)
    assert sockets == [ws_url(site, "/apps/sliders/ws")]
    expect(page).to_have_title("Dashboard")  # embedded apps leave the page title alone
    console.assert_clean()


def test_site_under_gunicorn_with_two_workers(page, console, servers):
    """The site under two gunicorn workers (the example's docstring command): the embedded
    app's document is built where its websocket lands, so it works whichever worker that is."""
    site = servers["gunicorn_site"]
    if site is None:
        pytest.skip("gunicorn is not installed")
    status = page.request.get(f"{site.browser_url}/api/status")
    assert status.ok and status.json()["apps"] == ["/dir_app", "/sliders", "/streaming"]
    sockets = record_websockets(page)
    page.goto(f"{site.browser_url}/dashboard")
    exercise_sliders(page)
    assert sockets == [ws_url(site, "/apps/sliders/ws")]
    console.assert_clean()


# ------------------------------------------------------------------ embed

def test_embed_from_allowed_origin(page, console, servers):
    embed, bokeh = servers["embed"], servers["bokeh"]
    sockets = record_websockets(page)
    page.goto(embed.browser_url + "/")
    expect(page.locator("#embed-heading")).to_have_text("A page of another site")
    expect(page.locator("#embedded-app .sine-plot")).to_be_attached()
    exercise_sliders(page)
    # Page on origin A, websocket to origin B.
    assert embed.port != bokeh.port
    assert sockets == [ws_url(bokeh, "/sliders/ws")]
    console.assert_clean()


def test_embed_refused_without_allow_websocket_origin(page, servers):
    embed, strict = servers["embed_refused"], servers["bokeh_strict"]
    mark = strict.mark()

    def handshake_refused(msg):
        return msg.type == "error" and "WebSocket" in msg.text and "403" in msg.text

    def bokehjs_gave_up(msg):
        return msg.type == "error" and "Failed to connect to Bokeh server" in msg.text

    # BokehJS itself loads from B (autoload.js may be fetched from anywhere);
    # the browser then reports the refused handshake, and BokehJS gives up.
    with page.expect_console_message(handshake_refused, timeout=10_000) as refused, \
         page.expect_console_message(bokehjs_gave_up, timeout=10_000):
        page.goto(embed.browser_url + "/")
    assert f"ws://localhost:{strict.port}/sliders/ws" in refused.value.text

    strict.wait_for_output(
        rf"Refusing websocket connection from Origin 'http://localhost:{embed.port}'", timeout=10, since=mark)
    # ...so no document was ever rendered: nothing to interact with.
    assert page.evaluate("() => Bokeh.documents.length") == 0
    expect(page.locator("canvas")).to_have_count(0)
    expect(page.locator(".clicker")).to_have_count(0)


# --------------------------------------------------------------- per_user

def test_per_user_sessions_are_customised_and_distinct(page, browser, console, servers):
    per_user, bokeh = servers["per_user"], servers["bokeh"]
    other_context = browser.new_context()
    try:
        other = other_context.new_page()
        for p in (page, other):
            p.on("console", console._on_console)
            p.on("pageerror", console._on_page_error)
            p.on("response", console._on_response)
        users = {"alice": (page, 1.0, "3.0"), "bob": (other, 4.0, "12.0")}
        sessions = {}
        for user, (p, amplitude, product) in users.items():
            sockets = record_websockets(p)
            p.goto(f"{per_user.browser_url}/?user={user}&amplitude={amplitude:g}")
            expect(p.locator("#user-heading")).to_have_text(f"Hello, {user}")
            wait_for_document(p)
            # Customised by the Flask view through its client session:
            assert model_prop(p, "sine-plot", "m.title.text") == f"Sine wave for {user}"
            assert model_prop(p, "amplitude", "m.value") == amplitude
            # ...and the app's own Python callback ran on the server for that change.
            expect(p.locator(".product")).to_have_text(f"amplitude × frequency = {product}")
            # (BokehJS passes the page's own query string on to the websocket.)
            assert [url.split("?")[0] for url in sockets] == [ws_url(bokeh, "/sliders/ws")]
            sessions[user] = p.locator("#session-id").inner_text()
            per_user.wait_for_output(rf"prepared session {re.escape(sessions[user])} for user '{user}'")
        assert sessions["alice"] != sessions["bob"]

        # The documents are separate sessions: alice's clicks stay hers.
        page.locator(".clicker button").click()
        page.locator(".clicker button").click()
        expect(page.locator(".clicks")).to_have_text("clicks: 2")
        other.locator(".clicker button").click()
        expect(other.locator(".clicks")).to_have_text("clicks: 1")
        expect(page.locator(".clicks")).to_have_text("clicks: 2")
    finally:
        other_context.close()

    # The browser is attached to exactly the session the view prepared.
    title, clicks = read_session(bokeh.app_url("sliders"), sessions["alice"])
    assert (title, clicks) == ("Sine wave for alice", "clicks: 2")
    console.assert_clean()
