"""The HTTP routes, through Flask's test client (no server process)."""
from __future__ import annotations

import re

import pytest
from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.models import Div
from bokeh.util.token import generate_jwt_token, get_session_id, get_token_payload
from flask import Flask, session

from bokeh_flask import BokehFlask, create_app
from tests.support.servers import EXAMPLES


def div_app(text: str = "hello") -> Application:
    return Application(FunctionHandler(lambda doc: doc.add_root(Div(text=text))), metadata={"team": "x"})


def token_of(html: str) -> str:
    return re.search(r'"token":"([^"]+)"', html).group(1)


@pytest.fixture
def client():
    app = create_app({"/one": div_app("one"), "/two": div_app("two")}, allow_websocket_origin=["good.example:80"])
    return app.test_client()


def test_page_creates_a_session_whose_token_carries_the_request(client):
    page = client.get("/one?N=5", headers={"X-Custom": "yes"})
    assert page.status_code == 200 and page.mimetype == "text/html"
    payload = get_token_payload(token_of(page.text))
    assert payload["arguments"] == {"N": [b"5"]}
    assert payload["headers"]["X-Custom"] == "yes"
    assert len(get_session_id(token_of(page.text))) == 44


def test_named_sessions_by_argument_header_and_token(client):
    assert get_session_id(token_of(client.get("/one?bokeh-session-id=abc").text)) == "abc"
    assert get_session_id(token_of(client.get("/one", headers={"Bokeh-Session-Id": "hdr"}).text)) == "hdr"
    token = generate_jwt_token("tok-id")
    assert token_of(client.get(f"/one?bokeh-token={token}").text) == token
    refused = client.get("/one?bokeh-session-id=a", headers={"Bokeh-Session-Id": "b"})
    assert refused.status_code == 403 and "argument and header" in refused.text


def test_static_files_are_versioned_and_cached(client):
    page = client.get("/one").text
    src = re.search(r'src="(/static/js/bokeh\.min\.js\?v=[0-9a-f]{32})"', page).group(1)
    response = client.get(src)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "public, max-age=31536000"
    assert client.get("/static/js/../../../../etc/passwd").status_code == 404
    assert client.get("/static/%2e%2e/%2e%2e/settings.py").status_code == 404


def test_extension_assets_are_served(client, tmp_path, monkeypatch):
    from bokeh.embed import bundle

    (tmp_path / "ext.js").write_text("console.log('ext')")
    monkeypatch.setitem(bundle.extension_dirs, "my_ext", tmp_path)
    response = client.get("/static/extensions/my_ext/ext.js")
    assert response.status_code == 200 and b"console.log" in response.data
    assert client.get("/static/extensions/my_ext/../secret").status_code == 404
    assert client.get("/static/extensions/unknown/ext.js").status_code == 404


