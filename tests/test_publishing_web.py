"""Publishing's pages and JSON API through Flask's test client (the websocket is in test_publishing_live.py)."""
from __future__ import annotations

import re

import pytest

from bokeh_flask import create_app
from bokeh_flask.core.store import StoredDocument


def doc_json(title: str = "Q") -> str:
    from bokeh.document import Document
    from bokeh.models import Slider

    from bokeh_flask.core.changes import document_json

    doc = Document()
    doc.add_root(Slider(start=0, end=1, value=0.5))
    doc.title = title
    return document_json(doc)


@pytest.fixture
def site():
    app = create_app(None, publishing=True, backend="memory", multi_user=True)
    state = app.extensions["bokeh"]["bokeh"]
    return app, state.publications.store


def register(client, name="alice", password="correct horse"):
    response = client.post("/bokeh/api/register", json={"username": name, "password": password})
    assert response.status_code == 200, response.json
    return response.json["api_key"]


def bearer(name, key):
    return {"Authorization": f"Bearer {name}:{key}"}


def test_publishing_is_off_unless_asked():
    app = create_app(None)
    response = app.test_client().get("/bokeh/api/whoami")
    assert response.status_code == 404 and b"--publishing" in response.data


def test_single_user_mode_everyone_is_defaultuser():
    app = create_app(None, publishing=True, backend="memory")
    client = app.test_client()
    assert client.get("/bokeh/api/whoami").json == {"username": "defaultuser", "multi_user": False}
    response = client.post("/bokeh/api/register", json={"username": "bob", "password": "12345678"})
    assert response.status_code == 403 and "single-user" in response.json["error"]


def test_register_login_and_keys(site):
    app, store = site
    client = app.test_client()
    key = register(client)
    assert client.get("/bokeh/api/whoami", headers=bearer("alice", key)).json["username"] == "alice"
    assert client.get("/bokeh/api/whoami", headers=bearer("alice", "wrong")).json["username"] is None
    assert client.get("/bokeh/api/whoami").json["username"] is None
    login = client.post("/bokeh/api/login", json={"username": "alice", "password": "correct horse"})
    assert login.status_code == 200 and login.json["api_key"] != key
    assert store.get_user("alice").password_hash.startswith(("scrypt:", "pbkdf2:"))
    assert key not in repr(store.get_user("alice"))  # kept hashed
    out = client.post("/bokeh/api/logout", headers=bearer("alice", key))
    assert out.status_code == 200
    assert client.get("/bokeh/api/whoami", headers=bearer("alice", key)).json["username"] is None
    assert client.get("/bokeh/api/whoami", headers=bearer("alice", login.json["api_key"])).json["username"] == "alice"


def test_bad_registrations(site):
    app, _ = site
    client = app.test_client()
    register(client)
    taken = client.post("/bokeh/api/register", json={"username": "alice", "password": "another one"})
    assert taken.status_code == 409
    short = client.post("/bokeh/api/register", json={"username": "bob", "password": "short"})
    assert short.status_code == 400 and "at least 8" in short.json["error"]
    bad_name = client.post("/bokeh/api/register", json={"username": "../etc", "password": "long enough"})
    assert bad_name.status_code == 400 and "User names" in bad_name.json["error"]
    assert client.post("/bokeh/api/register", json={}).status_code == 400


def test_registration_can_be_closed():
    app = create_app(None, publishing=True, backend="memory", multi_user=True, open_registration=False)
    response = app.test_client().post("/bokeh/api/register", json={"username": "bob", "password": "long enough"})
    assert response.status_code == 403 and "bokeh-flask user add" in response.json["error"]


