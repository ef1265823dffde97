"""The publishing client without a server: its key file, its HTTP errors, and its message framing.

The websocket is a recording fake that answers like the server (ACK, then OK to
PUSH-DOC and PATCH-DOC, a PULL-DOC-REPLY of what was pushed), so the frames a push
writes, the PATCH-DOC of a later push and the handling of an incoming PATCH-DOC can
be checked frame by frame.
"""
from __future__ import annotations

import http.server
import json
import os
import queue
import socket
import stat
import threading

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, Div
from bokeh.protocol import Protocol
from bokeh.protocol.receiver import Receiver

from bokeh_flask.client import PublishError, Session, load_key, normalize_root_url, save_key
from bokeh_flask.client import keys as keyfile
from bokeh_flask.client.connection import compact_events, consume
from bokeh_flask.client.session import websocket_url
from bokeh_flask.core.messages import message_frames
from bokeh_flask.embed import autoload_server

#: bokeh 3.7 on sends a document's arrays as binary buffers (3.6 inlines them)
BINARY_DOCUMENTS = hasattr(Document().to_json(), "buffers")

# -- the key file -----------------------------------------------------------------------------


def test_saved_key_file_is_private_and_directory_0700(tmp_path):
    keys_dir = tmp_path / "dotbokeh"
    path = save_key("http://localhost:5006/", "alice", "k1", keys_dir)
    assert path == keys_dir / "bokeh-flask-keys.json"
    assert stat.S_IMODE(os.stat(keys_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {"http://localhost:5006/": {"username": "alice", "api_key": "k1"}}


def test_an_existing_open_directory_is_made_0700(tmp_path):
    keys_dir = tmp_path / "dotbokeh"
    keys_dir.mkdir(mode=0o755)
    os.chmod(keys_dir, 0o755)
    save_key("http://localhost:5006/", "alice", "k1", keys_dir)
    assert stat.S_IMODE(os.stat(keys_dir).st_mode) == 0o700


def test_updates_keep_other_servers_entries_and_leave_no_temporary_file(tmp_path):
    save_key("http://a:5006/", "alice", "k1", tmp_path)
    save_key("http://b:5006/", "bob", "k2", tmp_path)
    save_key("http://a:5006/", "alice", "k3", tmp_path)
    assert load_key("http://a:5006/", tmp_path) == ("alice", "k3")
    assert load_key("http://b:5006/", tmp_path) == ("bob", "k2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bokeh-flask-keys.json"]
    assert keyfile.remove_key("http://a:5006", tmp_path)
    assert not keyfile.remove_key("http://a:5006", tmp_path)
    assert keyfile.load_keys(tmp_path) == {"http://b:5006/": {"username": "bob", "api_key": "k2"}}


def test_the_file_is_replaced_atomically(tmp_path, monkeypatch):
    save_key("http://a:5006/", "alice", "k1", tmp_path)
    replaced = []
    real_replace = os.replace

    def recording_replace(source, target):
        replaced.append((os.path.dirname(source), os.path.basename(target)))
        real_replace(source, target)

    monkeypatch.setattr(keyfile.os, "replace", recording_replace)
    save_key("http://b:5006/", "bob", "k2", tmp_path)
    assert replaced == [(str(tmp_path), "bokeh-flask-keys.json")]

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(keyfile.os, "replace", failing_replace)
    with pytest.raises(OSError):
        save_key("http://c:5006/", "carol", "k3", tmp_path)
    assert set(keyfile.load_keys(tmp_path)) == {"http://a:5006/", "http://b:5006/"}  # the old file is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bokeh-flask-keys.json"]  # the temporary file is gone


@pytest.mark.parametrize("given, normal", [
    ("http://localhost:5006", "http://localhost:5006/"),
    ("http://LocalHost:5006/", "http://localhost:5006/"),
    ("HTTPS://host/dash", "https://host/dash/"),
    ("https://host/dash/", "https://host/dash/"),
])
def test_root_urls_are_normalised(given, normal):
    assert normalize_root_url(given) == normal


@pytest.mark.parametrize("bad", ["localhost:5006", "ftp://host/", "http://host/?x=1", "http:///path"])
def test_a_bad_root_url_is_refused(bad):
    with pytest.raises(ValueError, match="root URL"):
        normalize_root_url(bad)


def test_a_new_session_loads_the_key_by_root_url(tmp_path):
    save_key("http://localhost:5006/", "alice", "k1", tmp_path)
    session = Session("http://localhost:5006", keys_dir=tmp_path)
    assert session.username == "alice"
    assert session.authorization == "Bearer alice:k1"
    assert Session("http://otherhost:5006/", keys_dir=tmp_path).authorization is None
    assert Session("http://localhost:5006/", username="bob", keys_dir=tmp_path).authorization is None
    explicit = Session("http://localhost:5006/", username="bob", api_key="k9", keys_dir=tmp_path)
    assert explicit.authorization == "Bearer bob:k9"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"http://a/": {"username": "x"}}'])
def test_a_corrupt_key_file_gives_a_clear_error(tmp_path, content):
    (tmp_path / "bokeh-flask-keys.json").write_text(content)
    with pytest.raises(PublishError, match="bokeh-flask-keys.json .*delete it and log in again"):
        Session("http://localhost:5006/", keys_dir=tmp_path)
    with pytest.raises(PublishError):
        save_key("http://localhost:5006/", "alice", "k1", tmp_path)  # never overwritten silently


# -- HTTP, against a tiny fake server ---------------------------------------------------------


class _FakeApi(http.server.BaseHTTPRequestHandler):
    answers: dict = {}
    seen: list = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        status, answer, extra = self.answers.get((self.command, self.path), (404, {"error": "no such route"}, {}))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_api():
    _FakeApi.answers = {}
    _FakeApi.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/prefix/", _FakeApi
    server.shutdown()
    server.server_close()


def test_login_saves_the_key_and_later_calls_carry_it(fake_api, tmp_path):
    root, api = fake_api
    api.answers[("POST", "/prefix/bokeh/api/login")] = (200, {"username": "alice", "api_key": "K"}, {})
    api.answers[("GET", "/prefix/bokeh/api/whoami")] = (200, {"username": "alice", "multi_user": True}, {})
    info = {"docid": "d", "owner": "alice", "title": "", "public": True, "version": 1,
            "doc_url": root + "bokeh/doc/d", "public_url": root + "bokeh/doc/d?public=true"}
    api.answers[("POST", "/prefix/bokeh/api/doc/d/publish")] = (200, info, {})
    api.answers[("GET", "/prefix/bokeh/api/docs?public=true")] = (200, {"docs": [info]}, {})
    api.answers[("POST", "/prefix/bokeh/api/logout")] = (200, {}, {})
    session = Session(root, keys_dir=tmp_path)
    assert session.login("alice", "pw") == "alice"
    assert api.seen[-1] == ("POST", "/prefix/bokeh/api/login", None, {"username": "alice", "password": "pw"})
    assert load_key(root, tmp_path) == ("alice", "K")

    later = Session(root, keys_dir=tmp_path)
    assert later.whoami() == {"username": "alice", "multi_user": True}
    assert api.seen[-1][2] == "Bearer alice:K"
    assert later.use_doc("d").publish() == info
    assert later.list_docs(public=True) == [info]
    later.logout()
    assert api.seen[-1][:3] == ("POST", "/prefix/bokeh/api/logout", "Bearer alice:K")
    assert load_key(root, tmp_path) is None and later.username is None


@pytest.mark.parametrize("status, error, expected", [
    (401, "Wrong name or password", "Wrong name or password — log in with Session"),
    (403, "Registration is closed", "Registration is closed — log in"),
    (409, "The name 'alice' is taken", "The name 'alice' is taken"),
    (429, "Too many attempts", r"Too many attempts \(retry after 30 s\)"),
])
def test_http_errors_carry_the_servers_text(fake_api, tmp_path, status, error, expected):
    root, api = fake_api
    api.answers[("POST", "/prefix/bokeh/api/register")] = (status, {"error": error}, {"Retry-After": "30"})
    with pytest.raises(PublishError, match=expected) as raised:
        Session(root, keys_dir=tmp_path).register("alice", "pw")
    assert raised.value.status == status
    assert load_key(root, tmp_path) is None


def test_a_server_that_is_not_running_is_named(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    root = f"http://127.0.0.1:{port}/"
    with pytest.raises(PublishError, match=f"not reachable at {root} \\(connection refused\\)") as raised:
        Session(root, keys_dir=tmp_path).whoami()
    assert raised.value.status is None


# -- names and URLs ---------------------------------------------------------------------------


def test_use_doc_checks_the_name_like_the_server(tmp_path):
    session = Session("http://h:5006/dash", keys_dir=tmp_path)
    assert session.use_doc("sales.2024") is session
    assert session.doc_url == "http://h:5006/dash/bokeh/doc/sales.2024"
    assert session.public_url == "http://h:5006/dash/bokeh/doc/sales.2024?public=true"
    for bad in ["", "../x", "a/b", "-x", "x" * 129]:
        with pytest.raises(ValueError, match="Document names"):
            session.use_doc(bad)
    with pytest.raises(PublishError, match="use_doc"):
        Session("http://h:5006/", keys_dir=tmp_path).push(Document())


def test_websocket_urls():
    assert websocket_url("http://h:5006/", "d") == "ws://h:5006/bokeh/doc/d/ws"
    assert websocket_url("https://h/dash/", "d") == "wss://h/dash/bokeh/doc/d/ws"


def test_autoload_server_loads_the_documents_autoload_js(tmp_path):
    session = Session("http://h:5006/dash/", keys_dir=tmp_path).use_doc("sales")
    script = autoload_server(session=session, public=True)
    assert '"http://h:5006/dash/bokeh/doc/sales/autoload.js?bokeh-autoload-element=' in script
    assert "bokeh-app-path=/dash/bokeh/doc/sales&" in script
    assert script.count("public=true") == 1
    private = autoload_server(Div(), url="http://h:5006", docid="sales")
    assert "h:5006/bokeh/doc/sales/autoload.js?" in private and "public=true" not in private
    with pytest.raises(ValueError, match="use_doc"):
        autoload_server(url="http://h:5006")


# -- the websocket, with a recording fake -----------------------------------------------------


class FakeServerSocket:
    """simple-websocket's ``Client`` as the client uses it, answering like a publishing server."""

    def __init__(self, url, subprotocols, headers):
        self.url, self.subprotocols, self.headers = url, subprotocols, headers
        self.connected = True
        self.sent: list = []            # every frame the client wrote
        self.messages: list = []        # the messages they made, as the server assembles them
        self.incoming: queue.Queue = queue.Queue()
        self.stored = Document()        # the server's copy
        self.info_requests = 0
        self._receiver = Receiver(Protocol())
        self.deliver(Protocol().create("ACK"))

    def deliver(self, message):
        for frame in message_frames(message):
            self.incoming.put(frame)

    def send(self, data):
        assert self.connected
        self.sent.append(data)
        message = consume(self._receiver, data)
        if message is None:
            return
        msgtype = message.header["msgtype"]
        if msgtype == "SERVER-INFO-REQ":  # sent once after connecting; kept apart from the frames tests read
            self.info_requests += 1
            self.sent.clear()
            self.deliver(Protocol().create("SERVER-INFO-REPLY", message.header["msgid"]))
            return
        self.messages.append(message)
        if msgtype == "PUSH-DOC":
            message.push_to_document(self.stored)
        elif msgtype == "PATCH-DOC":
            message.apply_to_document(self.stored, self)
        if msgtype == "PULL-DOC-REQ":
            self.deliver(Protocol().create("PULL-DOC-REPLY", message.header["msgid"], self.stored))
        else:
            self.deliver(Protocol().create("OK", message.header["msgid"]))

    def receive(self, timeout=None):
        try:
            return self.incoming.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self, reason=None, message=None):
        self.connected = False


@pytest.fixture
def sockets(monkeypatch):
    made: list[FakeServerSocket] = []

    def connect(url, subprotocols, headers):
        made.append(FakeServerSocket(url, subprotocols, headers))
        return made[-1]

    monkeypatch.setattr(Session, "connect_websocket", staticmethod(connect))
    return made


def _document():
    document = Document()
    source = ColumnDataSource(data={"x": np.arange(5, dtype="float64"), "y": [1, 2, 3, 4, 5]})
    document.add_root(source)
    document.add_root(Div(text="hello"))
    return document, source


def _text_frames(frames):
    return [json.loads(f) for f in frames if isinstance(f, str)]


def test_push_writes_bokehs_frames_with_the_array_as_a_binary_buffer(sockets, tmp_path):
    document, source = _document()
    with Session("http://h:5006/dash/", username="alice", api_key="K", keys_dir=tmp_path) as session:
        session.use_doc("sales").push(document)
        [ws] = sockets
        assert ws.info_requests == 1
        assert ws.url == "ws://h:5006/dash/bokeh/doc/sales/ws"
        assert ws.subprotocols[0] == "bokeh" and len(ws.subprotocols) == 2
        assert ws.headers == {"Authorization": "Bearer alice:K"}
        if not BINARY_DOCUMENTS:  # bokeh 3.6 inlines arrays in a document's JSON: no buffer to frame
            header, metadata, content = ws.sent
            assert json.loads(header)["msgtype"] == "PUSH-DOC" and "num_buffers" not in json.loads(header)
        else:
            header, metadata, content, buffer_header, payload = ws.sent
            assert isinstance(header, str) and isinstance(metadata, str) and isinstance(content, str)
            assert json.loads(header)["msgtype"] == "PUSH-DOC"
            assert json.loads(header)["num_buffers"] == 1
            assert json.loads(metadata) == {}
            assert json.loads(buffer_header) == {"id": json.loads(buffer_header)["id"]}
            assert json.loads(buffer_header)["id"] in content  # the content refers to the buffer
            assert isinstance(payload, bytes) and payload == np.arange(5, dtype="float64").tobytes()
        stored_source = [m for m in ws.stored.roots if isinstance(m, ColumnDataSource)][0]
        assert list(stored_source.data["x"]) == [0, 1, 2, 3, 4]


def test_a_later_push_sends_only_the_changes_as_patch_doc(sockets, tmp_path):
    document, source = _document()
    div = [m for m in document.roots if isinstance(m, Div)][0]
    session = Session("http://h:5006/", keys_dir=tmp_path).use_doc("sales")
    session.push(document)
    [ws] = sockets
    assert ws.headers == {}  # no key known: a single-user server needs none
    ws.sent.clear()
    div.text = "changed"
    session.push()  # the last pushed document
    assert len(ws.sent) == 3  # header, metadata, content: no buffer, no whole document
    header, _, content = _text_frames(ws.sent)
    assert header["msgtype"] == "PATCH-DOC"
    events = content["events"]
    assert [(e["kind"], e["attr"], e["new"]) for e in events] == [("ModelChanged", "text", "changed")]
    assert [m for m in ws.stored.roots if isinstance(m, Div)][0].text == "changed"

    ws.sent.clear()
    session.push(document)  # nothing changed since: nothing sent
    assert ws.sent == []

    other = Document()
    other.add_root(Div(text="other"))
    session.push(other)  # a different document object is pushed whole
    assert json.loads(ws.sent[0])["msgtype"] == "PUSH-DOC"
    ws.sent.clear()
    div.text = "not sent"  # the first document is no longer recorded
    other.roots[0].text = "sent"
    session.push()
    header, _, content = _text_frames(ws.sent)
    assert [e["new"] for e in content["events"]] == ["sent"]
    session.close()
    assert not ws.connected


def test_data_replaced_then_streamed_arrives_once(sockets, tmp_path):
    document, source = _document()
    session = Session("http://h:5006/", keys_dir=tmp_path).use_doc("sales")
    session.push(document)
    [ws] = sockets
    source.data = {"x": np.array([10.0, 11.0]), "y": [1, 2]}
    source.stream({"x": np.array([12.0]), "y": [3]})
    session.push()
    stored = [m for m in ws.stored.roots if isinstance(m, ColumnDataSource)][0]
    assert list(stored.data["x"]) == [10.0, 11.0, 12.0]
    assert list(stored.data["y"]) == [1, 2, 3]
    ws.sent.clear()
    source.stream({"x": np.array([13.0]), "y": [4]})  # a stream alone travels as a stream
    session.push()
    assert [e["kind"] for e in _text_frames(ws.sent)[2]["events"]] == ["ColumnsStreamed"]
    assert list(stored.data["x"]) == [10.0, 11.0, 12.0, 13.0]


def test_an_incoming_patch_doc_is_applied_and_not_echoed(sockets, tmp_path):
    document, source = _document()
    div = [m for m in document.roots if isinstance(m, Div)][0]
    session = Session("http://h:5006/", keys_dir=tmp_path).use_doc("sales")
    session.push(document)
    [ws] = sockets
    stored_div = [m for m in ws.stored.roots if isinstance(m, Div)][0]
    changes = []
    ws.stored.on_change(lambda event: changes.append(event))
    stored_div.text = "edited elsewhere"
    ws.deliver(Protocol().create("PATCH-DOC", changes))
    _wait_for(lambda: div.text == "edited elsewhere")
    ws.sent.clear()
    session.push()
    assert ws.sent == []  # the server's own change is not sent back
    div.text = "mine"
    session.push()
    assert [e["new"] for e in _text_frames(ws.sent)[2]["events"]] == ["mine"]


def test_an_error_reply_raises_the_servers_text_and_the_next_push_is_whole(sockets, tmp_path):
    document, _ = _document()
    session = Session("http://h:5006/", keys_dir=tmp_path).use_doc("sales")
    session.push(document)
    [ws] = sockets
    refuse = ws.send

    def send(data):
        ws.sent.append(data)
        message = consume(ws._receiver, data)
        if message is not None:
            ws.deliver(Protocol().create("ERROR", message.header["msgid"], "Document 'sales' is 30000000 bytes"))

    ws.send = send
    document.roots[1].text = "x"
    with pytest.raises(PublishError, match="refused to send the document's changes: Document 'sales' is 30000000"):
        session.push()
    ws.send = refuse
    ws.sent.clear()
    session.push()
    assert json.loads(ws.sent[0])["msgtype"] == "PUSH-DOC"


def test_pull_returns_the_stored_document_and_pushes_of_it_patch(sockets, tmp_path):
    document, _ = _document()
    session = Session("http://h:5006/", keys_dir=tmp_path).use_doc("sales")
    session.push(document)
    pulled = session.pull()
    assert pulled is not document and pulled is session.document
    assert sorted(type(m).__name__ for m in pulled.roots) == ["ColumnDataSource", "Div"]
    source = [m for m in pulled.roots if isinstance(m, ColumnDataSource)][0]
    assert list(source.data["x"]) == [0, 1, 2, 3, 4]
    [ws] = sockets
    ws.sent.clear()
    [m for m in pulled.roots if isinstance(m, Div)][0].text = "from the pulled one"
    session.push(pulled)
    assert _text_frames(ws.sent)[0]["msgtype"] == "PATCH-DOC"


def test_a_closed_connection_reconnects_and_pushes_whole(sockets, tmp_path):
    document, _ = _document()
    session = Session("http://h:5006/", keys_dir=tmp_path).use_doc("sales")
    session.push(document)
    session.close()
    document.roots[1].text = "after close"
    session.push()
    assert len(sockets) == 2
    assert json.loads(sockets[1].sent[0])["msgtype"] == "PUSH-DOC"
    assert [m for m in sockets[1].stored.roots if isinstance(m, Div)][0].text == "after close"


def test_compact_events_drops_events_of_removed_models():
    document = Document()
    kept, dropped = Div(text="a"), Div(text="b")
    document.add_root(kept)
    document.add_root(dropped)
    events = []
    document.on_change(lambda event: events.append(event))
    dropped.text = "gone"
    document.remove_root(dropped)
    kept.text = "1"
    kept.text = "2"
    compact = compact_events([e for e in events if hasattr(e, "to_serializable")])
    kinds = [(type(e).__name__, getattr(e, "attr", None), getattr(e, "new", None)) for e in compact]
    assert kinds == [("RootRemovedEvent", None, None), ("ModelChangedEvent", "text", "2")]


def _wait_for(condition, timeout=5.0):
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not condition():
            if done.wait(0.01):
                raise AssertionError("timed out")
    finally:
        deadline.cancel()
