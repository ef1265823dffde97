"""What a `bokeh serve` deployment expects, unchanged: names, files, icons, tokens, context."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import websocket
from flask import Flask

from bokeh_flask import BokehFlask
from tests.support.bokeh_ws import BokehWS
from tests.support.servers import EXAMPLES, REPO_ROOT

APPS = REPO_ROOT / "tests" / "apps"
DIV_APP = "from bokeh.io import curdoc\nfrom bokeh.models import Div\ncurdoc().add_root(Div(text='{}'))\n"


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


@pytest.mark.slow
def test_favicon_at_the_site_root_with_a_prefix(serve):
    server = serve(APPS / "argv_app.py", extra_args=["--prefix", "/dash"])
    root = fetch(f"http://127.0.0.1:{server.port}/favicon.ico")
    assert root[0] == 200 and root[1] == "image/x-icon" and len(root[2]) > 100
    assert fetch(f"http://127.0.0.1:{server.port}/dash/favicon.ico")[2] == root[2]


@pytest.mark.slow
def test_apps_named_metrics_and_healthz_own_their_names(serve, tmp_path):
    for name in ("metrics", "healthz"):
        (tmp_path / f"{name}.py").write_text(DIV_APP.format(name))
    server = serve(tmp_path / "metrics.py", tmp_path / "healthz.py")
    base = f"http://127.0.0.1:{server.port}"
    for name in ("metrics", "healthz"):
        status, kind, body = fetch(f"{base}/{name}")
        assert status == 200 and kind.startswith("text/html") and b"Bokeh Application" in body
    status, kind, body = fetch(f"{base}/_bokeh_flask/metrics")
    assert status == 200 and kind.startswith("text/plain") and b"bokeh_flask_sessions_created_total" in body
    status, kind, body = fetch(f"{base}/_bokeh_flask/healthz")
    assert status == 200 and kind == "application/json" and b'"status":"ok"' in body.replace(b" ", b"")


@pytest.mark.slow
def test_short_ops_names_stay_when_no_app_claims_them(serve):
    server = serve(APPS / "argv_app.py")
    assert fetch(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
    assert b"bokeh_flask_sessions_created_total" in fetch(f"http://127.0.0.1:{server.port}/metrics")[2]


@pytest.mark.parametrize("flags, message", [
    (["--ico-path", "/no/such/icon.ico"], "--ico-path file does not exist: /no/such/icon.ico"),
    (["--index", "/no/such/index.html"], "--index template file does not exist: /no/such/index.html"),
    (["--log-file", "/no/such/folder/server.log"], "--log-file folder does not exist: /no/such/folder"),
])
def test_configuration_mistakes_are_one_line_startup_errors(flags, message):
    result = subprocess.run([sys.executable, "-m", "bokeh_flask", "serve", str(APPS / "argv_app.py"), "--port", "0",
                             *flags], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.slow
def test_an_expired_token_never_opens_a_sessions_first_websocket(serve):
    """--session-token-expiration: a page's token that expired before its websocket opened is refused (as in
    bokeh); one that expires later still reconnects to the live session (bokeh#14416, tested in test_session_ids)."""
    import re

    server = serve(APPS / "argv_app.py", extra_args=["--session-token-expiration", "1"])
    status, _, page = fetch(server.app_url("argv_app"))  # the page builds the session
    assert status == 200
    token = re.search(r'"token":"([^"]+)"', page.decode()).group(1)
    time.sleep(2.1)  # the token's lifetime (whole seconds) runs out; nothing to synchronise with
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        BokehWS.connect(server, "argv_app", token=token)
    assert refused.value.status_code == 403
    server.wait_for_output(r"Token is expired")


def test_the_session_context_offers_the_logout_url():
    site = Flask("site")
    bk = BokehFlask({"/app": str(APPS / "logout_app.py")}, auth_module=str(EXAMPLES / "auth" / "auth_module.py"),
                    cookie_secret="a-cookie-secret-for-tests")
    bk.init_app(site)
    client = site.test_client()
    from tornado.web import create_signed_value

    client.set_cookie("user", create_signed_value("a-cookie-secret-for-tests", "user", "alice").decode())
    assert client.get("/app").status_code == 200
    [session] = bk.state(site).context_for("/app").sessions
    assert session.document.get_model_by_name("logout").text == "logout=/logout"


EXTENSION_INIT = """
from bokeh.models import Div


class Fancy(Div):
    '''A model of an extension package (its BokehJS code is in dist/, as bokeh-garden ships it).'''
"""


@pytest.mark.slow
def test_an_apps_extension_models_are_in_its_page_after_another_apps_page(serve, tmp_path):
    """The page bundle is bokeh's, per page: an extension package an app imports is in that app's page even
    when another app's page (built before the package was loaded) came first."""
    package = tmp_path / "bkflaskext"
    (package / "dist").mkdir(parents=True)
    (package / "__init__.py").write_text(EXTENSION_INIT)
    (package / "bokeh.ext.json").write_text("{}")
    (package / "dist" / "bkflaskext.min.js").write_text("/* the extension's BokehJS code */")
    (tmp_path / "plain.py").write_text(DIV_APP.format("plain"))
    (tmp_path / "fancy.py").write_text("from bkflaskext import Fancy\nfrom bokeh.io import curdoc\n"
                                       "curdoc().add_root(Fancy(text='fancy'))\n")
    server = serve(tmp_path / "plain.py", tmp_path / "fancy.py")
    base = f"http://127.0.0.1:{server.port}"
    assert b"bkflaskext" not in fetch(f"{base}/plain")[2]
    status, _, page = fetch(f"{base}/fancy")
    assert status == 200 and b"/static/extensions/bkflaskext/bkflaskext.min.js" in page
    assert fetch(f"{base}/static/extensions/bkflaskext/bkflaskext.min.js")[0] == 200


@pytest.mark.slow
def test_remote_ip_of_an_ipv4_client_on_a_dual_stack_socket(serve):
    """Listening on ``::`` an IPv4 client arrives as ``::ffff:127.0.0.1``; the app sees ``127.0.0.1``, as in bokeh."""
    import re

    from tests.support.bokeh_ws import models_by_name
    from tests.support.servers import server_command

    server = serve.command([*server_command(), str(APPS / "remote_app.py"), "--port", "0", "--address", "::"],
                           re.compile(r"Bokeh app running at: http://\S*:(?P<port>\d+)/remote_app"))
    with BokehWS.connect(f"http://127.0.0.1:{server.port}", "remote_app") as ws:
        assert ws.recv_message().msgtype == "ACK"
        text = models_by_name(ws.pull().content["doc"])["remote"]["attributes"]["text"]
    assert text == "ip=127.0.0.1 protocol=http"


@pytest.mark.slow
def test_logout_url_on_a_live_server(serve):
    import http.cookiejar
    import re

    from tests.support.bokeh_ws import models_by_name

    server = serve(APPS / "logout_app.py", extra_args=["--auth-module", APPS / "tornado_auth" / "auth.py",
                                                        "--cookie-secret", "a-cookie-secret-for-tests"])
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{server.browser_url}/login", data=b"username=bob&password=builder", timeout=30)
    page = opener.open(server.app_url("logout_app"), timeout=30).read().decode()
    token = re.search(r'"token":"([^"]+)"', page).group(1)
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    with BokehWS.connect(server, "logout_app", token=token, headers=[f"Cookie: {cookie}"]) as ws:
        assert ws.recv_message().msgtype == "ACK"
        assert models_by_name(ws.pull().content["doc"])["logout"]["attributes"]["text"] == "logout=/logout"


@pytest.mark.slow
def test_xsrf_cookies_without_a_cookie_secret_serve_every_route(serve):
    """``--enable-xsrf-cookies`` without ``--cookie-secret`` answered 500 on every route; Tornado needs no secret."""
    server = serve(APPS / "argv_app.py", extra_args=["--enable-xsrf-cookies"])
    base = f"http://127.0.0.1:{server.port}"
    for path in ("/argv_app", "/favicon.ico", "/static/js/bokeh.min.js", "/argv_app/metadata"):
        assert fetch(base + path)[0] == 200, path
    with BokehWS.connect(server, "argv_app") as ws:
        assert ws.recv_message().msgtype == "ACK"
