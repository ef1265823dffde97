"""Tornado ``RequestHandler``s as ``bokeh serve`` runs them: auth modules' login pages and ``extra_patterns``."""
from __future__ import annotations

import json
import re

import pytest
from flask import Flask
from tornado.web import RequestHandler

from bokeh_flask import BokehFlask
from tests.support.client import run_client
from tests.support.servers import REPO_ROOT

APPS = REPO_ROOT / "tests" / "apps"
TORNADO_AUTH = APPS / "tornado_auth" / "auth.py"
SECRET = "a-cookie-secret-for-tests"


def site_with(**options) -> tuple[Flask, BokehFlask]:
    site = Flask("site")
    bk = BokehFlask({"/whoami": str(APPS / "whoami_app.py")}, **options)
    bk.init_app(site)
    return site, bk


def test_a_tornado_login_handler_renders_its_template_and_logs_in_with_xsrf():
    site, bk = site_with(auth_module=str(TORNADO_AUTH), cookie_secret=SECRET, xsrf_cookies=True)
    client = site.test_client()
    assert client.get("/whoami").headers["Location"] == "/login?next=%2Fwhoami"
    form = client.get("/login?next=/whoami")
    assert form.status_code == 200 and form.headers["Content-Type"].startswith("text/html")
    token = re.search(r'name="_xsrf" value="([^"]+)"', form.text).group(1)  # Tornado's xsrf_form_html module
    assert client.post("/login?next=/whoami", data={"username": "alice", "password": "wonderland"}).status_code == 403
    wrong = client.post("/login?next=/whoami", data={"username": "alice", "password": "x", "_xsrf": token})
    assert wrong.status_code == 401 and "wrong password" in wrong.text  # set_status, then render again
    good = client.post("/login?next=/whoami", data={"username": "alice", "password": "wonderland", "_xsrf": token})
    assert good.status_code == 302 and good.headers["Location"] == "/whoami"  # async post, redirect
    assert client.get("/whoami").status_code == 200  # set_secure_cookie read back by get_user
    [session] = bk.state(site).context_for("/whoami").sessions
    assert session.document.get_model_by_name("whoami").text == "user=alice"
    assert client.get("/logout").headers["Location"] == "/"
    assert client.get("/whoami").status_code == 302


class Greeter(RequestHandler):
    def initialize(self, greeting: str) -> None:
        self.greeting = greeting

    def get(self, name: str) -> None:
        self.set_header("X-Handler", "Greeter")
        self.write({"text": f"{self.greeting} {name}", "n": self.get_arguments("n"), "path": self.request.path})

    async def post(self, name: str) -> None:
        self.set_status(201)
        self.write(f"posted {json.loads(self.request.body)['x']} for {name}")
        self.finish()


class Teapot(RequestHandler):
    def get(self) -> None:
        self.send_error(418)


def test_extra_patterns_are_served_under_the_prefix_with_tornados_routing():
    site = Flask("site")
    BokehFlask({"/whoami": str(APPS / "whoami_app.py")},
               extra_patterns=[(r"/api/(\w+)", Greeter, {"greeting": "hello"}), ("/teapot", Teapot)]).init_app(
        site, url_prefix="/dash")
    client = site.test_client()
    got = client.get("/dash/api/bob?n=1&n=2")
    assert got.status_code == 200 and got.headers["X-Handler"] == "Greeter"
    assert got.json == {"text": "hello bob", "n": ["1", "2"], "path": "/dash/api/bob"}
    posted = client.post("/dash/api/carol", data=json.dumps({"x": 3}), content_type="application/json")
    assert posted.status_code == 201 and posted.text == "posted 3 for carol"
    assert client.get("/dash/teapot").status_code == 418
    assert client.get("/dash/api/bob/extra").status_code == 404  # the pattern matches the whole path


@pytest.mark.parametrize("entry", [("no-slash", Greeter), ("/x", object), ("/x",)])
def test_bad_extra_patterns_are_refused_with_their_fix(entry):
    from bokeh_flask.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"extra_patterns|must start with '/'"):
        BokehFlask({"/whoami": str(APPS / "whoami_app.py")}, extra_patterns=[entry]).init_app(Flask("site"))


AUTH_PROVIDER = """
    from gevent import monkey; monkey.patch_all()
    import json, urllib.error, urllib.request
    from bokeh.server.auth_provider import AuthModule
    from bokeh_flask import Server

    server = Server({{"/whoami": {app!r}}}, port=0, address="127.0.0.1",
                    auth_provider=AuthModule({auth!r}), cookie_secret="s")
    server.start()
    base = f"http://127.0.0.1:{{server.port}}"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(base + "/whoami")
        location = None
    except urllib.error.HTTPError as error:
        location = error.headers["Location"]
    login = urllib.request.urlopen(base + "/login").read().decode()
    server.stop()
    print(json.dumps({{"location": location, "login_form": "name=\\"password\\"" in login}}))
"""


@pytest.mark.slow
def test_server_takes_bokehs_auth_provider_objects():
    result = run_client(AUTH_PROVIDER.format(app=str(APPS / "whoami_app.py"), auth=str(TORNADO_AUTH)))
    assert result == {"location": "/login?next=%2Fwhoami", "login_form": True}