def test_autoload_js_and_its_cors(client):
    assert client.get("/one/autoload.js").status_code == 400
    url = "/one/autoload.js?bokeh-autoload-element=el1&bokeh-app-path=/one&bokeh-absolute-url=http://srv:5006/one"
    good = client.get(url, headers={"Origin": "http://good.example"})
    assert good.status_code == 200 and good.mimetype == "application/javascript"
    assert "el1" in good.text and "http://srv:5006/static/js/bokeh.min.js" in good.text
    assert good.headers["Access-Control-Allow-Origin"] == "http://good.example"
    assert good.headers["Access-Control-Allow-Credentials"] == "true"
    bad = client.get(url, headers={"Origin": "http://evil.example"})
    assert bad.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in bad.headers
    preflight = client.options("/one/autoload.js", headers={"Origin": "http://good.example"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Methods"] == "PUT, GET, OPTIONS"


def test_metadata_index_and_favicon(client):
    assert client.get("/two/metadata").json == {"url": "/two", "data": {"team": "x"}}
    index = client.get("/")
    assert index.status_code == 200 and 'href="/one"' in index.text and 'href="/two"' in index.text
    assert client.get("/favicon.ico").mimetype == "image/x-icon"
    assert client.get("/healthz").json == {"status": "ok", "sessions": {"/one": 0, "/two": 0}, "connections": 0}


def test_custom_index_template(tmp_path):
    template = tmp_path / "index.html"
    template.write_text("<p>{% for i in items %}[{{ prefix }}{{ i }}]{% endfor %}</p>")
    app = create_app({"/a": div_app(), "/b": div_app()}, index=str(template), prefix="/p")
    assert app.test_client().get("/p/").text == "<p>[/p/a][/p/b]</p>"


def test_websocket_route_refuses_plain_requests(client):
    response = client.get("/one/ws")
    assert response.status_code in (400, 403)


def test_directory_app_static_and_template():
    app = create_app([str(EXAMPLES / "dir_app")])
    client = app.test_client()
    page = client.get("/dir_app")
    assert page.status_code == 200 and "dir-app-heading" in page.text
    assert client.get("/dir_app/static/style.css").status_code == 200
    assert client.get("/dir_app/static/../main.py").status_code == 404


def test_root_app_shares_static_with_bokehjs():
    app = create_app(str(EXAMPLES / "dir_app"))  # served at /dir_app: a path is routed by its name
    assert app.test_client().get("/dir_app").status_code == 200
    root = create_app({"/": div_app("root")})
    client = root.test_client()
    page = client.get("/")
    assert page.status_code == 200
    src = re.search(r'src="(/static/js/bokeh\.min\.js\?v=[0-9a-f]+)"', page.text).group(1)
    assert client.get(src).status_code == 200


def test_blueprint_lives_beside_the_sites_own_routes_hooks_and_session():
    site = Flask("site")
    site.secret_key = "test"
    seen = []

    @site.before_request
    def remember():
        seen.append(1)

    @site.route("/")
    def home():
        session["visits"] = session.get("visits", 0) + 1
        return f"home {session['visits']}"

    BokehFlask({"/plot": div_app("plot")}).init_app(site, url_prefix="/dash")
    client = site.test_client()
    assert client.get("/").text == "home 1"
    assert client.get("/").text == "home 2"
    page = client.get("/dash/plot")
    assert page.status_code == 200 and 'src="/dash/static/js/bokeh.min.js' in page.text
    assert client.get("/dash/").headers["Location"].endswith("/dash/plot")
    assert len(seen) == 4


def test_two_sets_of_apps_in_one_site():
    site = Flask("site")
    first = BokehFlask({"/a": div_app("a")})
    second = BokehFlask({"/b": div_app("b")}, name="bokeh2")
    first.init_app(site, url_prefix="/x")
    second.init_app(site, url_prefix="/y")
    client = site.test_client()
    assert client.get("/x/a").status_code == 200 and client.get("/y/b").status_code == 200
    assert len(first.state(site).context_for("/a").sessions) == 1
    assert len(second.state(site).context_for("/b").sessions) == 1


def test_same_origin_rule_and_trusted_hosts():
    from bokeh_flask.web.cors import same_origin_allowed
    from bokeh_flask.core.settings import ServerSettings

    app = create_app({"/a": div_app()})
    state = app.extensions["bokeh"]["bokeh"]
    with app.test_request_context("/a/ws", base_url="http://mysite.example:8000"):
        assert same_origin_allowed(state, "http://mysite.example:8000")
        assert not same_origin_allowed(state, "http://other.example:8000")
    state.settings = ServerSettings(allow_same_origin=False)
    with app.test_request_context("/a/ws", base_url="http://mysite.example:8000"):
        assert not same_origin_allowed(state, "http://mysite.example:8000")
    guarded = create_app({"/a": div_app()})
    guarded.config["TRUSTED_HOSTS"] = ["mysite.example"]
    gstate = guarded.extensions["bokeh"]["bokeh"]
    with guarded.test_request_context("/a/ws", base_url="http://rebound.example:8000"):
        assert not same_origin_allowed(gstate, "http://rebound.example:8000")


def test_absolute_url_is_where_pages_load_bokehjs_from():
    """``Server(absolute_url=...)``: the page's scripts come from there (with the prefix), as bokeh's
    ``BokehTornado.resources(True)`` builds them."""
    from bokeh_flask import create_app

    app = create_app({"/plot": div_app("plot")}, absolute_url="https://cdn.example.com/", prefix="/dash")
    page = app.test_client().get("/dash/plot").text
    assert 'src="https://cdn.example.com/dash/static/js/bokeh.min.js' in page
    plain = create_app({"/plot": div_app("plot")}, prefix="/dash").test_client().get("/dash/plot").text
    assert 'src="/dash/static/js/bokeh.min.js' in plain
