"""``bokeh_flask.client.Session`` in this process against real ``bokeh-flask serve`` subprocesses.

Every call of the client (register, login, logout, whoami, use_doc, push, pull, publish,
unpublish, doc_url, public_url, list_docs, info, delete) and its refusals: bad names, another
user's document, the size cap, wrong passwords and the rate limit, closed registration, and a
single-user server that ``bokeh.client.push_session`` publishes to as well.

One multi-user server is shared by the module (each test has its own user names and
document names); servers whose state a test spoils (the login rate limit) are per test.
Key files always go to ``tmp_path``: ``~/.bokeh`` is never touched.
"""
from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from urllib.parse import quote

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, Div

from bokeh_flask.client import PublishError, Session, normalize_root_url
from bokeh_flask.client.keys import keys_path, load_keys
from tests.support.client import run_client
from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.slow

PASSWORD = "a long password"
BAD_NAMES = ["-dash-first", ".hidden", "_under", "a" * 129, "has space", "ünïcode", "semi;colon"]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------ servers

@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("publishing-client")


@pytest.fixture(scope="module")
def server(serve_module, data_root):
    """The module's multi-user server (open registration, the file store)."""
    return serve_module(extra_args=["--multi-user", "--data-directory", data_root / "shared"])


@pytest.fixture(scope="module")
def strict(serve_module, data_root):
    """Registration closed (users come from ``bokeh-flask user add``), documents capped at 20000 bytes."""
    directory = data_root / "strict"
    running = serve_module(extra_args=["--multi-user", "--close-registration", "--max-document-size", "20000",
                                       "--data-directory", directory])
    running.data_directory = directory
    return running


@pytest.fixture
def sessions():
    """``new(root, keys_dir, ...)`` -> Session; every one is closed when the test ends."""
    made: list[Session] = []

    def new(root: str, keys_dir, **kwargs) -> Session:
        session = Session(str(root), keys_dir=keys_dir, **kwargs)
        made.append(session)
        return session

    yield new
    for session in made:
        session.close()


@pytest.fixture
def registered(server, sessions, tmp_path):
    """``registered(name=None)`` -> a Session of a new user of the shared server, with its own key folder."""
    def new(name: str | None = None) -> Session:
        name = name or unique("user")
        session = sessions(server, tmp_path / f"keys-{name}")
        assert session.register(name, PASSWORD) == name
        return session
    return new


# ------------------------------------------------------------------ helpers

def note_document(text: str, points: int = 4) -> Document:
    doc = Document()
    doc.add_root(Div(text=text, name="note"))
    doc.add_root(ColumnDataSource(data={"x": list(range(points))}, name="source"))
    doc.title = f"Note {text}"
    return doc


def note(doc: Document) -> str:
    return doc.get_model_by_name("note").text


def xs(doc: Document) -> list[float]:
    return list(doc.get_model_by_name("source").data["x"])