def test_failed_logins_are_rate_limited(site):
    app, _ = site
    client = app.test_client()
    register(client)
    limiter = app.extensions["bokeh"]["bokeh"].publications.login_limiter
    statuses = [client.post("/bokeh/api/login", json={"username": "alice", "password": "guess %d" % i}).status_code
                for i in range(limiter.max_failures + 1)]
    assert statuses == [401] * limiter.max_failures + [429]
    refused = client.post("/bokeh/api/login", json={"username": "alice", "password": "correct horse"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0


def test_document_visibility(site):
    app, store = site
    client = app.test_client()
    alice, bob = register(client, "alice"), register(client, "bob")
    store.put(StoredDocument("secret", "alice", doc_json("S")), based_on=0)
    store.put(StoredDocument("shared", "alice", doc_json("P")), based_on=0)
    client.post("/bokeh/api/doc/shared/publish", headers=bearer("alice", alice))
    assert client.get("/bokeh/doc/secret", headers=bearer("alice", alice)).status_code == 200
    assert client.get("/bokeh/doc/secret", headers=bearer("bob", bob)).status_code == 403
    anonymous = client.get("/bokeh/doc/secret")
    assert anonymous.status_code == 404 and anonymous.data == client.get("/bokeh/doc/missing").data.replace(
        b"missing", b"secret")  # the same answer as for a name that does not exist
    assert client.get("/bokeh/doc/secret?public=true").status_code == 404
    assert client.get("/bokeh/doc/shared?public=true").status_code == 200
    assert client.get("/bokeh/doc/shared", headers=bearer("bob", bob)).status_code == 403
    assert client.post("/bokeh/api/doc/shared/unpublish", headers=bearer("bob", bob)).status_code == 403
    assert client.delete("/bokeh/api/doc/secret", headers=bearer("bob", bob)).status_code == 403
    mine = client.get("/bokeh/api/docs", headers=bearer("bob", bob)).json["docs"]
    public = client.get("/bokeh/api/docs?public=true").json["docs"]
    assert mine == [] and [d["docid"] for d in public] == ["shared"]
    assert public[0]["public_url"].endswith("/bokeh/doc/shared?public=true")


def test_one_plot_of_a_document(site):
    app, store = site
    client = app.test_client()
    key = register(client)
    store.put(StoredDocument("quarterly", "alice", doc_json()), based_on=0)
    page = client.get("/bokeh/doc/quarterly", headers=bearer("alice", key)).data.decode()
    root_id = re.search(r'"roots":\{"([^"]+)"', page).group(1)
    assert client.get(f"/bokeh/doc/quarterly/{root_id}", headers=bearer("alice", key)).status_code == 200
    assert client.get("/bokeh/doc/quarterly/nope", headers=bearer("alice", key)).status_code == 404


def test_forms_need_the_xsrf_token(site):
    app, _ = site
    client = app.test_client()
    register(client)
    form = client.get("/bokeh/login").data.decode()
    token = re.search(r'name="_xsrf" value="([^"]+)"', form).group(1)
    without = client.post("/bokeh/login", data={"username": "alice", "password": "correct horse"})
    assert without.status_code == 403
    logged_in = client.post("/bokeh/login", data={"username": "alice", "password": "correct horse", "_xsrf": token})
    assert logged_in.status_code == 302
    cookie = client.get_cookie("bokeh_flask_login", path="/bokeh")
    assert cookie is not None and cookie.http_only
    assert client.get("/bokeh/api/whoami").json["username"] == "alice"
    assert client.post("/bokeh/logout").status_code == 403  # no token: still logged in
    assert client.get("/bokeh/api/whoami").json["username"] == "alice"
    assert client.post("/bokeh/logout", data={"_xsrf": token}).status_code == 302
    assert client.get("/bokeh/api/whoami").json["username"] is None


def test_a_site_login_stands_in():
    from bokeh_flask import BokehFlask
    from flask import Flask, session

    app = Flask(__name__)
    app.secret_key = "test"
    BokehFlask(None, app=app, publishing=True, backend="memory", multi_user=True,
               publishing_user=lambda: session.get("user"))

    @app.route("/signin/<name>")
    def signin(name):
        session["user"] = name
        return "ok"

    client = app.test_client()
    assert client.get("/bokeh/api/whoami").json["username"] is None
    client.get("/signin/carol")
    assert client.get("/bokeh/api/whoami").json["username"] == "carol"
    refused = client.post("/bokeh/api/login", json={"username": "carol", "password": "whatever1"})
    assert refused.status_code == 403 and "site" in refused.json["error"]
    # carol makes a key for her scripts on the index page; a script then needs no site session
    index = client.get("/bokeh/").data.decode()
    token = re.search(r'name="_xsrf" value="([^"]+)"', index).group(1)
    assert client.post("/bokeh/keys").status_code == 403  # the form's XSRF token is required
    shown = client.post("/bokeh/keys", data={"_xsrf": token}).data.decode()
    key = re.search(r'<code id="api-key">([^<]+)</code>', shown).group(1)
    script = app.test_client()
    assert script.get("/bokeh/api/whoami", headers=bearer("carol", key)).json["username"] == "carol"
    store = app.extensions["bokeh"]["bokeh"].publications.store
    assert store.get_user("carol").password_hash == "!"  # no password: the site's login is hers


def test_authorize_stands_in_and_scripts_pass_the_guard_with_a_key():
    from bokeh_flask import BokehFlask
    from flask import Flask, session

    app = Flask(__name__)
    app.secret_key = "test"
    BokehFlask(None, app=app, publishing=True, backend="memory", multi_user=True,
               authorize=lambda: session.get("user"), login_url="/signin")

    @app.route("/signin/<name>")
    def signin(name):
        session["user"] = name
        return "ok"

    browser = app.test_client()
    assert browser.get("/bokeh/").status_code == 302  # the site's login page first
    browser.get("/signin/dave")
    assert browser.get("/bokeh/api/whoami").json["username"] == "dave"
    key = browser.post("/bokeh/api/keys", json={}).json["api_key"]
    script = app.test_client()
    assert script.get("/bokeh/api/whoami", headers=bearer("dave", key)).json["username"] == "dave"
    assert script.get("/bokeh/api/whoami", headers=bearer("dave", "forged")).json["username"] is None


def test_another_sites_form_cannot_publish():
    """A cross-site form post (no JSON, no key, no XSRF token) is refused; the client's JSON call is not."""
    from bokeh_flask.core.store import StoredDocument as Stored

    app = create_app(None, publishing=True, backend="memory")
    store = app.extensions["bokeh"]["bokeh"].publications.store
    store.put(Stored("quarterly", "defaultuser", doc_json()), based_on=0)
    client = app.test_client()
    forged = client.post("/bokeh/api/doc/quarterly/publish", data={"x": "1"})
    assert forged.status_code == 403 and "XSRF" in forged.json["error"]
    assert client.delete("/bokeh/api/doc/quarterly").status_code == 403
    assert store.get("quarterly").public is False
    assert client.post("/bokeh/api/doc/quarterly/publish", json={}).json["public"] is True


def test_settings_from_flask_config_and_the_environment(tmp_path):
    from flask import Flask

    from bokeh_flask import BokehFlask, create_app_from_env

    app = Flask(__name__)
    app.config.update(BOKEH_PUBLISHING=True, BOKEH_BACKEND="shelve", BOKEH_DATA_DIRECTORY=str(tmp_path / "cfg"),
                      BOKEH_MULTI_USER=True)
    BokehFlask(None, app=app)
    state = app.extensions["bokeh"]["bokeh"]
    assert state.settings.multi_user and state.publications is not None
    assert (tmp_path / "cfg" / "documents.sqlite3").exists()
    assert app.test_client().get("/bokeh/api/whoami").json == {"username": None, "multi_user": True}

    env = {"BOKEH_FLASK_PUBLISHING": "yes", "BOKEH_FLASK_BACKEND": "memory", "BOKEH_FLASK_MULTI_USER": "no"}
    served = create_app_from_env(env)
    assert served.test_client().get("/bokeh/api/whoami").json["username"] == "defaultuser"
    assert served.test_client().get("/").headers["Location"].endswith("/bokeh/")  # no apps: / is the index


def test_autoload_embeds_a_public_document_for_anyone(site):
    """What ``autoload_server(public=True)`` and ``server_document(url, arguments={"public": "true"})`` load."""
    from bokeh.embed import server_document

    from bokeh_flask.embed import autoload_server

    app, store = site
    store.put(StoredDocument("shared", "alice", doc_json("P")), based_on=0)
    client = app.test_client()
    tag = autoload_server(url="http://localhost/", docid="shared", public=True)
    same = server_document("http://localhost/bokeh/doc/shared", arguments={"public": "true"})
    script_ids = re.compile(r'id="[^"]+"|bokeh-autoload-element=[^&"]+')  # random per call
    assert script_ids.sub("", tag) == script_ids.sub("", same)
    assert "/bokeh/doc/shared/autoload.js?" in tag and "public=true" in tag
    query = "bokeh-autoload-element=el1&bokeh-app-path=/bokeh/doc/shared&public=true"
    assert client.get(f"/bokeh/doc/shared/autoload.js?{query}").status_code == 404  # not published yet
    store.set_public("shared", True)
    script = client.get(f"/bokeh/doc/shared/autoload.js?{query}")
    assert script.status_code == 200 and script.mimetype == "application/javascript" and b"el1" in script.data
