"""Auth modules (``--auth-module``) and the Flask-native ``authorize=`` check."""
from __future__ import annotations

import http.cookiejar
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest
import websocket
from bokeh.util.token import generate_jwt_token, generate_session_id, get_session_id
from flask import Flask, session

from bokeh_flask import BokehFlask
from tornado.web import create_signed_value

from bokeh_flask.web.tornado_shim import RequestHandlerShim
from tests.support.bokeh_ws import BokehWS, models_by_name
from tests.support.servers import EXAMPLES, REPO_ROOT

APPS = REPO_ROOT / "tests" / "apps"
AUTH_MODULE = EXAMPLES / "auth" / "auth_module.py"
COOKIE_SECRET = "a-cookie-secret-for-tests"


def _shim_with_cookie(value: bytes) -> RequestHandlerShim:
    app = Flask("t")
    with app.test_request_context("/", headers={"Cookie": f"user={value.decode()}"}):
        from flask import request

        return RequestHandlerShim(request, COOKIE_SECRET)


def test_secure_cookies_are_tornados():
    """get_secure_cookie reads what Tornado (and set_secure_cookie) write, and nothing forged or stale."""
    assert _shim_with_cookie(create_signed_value(COOKIE_SECRET, "user", "alice")).get_secure_cookie("user") == b"alice"
    other_name = create_signed_value(COOKIE_SECRET, "other", "alice")
    assert _shim_with_cookie(other_name).get_secure_cookie("user") is None
    wrong_secret = create_signed_value("wrong secret", "user", "alice")
    assert _shim_with_cookie(wrong_secret).get_secure_cookie("user") is None
    old = create_signed_value(COOKIE_SECRET, "user", "alice", clock=lambda: 1e9)
    assert _shim_with_cookie(old).get_secure_cookie("user") is None  # older than 31 days
    sha1 = create_signed_value(COOKIE_SECRET, "user", "alice", version=1)
    assert _shim_with_cookie(sha1).get_secure_cookie("user") is None  # only the SHA-256 format