def http(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Status and body of an anonymous (or explicitly authorised) request; errors are answers too."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def bearer(session: Session) -> dict[str, str]:
    assert session.authorization is not None
    return {"Authorization": session.authorization}


def user_add(data_directory, name: str, password: str) -> subprocess.CompletedProcess[str]:
    """``bokeh-flask user add NAME --password-stdin --data-directory DIR``, as the docs write it."""
    return subprocess.run([sys.executable, "-m", "bokeh_flask", "user", "add", name, "--password-stdin",
                           "--data-directory", str(data_directory)],
                          input=password + "\n", capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


# ------------------------------------------------------------------ identity

def test_register_saves_a_private_key_file_that_later_sessions_use(server, sessions, tmp_path):
    keys = tmp_path / "keys"
    name = unique("alice")
    alice = sessions(server, keys)
    assert alice.whoami() == {"username": None, "multi_user": True}
    assert alice.register(name, PASSWORD) == name
    assert alice.username == name and alice.whoami() == {"username": name, "multi_user": True}

    path = keys_path(keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    root = normalize_root_url(server)
    saved = load_keys(keys)
    assert list(saved) == [root] and saved[root]["username"] == name

    # a second Session for the same server (spelled without the slash) is logged in from the file
    later = sessions(str(server).rstrip("/"), keys)
    assert later.username == name and later.whoami()["username"] == name

    # one entry per server URL: logging in again replaces it, another URL adds one
    alice.login(name, PASSWORD)
    assert list(load_keys(keys)) == [root] and load_keys(keys)[root]["api_key"] != saved[root]["api_key"]
    other_url = sessions(server.browser_url, keys)
    assert other_url.username is None  # nothing saved for http://localhost:PORT/ yet
    other_url.login(name, PASSWORD)
    assert sorted(load_keys(keys)) == sorted([root, normalize_root_url(server.browser_url)])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_logout_revokes_the_key(server, sessions, tmp_path):
    keys = tmp_path / "keys"
    name = unique("carol")
    carol = sessions(server, keys)
    carol.register(name, PASSWORD)
    key = load_keys(keys)[normalize_root_url(server)]["api_key"]
    holder = sessions(server, keys)  # the same key, loaded from the file
    assert holder.whoami()["username"] == name

    carol.logout()
    assert carol.username is None and carol.whoami()["username"] is None
    assert load_keys(keys) == {}
    assert holder.whoami()["username"] is None  # the key stopped working on the server
    assert sessions(server, tmp_path / "none", username=name, api_key=key).whoami()["username"] is None
    status, body = http(f"{server}/bokeh/api/docs", headers={"Authorization": f"Bearer {name}:{key}"})
    assert status == 401 and "Not logged in" in body


def test_wrong_password_then_the_rate_limit(serve, sessions, tmp_path):
    """Its own server: the failures count per client address, and every test comes from 127.0.0.1."""
    server = serve(extra_args=["--multi-user", "--data-directory", tmp_path / "data"])
    name = unique("dave")
    sessions(server, tmp_path / "owner").register(name, PASSWORD)
    guesser = sessions(server, tmp_path / "guesser")
    for _ in range(5):
        with pytest.raises(PublishError) as wrong:
            guesser.login(name, "not the password")
        assert wrong.value.status == 401 and "Wrong user name or password" in str(wrong.value)
    for password in ("not the password", PASSWORD):  # now even the right one waits
        with pytest.raises(PublishError) as limited:
            guesser.login(name, password)
        assert limited.value.status == 429
        assert re.search(r"try again in \d+ s", limited.value.message), limited.value.message
        assert re.search(r"retry after \d+ s", limited.value.message), limited.value.message
    assert guesser.username is None and load_keys(tmp_path / "guesser") == {}


def test_closed_registration_and_a_user_added_by_the_cli(strict, sessions, tmp_path):
    name = unique("erin")
    with pytest.raises(PublishError) as refused:
        sessions(strict, tmp_path / "keys").register(name, PASSWORD)
    assert refused.value.status == 403
    assert "Registration is closed" in str(refused.value) and "bokeh-flask user add" in str(refused.value)

    added = user_add(strict.data_directory, name, PASSWORD)
    assert added.returncode == 0 and added.stdout == f"added {name}\n", added.stderr
    erin = sessions(strict, tmp_path / "keys")
    assert erin.login(name, PASSWORD) == name
    assert sessions(strict, tmp_path / "keys").whoami()["username"] == name


# ------------------------------------------------------------------ names

@pytest.mark.parametrize("name", BAD_NAMES + ["", "a/b", None])
def test_use_doc_refuses_bad_names_with_the_servers_rule(server, sessions, tmp_path, name):
    session = sessions(server, tmp_path / "keys")
    with pytest.raises(ValueError, match="Document names are 1 to 128 letters") as refused:
        session.use_doc(name)
    assert session.docid is None
    if name and "/" not in name:
        # the same name sent raw: the API and the page answer 400 with the same sentence
        status, body = http(f"{server}/bokeh/api/doc/{quote(name, safe='')}")
        assert status == 400 and json.loads(body)["error"] == str(refused.value)
        status, _ = http(f"{server}/bokeh/doc/{quote(name, safe='')}")
        assert status == 400


def test_use_doc_takes_good_names(server, sessions, tmp_path):
    session = sessions(server, tmp_path / "keys")
    for name in ("a", "Q3.report_v-2", "9" * 128):
        assert session.use_doc(name) is session and session.docid == name
        assert session.doc_url == f"{normalize_root_url(server)}bokeh/doc/{name}"
        assert session.public_url == f"{session.doc_url}?public=true"


# ------------------------------------------------------------------ documents

def test_push_then_patch_then_pull_from_a_new_session(server, registered, sessions, monkeypatch):
    alice = registered()
    docid = unique("sales")
    doc = note_document("first")
    alice.use_doc(docid).push(doc)
    info = alice.info()
    assert info["docid"] == docid and info["owner"] == alice.username and info["version"] == 1
    assert info["public"] is False and info["title"] == "Note first"
    assert info["doc_url"] == alice.doc_url and info["public_url"] == alice.public_url

    connection = alice._connection
    sent: dict[str, list] = {"whole": [], "changes": []}
    whole, changes = connection.push_document, connection.send_changes
    monkeypatch.setattr(connection, "push_document", lambda d: sent["whole"].append(d) or whole(d))
    monkeypatch.setattr(connection, "send_changes", lambda: sent["changes"].append(changes()) or sent["changes"][-1])
    doc.get_model_by_name("note").text = "second"
    doc.get_model_by_name("source").stream({"x": [99]})
    alice.push(doc)
    assert sent == {"whole": [], "changes": [2]}  # one PATCH-DOC with both changes
    assert alice.info()["version"] == 2

    copy = sessions(server, alice.keys_dir).use_doc(docid).pull()  # a new Session, logged in from the file
    assert note(copy) == "second" and xs(copy) == [0, 1, 2, 3, 99]
    assert alice._connection is connection  # the same websocket all along


def test_pull_of_a_missing_document_is_a_clear_error(server, registered, sessions, tmp_path):
    docid = unique("missing")
    with pytest.raises(PublishError) as anonymous:
        sessions(server, tmp_path / "anonymous").use_doc(docid).pull()
    assert docid in str(anonymous.value) and "No document" in str(anonymous.value), str(anonymous.value)
    owner = registered()
    with pytest.raises(PublishError) as logged_in:
        owner.use_doc(docid).pull()
    assert docid in str(logged_in.value) and "No document" in str(logged_in.value), str(logged_in.value)
    with pytest.raises(PublishError) as info:
        owner.info(docid)
    assert info.value.status == 404


def test_publish_and_unpublish_the_public_link(server, registered):
    alice = registered()
    docid = unique("public")
    alice.use_doc(docid).push(note_document("for everyone"))
    assert http(alice.public_url)[0] == 404  # anonymous, not published: as if it did not exist

    info = alice.publish()
    assert info["public"] is True and info["public_url"] == alice.public_url
    status, body = http(alice.public_url)
    assert status == 200 and "Note for everyone" in body
    assert docid in {d["docid"] for d in alice.list_docs(public=True)}
    assert http(alice.doc_url)[0] == 403  # the owner's page is the owner's only

    assert alice.unpublish()["public"] is False
    assert http(alice.public_url)[0] == 404
    assert docid not in {d["docid"] for d in alice.list_docs(public=True)}
    assert http(alice.public_url, headers=bearer(alice))[0] == 403  # its owner is told to publish it


def test_list_docs_and_delete(server, registered):
    frank, grace = registered(), registered()
    one, two = unique("one"), unique("two")
    frank.use_doc(one).push(note_document("1"))
    frank.use_doc(two).push(note_document("2"))
    frank.publish()
    grace.use_doc(unique("graces")).push(note_document("g"))

    mine = frank.list_docs()
    assert sorted(d["docid"] for d in mine) == sorted([one, two])
    assert {d["owner"] for d in mine} == {frank.username}
    assert frank.username not in {d["owner"] for d in grace.list_docs()}
    public = {d["docid"]: d for d in grace.list_docs(public=True)}
    assert two in public and one not in public and public[two]["owner"] == frank.username

    frank.use_doc(one).delete()
    assert [d["docid"] for d in frank.list_docs()] == [two]
    with pytest.raises(PublishError) as gone:
        frank.info(one)
    assert gone.value.status == 404
    with pytest.raises(PublishError, match="No document"):
        frank.pull()
    # the name is free again: pushing it makes a new document (version 1), which pull shows
    frank.push(note_document("again"))
    assert frank.info()["version"] == 1
    assert note(frank.use_doc(one).pull()) == "again"


def test_only_the_owner_overwrites(server, registered, sessions):
    alice, bob = registered(), registered()
    docid = unique("mine")
    alice.use_doc(docid).push(note_document("alice's"))
    for published in (False, True):
        if published:
            alice.publish()  # a version of its own: 2
        with pytest.raises(PublishError) as refused:
            bob.use_doc(docid).push(note_document("bob's"))
        assert "belongs to another user" in str(refused.value)
        bob.close()
        assert alice.info()["version"] == (2 if published else 1) and alice.info()["owner"] == alice.username
        assert note(sessions(server, alice.keys_dir).use_doc(docid).pull()) == "alice's"
    with pytest.raises(PublishError) as delete:
        bob.delete()
    assert delete.value.status == 403
    with pytest.raises(PublishError) as unpublish:
        bob.unpublish()
    assert unpublish.value.status == 403 and alice.info()["public"] is True


def test_another_users_private_document(server, registered):
    alice, bob = registered(), registered()
    docid, missing = unique("private"), unique("nothere")
    alice.use_doc(docid).push(note_document("secret"))

    with pytest.raises(PublishError) as forbidden:
        bob.info(docid)
    assert forbidden.value.status == 403 and "belongs to another user" in str(forbidden.value)
    assert http(f"{server}/bokeh/doc/{docid}", headers=bearer(bob))[0] == 403

    # anonymous: the same 404 as a name nobody uses (the name itself aside)
    for path in ("bokeh/api/doc/{}", "bokeh/doc/{}"):
        private = http(f"{server}/{path.format(docid)}")
        absent = http(f"{server}/{path.format(missing)}")
        assert private[0] == absent[0] == 404
        assert private[1].replace(docid, "NAME") == absent[1].replace(missing, "NAME")


def test_a_document_over_the_size_cap_is_refused_and_nothing_is_stored(strict, sessions, tmp_path):
    name = unique("hank")
    assert user_add(strict.data_directory, name, PASSWORD).returncode == 0
    hank = sessions(strict, tmp_path / "keys")
    hank.login(name, PASSWORD)
    docid = unique("big")
    doc = note_document("small")
    hank.use_doc(docid).push(doc)
    assert hank.info()["version"] == 1

    noise = np.random.default_rng(0).random(4000)  # 32000 bytes that no encoding shrinks much
    doc.get_model_by_name("source").data = {"x": noise}
    doc.get_model_by_name("note").text = "big"
    with pytest.raises(PublishError) as refused:
        hank.push(doc)
    assert "max document size" in str(refused.value) and "20000" in str(refused.value), str(refused.value)
    assert hank.info()["version"] == 1
    stored = sessions(strict, tmp_path / "keys").use_doc(docid).pull()
    assert note(stored) == "small" and xs(stored) == [0, 1, 2, 3]

    whole = note_document("big from the start")
    whole.get_model_by_name("source").data = {"x": noise}
    with pytest.raises(PublishError, match="max document size"):
        sessions(strict, tmp_path / "keys").use_doc(unique("bigger")).push(whole)
    assert [d["docid"] for d in hank.list_docs()] == [docid]


# ------------------------------------------------------------------ single-user

PUSH_SESSION = """
    import json, sys
    from bokeh.client import push_session
    from bokeh.document import Document
    from bokeh.models import Div
    doc = Document()
    doc.add_root(Div(text=sys.argv[3], name="note"))
    session = push_session(doc, session_id=sys.argv[2], url=sys.argv[1])
    session.force_roundtrip()
    print(json.dumps({"id": session.id}))
    session.close()
"""


def test_a_single_user_server_needs_no_login(serve, sessions, tmp_path):
    server = serve(extra_args=["--publishing", "--data-directory", tmp_path / "data"])
    session = sessions(server, tmp_path / "keys")
    assert session.whoami() == {"username": "defaultuser", "multi_user": False}
    with pytest.raises(PublishError) as refused:
        session.register("someone", PASSWORD)
    assert refused.value.status == 403 and "single-user" in str(refused.value)

    docid = unique("laptop")
    session.use_doc(docid).push(note_document("mine"))
    assert session.info()["owner"] == "defaultuser"
    assert [d["docid"] for d in session.list_docs()] == [docid]

    # bokeh's own client publishes at /bokeh/doc/<name> as well
    pushed = unique("bokehclient")
    text = unique("hello ")
    result = run_client(PUSH_SESSION, f"{server}/bokeh/doc/{pushed}", unique("sid"), text)
    assert set(result) == {"id"}
    assert session.info(pushed)["owner"] == "defaultuser"
    assert note(sessions(server, tmp_path / "keys").use_doc(pushed).pull()) == text
    assert load_keys(tmp_path / "keys") == {}  # nothing to save: no login happened