def test_shim_offers_what_auth_modules_read():
    app = Flask("t")
    with app.test_request_context("/x?N=3&N=4", headers={"X-Forwarded-User": "carol", "Cookie": "plain=1"},
                                  environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        from flask import request

        handler = RequestHandlerShim(request, COOKIE_SECRET)
        assert handler.get_cookie("plain") == "1" and handler.get_cookie("nope", "d") == "d"
        assert handler.request.cookies["plain"].value == "1"
        assert handler.request.headers.get("x-forwarded-user") == "carol"
        assert handler.request.arguments == {"N": [b"3", b"4"]}
        assert handler.get_argument("N") == "4" and handler.get_arguments("N") == ["3", "4"]
        assert handler.request.remote_ip == "10.1.2.3"
        assert handler.get_secure_cookie("user") is None


class _Session:
    """A cookie-keeping HTTP client that does not follow redirects."""

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def request(self, url: str, data: dict | None = None) -> tuple[int, dict, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(url, data=body, timeout=20) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.slow
def test_auth_module_guards_pages_and_websockets(serve):
    server = serve(APPS / "whoami_app.py", extra_args=["--auth-module", str(AUTH_MODULE),
                                                       "--cookie-secret", COOKIE_SECRET])
    app_url = server.app_url("whoami_app")
    client = _Session()
    status, headers, _ = client.request(app_url + "?x=1")
    assert status == 302 and headers["Location"].endswith("/login?next=%2Fwhoami_app%3Fx%3D1")
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        BokehWS.connect(server, "whoami_app")
    assert refused.value.status_code == 403
    server.wait_for_output(r"Refused GET /whoami_app/ws: not authenticated")

    status, _, page = client.request(server.browser_url + "/login?next=/whoami_app", {"username": "alice",
                                                                                       "password": "nope"})
    assert status == 401 and "wrong password" in page
    status, headers, _ = client.request(server.browser_url + "/login?next=/whoami_app", {"username": "alice",
                                                                                         "password": "wonderland"})
    assert status == 302 and headers["Location"].endswith("/whoami_app")
    status, _, page = client.request(app_url)
    assert status == 200
    token = re.search(r'"token":"([^"]+)"', page).group(1)
    with BokehWS.connect(server, "whoami_app", token=token, headers=[f"Cookie: {client.cookie_header()}"]) as ws:
        assert ws.recv_message().msgtype == "ACK"
        doc = ws.pull().content["doc"]
        assert models_by_name(doc)["whoami"]["attributes"]["text"] == "user=alice"
    assert get_session_id(token)
    # Unsigned tokens are plain JSON: a claim of another user in a token alice made up is ignored,
    # the app sees who the websocket request authenticated as.
    forged = generate_jwt_token(generate_session_id(), extra_payload={
        "bokeh_flask_user": "mallory", "user": "mallory", "headers": {}, "cookies": {}, "arguments": {}})
    with BokehWS.connect(server, "whoami_app", token=forged, headers=[f"Cookie: {client.cookie_header()}"]) as ws:
        assert ws.recv_message().msgtype == "ACK"
        doc = ws.pull().content["doc"]
        assert models_by_name(doc)["whoami"]["attributes"]["text"] == "user=alice"
    status, headers, _ = client.request(server.browser_url + "/logout")
    assert status == 302
    assert client.request(app_url)[0] == 302


@pytest.mark.parametrize("source, message", [
    ("login_url = '/login'\ndef get_user(h): return None\nclass LoginHandler:\n    pass\n",
     "must be a tornado.web.RequestHandler, a function or a flask.views.View class"),
    ("login_url = '/login'\n", "exactly one of get_user or get_user_async"),
    ("def get_user(h): return None\n", "exactly one of login_url or get_login_url"),
    ("raise ImportError('missing dependency')\n", "failed to load: ImportError: missing dependency"),
])
def test_bad_auth_modules_are_one_line_startup_errors(tmp_path, source, message):
    module = tmp_path / "auth.py"
    module.write_text(source)
    result = subprocess.run([sys.executable, "-m", "bokeh_flask", "serve", str(APPS / "argv_app.py"), "--port", "0",
                             "--auth-module", str(module)], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and message in lines[0], result.stderr


def test_flask_native_authorize_guards_every_route():
    site = Flask("site")
    site.secret_key = "test"

    @site.route("/login")
    def login():
        session["user"] = "dana"
        return "logged in"

    bk = BokehFlask({"/app": str(APPS / "whoami_app.py")}, authorize=lambda: session.get("user"),
                    login_url="/login")
    bk.init_app(site, url_prefix="/dash")
    client = site.test_client()
    refused = client.get("/dash/app")
    assert refused.status_code == 302 and refused.headers["Location"] == "/login?next=%2Fdash%2Fapp"
    ws = client.get("/dash/app/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert ws.status_code == 403
    assert client.get("/dash/static/js/bokeh.min.js").status_code == 200  # BokehJS stays public
    client.get("/login")
    page = client.get("/dash/app")
    assert page.status_code == 200
    from bokeh.util.token import get_token_payload

    payload = get_token_payload(re.search(r'"token":"([^"]+)"', page.text).group(1))
    [built] = bk.state(site).context_for("/app").sessions
    assert built.document.get_model_by_name("whoami").text == "user=dana"  # the app saw the site's user
    assert "dana" not in str(payload)  # and the token does not carry it: the websocket authenticates itself


@pytest.mark.parametrize("cookie_secret", [COOKIE_SECRET, None], ids=["cookie-secret", "no-secret"])
def test_xsrf_tokens_guard_unsafe_methods(tmp_path, cookie_secret):
    """With or without --cookie-secret (Tornado's tokens are random, not signed): never a 500."""
    from bokeh_flask.web import xsrf

    module = tmp_path / "auth.py"
    module.write_text(
        "from flask import request\n"
        "from bokeh_flask.web.xsrf import xsrf_form_html\n"
        "login_url = '/login'\n"
        "def get_user(handler):\n    return handler.get_cookie('user')\n"
        "def LoginHandler():\n"
        "    return 'posted' if request.method == 'POST' else f'<form method=post>{xsrf_form_html()}</form>'\n")
    site = Flask("site")
    BokehFlask({"/app": str(APPS / "whoami_app.py")}, auth_module=str(module), cookie_secret=cookie_secret,
               xsrf_cookies=True).init_app(site)
    client = site.test_client()
    assert client.get("/favicon.ico").status_code == 200
    assert client.get("/app").status_code == 302  # to the login page
    form = client.get("/login")
    token = re.search(r'name="_xsrf" value="([^"]+)"', form.text).group(1)
    assert client.get_cookie(xsrf.COOKIE_NAME).value == token
    assert client.post("/login").status_code == 403
    assert client.post("/login", data={"_xsrf": "forged"}).status_code == 403
    assert client.post("/login", data={"_xsrf": token}).text == "posted"
    assert client.post("/login", headers={"X-XSRFToken": token}).text == "posted"
    other = site.test_client()  # a token from one browser is no good in another
    assert other.post("/login", data={"_xsrf": token}).status_code == 403


def test_get_user_async_and_get_login_url(tmp_path):
    module = tmp_path / "auth.py"
    module.write_text(
        "import asyncio\n"
        "async def get_user_async(handler):\n"
        "    await asyncio.sleep(0)\n"
        "    return handler.request.headers.get('X-User')\n"
        "def get_login_url(handler):\n"
        "    return 'https://sso.example/login?from=' + handler.request.path\n")
    site = Flask("site")
    BokehFlask({"/app": str(APPS / "whoami_app.py")}, auth_module=str(module)).init_app(site)
    client = site.test_client()
    refused = client.get("/app")
    assert refused.status_code == 302
    assert refused.headers["Location"] == "https://sso.example/login?from=/app&next=%2Fapp"
    assert client.get("/app", headers={"X-User": "erin"}).status_code == 200


@pytest.mark.parametrize("target, expected", [
    ("/whoami_app?x=1", "/whoami_app?x=1"),
    ("/", "/"),
    (None, "/"),
    ("", "/"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\\evil.example/", "/"),
    ("\\\\evil.example", "/"),
    ("javascript:alert(1)", "/"),
    ("/ok\r\nSet-Cookie: x=1", "/"),
    ("evil.example", "/"),
])
def test_local_url_keeps_redirects_on_this_site(target, expected):
    from bokeh_flask import local_url

    assert local_url(target) == expected


EVIL_NEXT_SCRIPT = """
import runpy
site = runpy.run_path({path!r})["create_site"]()
client = site.test_client()
for target in ("https://evil.example/", "//evil.example/", "/\\\\evil.example", "/apps/greeting"):
    response = client.post("/login?next=" + target, data={{"name": "eve"}})
    print(response.status_code, response.headers["Location"])
"""


def test_flask_login_example_redirects_only_within_the_site():
    """Examples get copied: the example site's login sends ?next= only to its own paths."""
    script = EVIL_NEXT_SCRIPT.format(path=str(EXAMPLES / "flask_login" / "app.py"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["302 /", "302 /", "302 /", "302 /apps/greeting"]
