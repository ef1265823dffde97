"""The bokeh websocket protocol, spoken raw against a live server.

One server (module scope) runs ``tests/apps/protocol_app.py`` with a small
``--websocket-max-message-size`` and a short ``--keep-alive`` so pings flow.
Its periodic callback sends PATCH-DOCs with binary buffers every 50 ms, so
every test also reads server->client traffic that races its own requests;
the client (:mod:`tests.support.bokeh_ws`) checks the framing of every
message it reads.

Rules checked (see ``bokeh_flask/connection.py`` and ``websocket.py``):

* protocol-breaking input -> a warning in the log and close code 1002;
* a message over the size limit -> close code 1009;
* a well-formed request whose handling raised -> ``ERROR`` reply (``reqid``,
  text naming the problem, ``traceback`` null) and the connection stays open;
* refusals (subprotocols, token, Origin) -> HTTP 403 before the upgrade;
* close codes are valid RFC 6455 codes, never bokeh's 10000/10001;
* when a websocket ends its TCP connection ends too (it is not handed back
  to the WSGI server to be read as HTTP).

``BOKEH_FLASK_TEST_SERVER=bokeh`` runs this module against ``bokeh serve``:
the good-input tests pass there; the others fail where bokeh-flask differs
on purpose (bokeh closes with 10000/10001, refuses after the upgrade, puts a
traceback in ERROR replies, resets the TCP connection on oversize messages).
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import bokeh
import numpy as np
import pytest
import websocket
from bokeh.document import Document
from bokeh.models import Div
from bokeh.protocol import Protocol

from bokeh_flask.core.messages import REPULL_KEEPS_BUFFERS
from tests.support.bokeh_ws import (
    BokehWS,
    ConnectionDropped,
    Message,
    buffer_refs,
    decode_ndarray,
    make_token,
    map_entries,
    models_by_name,
    ndarray_rep,
    new_session_id,
)
from tests.support.servers import server_command

pytestmark = pytest.mark.slow

APP = Path(__file__).parent / "apps" / "protocol_app.py"
APP_PATH = "/protocol_app"
MAX_MESSAGE = 65536
KEEP_ALIVE_MS = 200
SERVER_ARGS = (
    "--websocket-max-message-size", str(MAX_MESSAGE),
    "--keep-alive", str(KEEP_ALIVE_MS),
    # sessions of closed connections (each runs a 50 ms callback) go away fast
    "--unused-session-lifetime", "1000",
    "--check-unused-sessions", "500",
    "--log-format", "%(levelname)s %(name)s: %(message)s",
)
VALID_CLOSE_CODES = {1002, 1008, 1009, 1011}
N = 16  # length of the app's columns


@pytest.fixture(scope="module")
def server(serve_module):
    return serve_module(APP, extra_args=SERVER_ARGS)


class _Connector:
    """Opens client websockets to the app and closes them all when the test ends."""

    def __init__(self, server):
        self.server = server
        self.opened: list[BokehWS] = []

    def __call__(self, session_id: str | None = None, *, token: str | None = None,
                 expect_ack: bool = True, **kwargs) -> BokehWS:
        if token is None and "subprotocols" not in kwargs:
            token = make_token(session_id)
        client = BokehWS.connect(self.server, APP_PATH, token=token, **kwargs)
        self.opened.append(client)
        if expect_ack:
            first = client.recv_message()
            assert first.msgtype == "ACK", f"first message was {first.header}, not ACK"
        return client

    def close_all(self) -> None:
        for client in self.opened:
            client.close()


@pytest.fixture
def connect(server):
    connector = _Connector(server)
    yield connector
    connector.close_all()


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def model_ids(reply: Message) -> dict[str, str]:
    """name -> id of the app's models, from a PULL-DOC-REPLY."""
    assert reply.msgtype == "PULL-DOC-REPLY", reply.header
    return {name: rep["id"] for name, rep in models_by_name(reply.content["doc"]).items()}


def assert_buffers_consistent(message: Message) -> None:
    """Every buffer the content refers to arrived, and no other."""
    assert len(message.buffers) == message.header.get("num_buffers", 0)
    ids = [buffer_id for buffer_id, _ in message.buffers]
    assert len(set(ids)) == len(ids), f"duplicate buffer ids in {message.header}"
    assert buffer_refs(message.content) == set(ids), (
        f"{message.msgtype}: content refers to {sorted(buffer_refs(message.content))}, "
        f"buffers sent were {ids}")


def events_of(messages, kind: str | None = None, model_id: str | None = None) -> list[dict]:
    found = []
    for message in messages:
        if message.msgtype != "PATCH-DOC":
            continue
        for event in message.content["events"]:
            if kind is not None and event.get("kind") != kind:
                continue
            if model_id is not None and event.get("model", {}).get("id") != model_id:
                continue
            found.append(event)
    return found


def model_changed(model_id: str, attr: str, new) -> dict:
    return {"kind": "ModelChanged", "model": {"id": model_id}, "attr": attr, "new": new}


def read_for(client: BokehWS, seconds: float) -> list[Message]:
    """Every message that arrives within ``seconds`` (the app ticks every 50 ms)."""
    messages = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            messages.append(client.recv_message(remaining))
        except websocket.WebSocketTimeoutException:
            break
    return messages


def assert_fresh_session_works(server) -> None:
    with BokehWS.connect(server, APP_PATH) as client:
        assert client.recv_message().msgtype == "ACK"
        reply = client.pull()
        assert "slider" in model_ids(reply)


def assert_logged(server, pattern: str, since: int) -> None:
    server.wait_for_output(pattern, timeout=5, since=since)


def header(msgtype: str, **extra) -> str:
    return json.dumps({"msgid": f"raw-{msgtype}", "msgtype": msgtype, **extra})


# ---------------------------------------------------------------------------
# good input
# ---------------------------------------------------------------------------

def test_ack_first_then_pull_doc_reply_with_inline_arrays(connect):
    client = connect()  # checks that ACK is the first message
    msgid = client.send_message("PULL-DOC-REQ", {})
    reply, _ = client.recv_reply(msgid)
    assert reply.msgtype == "PULL-DOC-REPLY"
    assert reply.reqid == msgid
    # arrays as binary buffers where BokehJS keeps a re-pull's buffers (3.10 on), else inline (bokeh#15347)
    if "bokeh_flask" in server_command() and not REPULL_KEEPS_BUFFERS:
        assert not reply.buffers and "num_buffers" not in reply.header
    else:
        assert reply.buffers and reply.header["num_buffers"] == len(reply.buffers)
    models = models_by_name(reply.content["doc"])
    assert {"slider", "echo", "boom", "ticker", "lost", "source"} <= set(models)
    data = map_entries(models["source"]["attributes"]["data"])
    x = decode_ndarray(data["x"], reply.buffer_map)
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x, np.arange(N, dtype="float64"))


def test_server_info(connect):
    client = connect()
    msgid = client.send_message("SERVER-INFO-REQ", {})
    reply, _ = client.recv_reply(msgid)
    assert reply.msgtype == "SERVER-INFO-REPLY"
    info = reply.content["version_info"]
    assert info["bokeh"] == bokeh.__version__
    assert info["server"] == bokeh.__version__


def test_push_doc_then_pull_sees_pushed_document(connect):
    session_id = new_session_id()
    pusher = connect(session_id)
    document = Document()
    document.add_root(Div(text="pushed by the client", name="pushed"))
    push = Protocol().create("PUSH-DOC", document)
    msgid = pusher.send_message("PUSH-DOC", json.loads(push.content_json),
                                [(b.ref["id"], b.to_bytes()) for b in push.buffers])
    reply, _ = pusher.recv_reply(msgid)
    assert reply.msgtype == "OK", reply.content

    for client in (pusher, connect(session_id)):
        models = models_by_name(client.pull().content["doc"])
        assert set(models) == {"pushed"}
        assert models["pushed"]["attributes"]["text"] == "pushed by the client"


def test_patch_doc_ok_callback_result_and_no_echo(connect):
    session_id = new_session_id()
    sender = connect(session_id)
    other = connect(session_id)
    ids = model_ids(sender.pull())
    other.pull()

    msgid = sender.send_message("PATCH-DOC", {"events": [model_changed(ids["slider"], "value", 42)]})
    sender_seen: list[Message] = []
    ok, skipped = sender.recv_reply(msgid)
    sender_seen += skipped
    assert ok.msgtype == "OK", ok.content
    # the periodic callback ticks every 50 ms: reading a while longer would reveal a late echo
    sender_seen += read_for(sender, 0.3)

    echoed = events_of(sender_seen, "ModelChanged", ids["echo"])
    assert {"kind": "ModelChanged", "model": {"id": ids["echo"]}, "attr": "text", "new": "value=42"} in echoed, \
        "the change made by the Python callback must reach the client that caused it"
    assert events_of(sender_seen, model_id=ids["slider"]) == [], \
        "the client's own change must not be echoed back to it"

    other_seen, deadline = [], time.monotonic() + 5
    while time.monotonic() < deadline:
        other_seen.append(other.recv_message(deadline - time.monotonic()))
        slider = events_of(other_seen, "ModelChanged", ids["slider"])
        echo = [e for e in events_of(other_seen, "ModelChanged", ids["echo"]) if e["new"] == "value=42"]
        if slider and echo:
            break
    assert slider == [model_changed(ids["slider"], "value", 42)], \
        "another connection on the session must receive the client's change"
    assert echo


def _exchange(client: BokehWS, slider_id: str, count: int, tag: int) -> dict:
    """Send ``count`` mixed requests from a thread while reading everything that comes back."""
    sent: list[str] = []
    lock = threading.Lock()

    def send_all() -> None:
        for i in range(count):
            kind = i % 4
            if kind == 0:
                msgid = client.send_message("PULL-DOC-REQ", {})
            elif kind == 1:
                msgid = client.send_message("SERVER-INFO-REQ", {})
            else:
                event = model_changed(slider_id, "value", 100 + 2 * i + tag)
                msgid = client.send_message("PATCH-DOC", {"events": [event]})
            with lock:
                sent.append(msgid)
            time.sleep(0.004)  # spread the requests over the periodic callback's ticks

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    replies: dict[str, str] = {}
    seen_msgids: set[str] = set()
    patches_with_buffers = 0
    deadline = time.monotonic() + 20
    while len(replies) < count:
        message = client.recv_message(max(deadline - time.monotonic(), 0.01))  # checks framing
        assert message.header["msgid"] not in seen_msgids, f"msgid reused: {message.header}"
        seen_msgids.add(message.header["msgid"])
        assert_buffers_consistent(message)
        if message.reqid is not None:
            assert message.reqid not in replies, f"second reply to {message.reqid}"
            assert message.msgtype in ("OK", "PULL-DOC-REPLY", "SERVER-INFO-REPLY"), message.content
            replies[message.reqid] = message.msgtype
        elif message.msgtype == "PATCH-DOC" and message.buffers:
            patches_with_buffers += 1
    sender.join(timeout=10)
    with lock:
        assert set(replies) == set(sent)
    return {"patches_with_buffers": patches_with_buffers, "replies": replies}


def test_frames_never_interleave_under_load(connect):
    """Two connections on one session send requests while the app streams patches;
    every message read is well framed, its buffers match its content, each request
    gets exactly one reply."""
    session_id = new_session_id()
    clients = [connect(session_id), connect(session_id)]
    ids = model_ids(clients[0].pull())
    clients[1].pull()
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            results[n] = _exchange(clients[n], ids["slider"], 120, n)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    assert len(results) == 2, "an exchange did not finish"
    for result in results.values():
        assert result["patches_with_buffers"] > 0, "the periodic callback's patches should have raced the replies"
    # keep-alive pings (every 200 ms) arrive between messages and are answered
    more = read_for(clients[0], 0.3)
    assert all(m.msgtype == "PATCH-DOC" for m in more)
    assert clients[0].pings > 0, "no keep-alive ping was received"


@pytest.mark.parametrize("kind", ["ColumnDataChanged", "ModelChanged"])
def test_patch_doc_with_binary_buffers_is_accepted(connect, kind):
    session_id = new_session_id()
    sender = connect(session_id)
    watcher = connect(session_id)
    ids = model_ids(sender.pull())
    watcher.pull()

    x = np.linspace(-1.0, 1.0, N)
    y = np.arange(N, dtype="float64") * 3
    if kind == "ColumnDataChanged":
        event = {"kind": "ColumnDataChanged", "model": {"id": ids["source"]}, "attr": "data",
                 "data": {"type": "map", "entries": [["x", ndarray_rep("bx", "float64", [N])]]},
                 "cols": ["x"]}
        buffers = [("bx", x.tobytes())]
    else:
        event = model_changed(ids["source"], "data", {"type": "map", "entries": [
            ["x", ndarray_rep("bx", "float64", [N])], ["y", ndarray_rep("by", "float64", [N])]]})
        buffers = [("bx", x.tobytes()), ("by", y.tobytes())]
    msgid = sender.send_message("PATCH-DOC", {"events": [event]}, buffers)
    reply, _ = sender.recv_reply(msgid)
    assert reply.msgtype == "OK", reply.content

    # the other connection receives the new column, with its bytes in a buffer
    # (as a ModelChanged of ``data`` or a ColumnDataChanged: either is fine)
    found, deadline = None, time.monotonic() + 5
    while found is None and (remaining := deadline - time.monotonic()) > 0:
        message = watcher.recv_message(remaining)
        for ev in events_of([message], model_id=ids["source"]):
            entries = map_entries(ev["data"] if ev["kind"] == "ColumnDataChanged" else ev["new"])
            if "x" in entries:
                found = decode_ndarray(entries["x"], message.buffer_map)
    assert found is not None, f"the {kind} did not reach the other connection"
    np.testing.assert_array_equal(found, x)

    pulled = sender.pull()
    data = map_entries(models_by_name(pulled.content["doc"])["source"]["attributes"]["data"])
    np.testing.assert_array_equal(decode_ndarray(data["x"], pulled.buffer_map), x)


def test_message_just_under_the_size_limit_is_accepted(connect):
    client = connect()
    reply = client.request("PULL-DOC-REQ", {"padding": "x" * (MAX_MESSAGE - 1000)})
    assert reply.msgtype == "PULL-DOC-REPLY"


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------

PATCH_WITH_ONE_BUFFER = [header("PATCH-DOC", num_buffers=1), "{}", json.dumps({"events": []})]

BAD_INPUT = {
    "header-not-json": ["{not json", "{}", "{}"],
    "header-without-msgtype": [json.dumps({"msgid": "m1"}), "{}", "{}"],
    "content-not-json": [header("PULL-DOC-REQ"), "{}", "this is not JSON"],
    "binary-frame-for-header": [b"\x00\x01\x02\x03"],
    "binary-frame-for-metadata": [header("PULL-DOC-REQ"), b"{}"],
    "unknown-msgtype": [header("NOT-A-MESSAGE-TYPE"), "{}", "{}"],
    "client-sends-ACK": [header("ACK"), "{}", "{}"],
    "client-sends-OK": [header("OK", reqid="nothing"), "{}", "{}"],
    "client-sends-PULL-DOC-REPLY": [header("PULL-DOC-REPLY", reqid="nothing"), "{}", json.dumps({"doc": {}})],
    "bad-buffer-header": [*PATCH_WITH_ONE_BUFFER, json.dumps({"bogus": "b1"}), b"\x00" * 8],
    "text-frame-for-buffer-payload": [*PATCH_WITH_ONE_BUFFER, json.dumps({"id": "b1"}), "not binary"],
}


@pytest.mark.parametrize("frames", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_protocol_violation_closes_1002(server, connect, frames):
    mark = server.mark()
    client = connect()
    try:
        for frame in frames:
            client.send_raw(frame)
    except (OSError, websocket.WebSocketException):
        pass  # the server may already have closed after an earlier frame
    closed = client.wait_closed()
    assert closed.valid, closed
    assert closed.code in VALID_CLOSE_CODES
    assert closed.code == 1002, closed
    assert_logged(server, r"WARNING .*1002", mark)
    assert_fresh_session_works(server)


def frame_header(opcode: int, length: int, fin: bool = True) -> bytes:
    """A masked client frame header declaring ``length`` payload bytes (the mask key follows)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = bytes([first, 0x80 | length])
    elif length < 1 << 16:
        head = bytes([first, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + length.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00"


@pytest.mark.parametrize("frames", [
    [frame_header(1, 2 ** 40)],  # a terabyte, and nothing after the header
    [frame_header(2, 2 ** 63 - 1)],  # the largest length a frame can declare
    [frame_header(1, MAX_MESSAGE + 1)],  # one byte over
    [frame_header(1, 10, fin=False) + b" " * 10, frame_header(0, MAX_MESSAGE - 5, fin=False)],  # over in fragments
], ids=["1TB", "2**63-1", "max+1", "fragments"])
def test_oversize_frame_header_closes_1009_at_once(server, connect, frames):
    """The declared length is enough: the server does not wait for a payload it would refuse."""
    mark = server.mark()
    client = connect()
    started = time.monotonic()
    for data in frames:
        client.ws.sock.sendall(data)
    closed = client.wait_closed(timeout=5)
    assert closed.code == 1009, closed
    assert time.monotonic() - started < 1.0
    assert_logged(server, r"WARNING .*1009", mark)
    assert_fresh_session_works(server)


def test_message_over_size_limit_closes_1009(server, connect):
    mark = server.mark()
    client = connect()
    client.send_raw(header("PULL-DOC-REQ"))
    client.send_raw("{}")
    try:
        client.send_raw(json.dumps({"padding": "x" * (MAX_MESSAGE + 1000)}))
    except (OSError, websocket.WebSocketException):
        pass  # the server may close while the frame is still being written
    closed = client.wait_closed()
    assert closed.valid, closed
    assert closed.code == 1009, closed
    assert_logged(server, r"WARNING .*1009", mark)
    assert_fresh_session_works(server)


def _assert_error_reply(reply: Message, msgid: str, *needles: str) -> None:
    assert reply.msgtype == "ERROR", reply.header
    assert reply.reqid == msgid
    text = reply.content["text"]
    for needle in needles:
        assert needle in text, f"{needle!r} not in ERROR text {text!r}"
    assert reply.content.get("traceback") is None, "ERROR replies must not carry a traceback"


def test_patch_doc_naming_unknown_model_gets_error_reply(server, connect):
    mark = server.mark()
    client = connect()
    ids = model_ids(client.pull())
    msgid = client.send_message("PATCH-DOC", {"events": [model_changed("no-such-model-id", "text", "x")]})
    reply, _ = client.recv_reply(msgid)
    _assert_error_reply(reply, msgid, "no-such-model-id")
    assert_logged(server, r"WARNING .*PATCH-DOC", mark)

    # the connection is still usable
    assert model_ids(client.pull())["slider"] == ids["slider"]
    ok = client.request("PATCH-DOC", {"events": [model_changed(ids["slider"], "value", 7)]})
    assert ok.msgtype == "OK"
    assert_fresh_session_works(server)


def test_python_callback_raising_gets_error_reply_and_connection_stays_open(server, connect):
    mark = server.mark()
    session_id = new_session_id()
    client = connect(session_id)
    ids = model_ids(client.pull())
    bystander = connect()  # another session
    bystander.pull()

    click = {"kind": "MessageSent", "msg_type": "bokeh_event", "msg_data": {
        "type": "event", "name": "button_click",
        "values": {"type": "map", "entries": [["model", {"id": ids["boom"]}]]}}}
    msgid = client.send_message("PATCH-DOC", {"events": [click]})
    reply, _ = client.recv_reply(msgid)
    _assert_error_reply(reply, msgid, "RuntimeError", "boom button callback failed on purpose")
    assert_logged(server, r"WARNING .*boom button callback failed on purpose", mark)

    # same connection: still served, other callbacks still run
    client.send_message("PATCH-DOC", {"events": [model_changed(ids["slider"], "value", 9)]})
    client.recv_until(lambda m: any(e.get("new") == "value=9"
                                              for e in events_of([m], "ModelChanged", ids["echo"])))
    assert client.pull().msgtype == "PULL-DOC-REPLY"
    # other sessions: unaffected
    assert bystander.pull().msgtype == "PULL-DOC-REPLY"
    assert_fresh_session_works(server)


def test_client_vanishing_mid_message(server, connect):
    session_id = new_session_id()
    leaver = connect(session_id)
    stayer = connect(session_id)
    ids = model_ids(stayer.pull())
    leaver.pull()

    mark = server.mark()
    leaver.send_raw(header("PATCH-DOC"))  # header only, then the TCP connection goes
    leaver.drop()

    # the app counts ConnectionLost events in the "lost" Div: the server detached the connection
    lost, _ = stayer.recv_until(lambda m: bool(events_of([m], "ModelChanged", ids["lost"])))
    assert events_of([lost], "ModelChanged", ids["lost"])[0]["new"] == "1"
    assert_logged(server, r"WebSocket connection closed", mark)
    assert stayer.pull().msgtype == "PULL-DOC-REPLY"
    assert_fresh_session_works(server)


def _http_over(sock, timeout: float = 3.0) -> bytes:
    """Send a plain HTTP request on ``sock``; what came back before EOF/reset/timeout."""
    received = b""
    try:
        sock.sendall(b"GET /protocol_app HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        sock.settimeout(timeout)
        while chunk := sock.recv(65536):
            received += chunk
    except OSError:
        pass  # reset / broken pipe / timeout: nothing more to read
    return received


TRAILING = "t" * 200_000  # more than one read of the server: part of it is still unread when it closes


@pytest.mark.parametrize("closer", ["server-1002", "server-1009", "client"])
def test_tcp_connection_ends_with_the_websocket(server, connect, closer):
    """After a websocket ends the server must close the TCP connection, not hand it
    back to the WSGI server's HTTP keep-alive loop (bokeh serve closes it).

    A server that gets this wrong parses whatever the client sent after the
    websocket ended as HTTP: bytes already in flight when it closed (logged by
    gevent's pywsgi as an invalid request from our port), or a new HTTP request,
    which it answers."""
    client = connect()
    local_port = client.ws.sock.getsockname()[1]
    mark = server.mark()
    if closer == "server-1002":
        # a protocol violation with more data right behind it, in one write (messages under the
        # size limit: a frame header over it would be refused first, with 1009)
        client.send_raw_batch([b"\x00", TRAILING[:60_000], TRAILING[:60_000]])
    elif closer == "server-1009":
        client.send_raw_batch([TRAILING])
    else:
        client.ws.send_close()  # websocket-client's default close frame (1000)
    try:
        closed = client.wait_closed()
    except ConnectionDropped:
        closed = None  # unread data makes the kernel answer with RST, which may eat the close frame
    if closed is not None:
        expected = {"server-1002": 1002, "server-1009": 1009, "client": 1000}[closer]
        assert closed.code == expected, closed
    # the websocket's greenlet has finished with the socket once this is logged
    assert_logged(server, r"WebSocket connection closed", mark)
    answer = _http_over(client.ws.sock) if client.ws.sock is not None else b""
    assert b"HTTP/" not in answer, (
        "the server answered an HTTP request sent on the TCP connection of a finished websocket: "
        f"{answer[:120]!r}")
    time.sleep(0.3)  # let the server's log catch up
    # gevent's pywsgi names the peer as ('127.0.0.1', port) when it fails to parse a
    # request, and a failed attempt to answer one ends in a BrokenPipeError traceback
    log = server.output()[mark:]
    as_http = [line for line in log.splitlines()
               if f"'127.0.0.1', {local_port})" in line or "pywsgi.py" in line]
    assert not as_http, f"the server read websocket bytes as an HTTP request:\n{log[-3000:]}"


# ---------------------------------------------------------------------------
# refusals before the upgrade
# ---------------------------------------------------------------------------

REFUSED_SUBPROTOCOLS = {
    "no-subprotocol": lambda: [],
    "only-bokeh": lambda: ["bokeh"],
    "first-not-bokeh": lambda: ["notbokeh", make_token()],
    "token-first": lambda: [make_token(), "bokeh"],
    "garbage-token": lambda: ["bokeh", "garbage"],
    "expired-token": lambda: ["bokeh", make_token(expiration=-10)],
}


@pytest.mark.parametrize("subprotocols", REFUSED_SUBPROTOCOLS.values(), ids=REFUSED_SUBPROTOCOLS.keys())
def test_refused_before_upgrade(server, connect, subprotocols):
    mark = server.mark()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(subprotocols=subprotocols(), expect_ack=False)
    assert refused.value.status_code == 403
    assert_logged(server, r"Refused websocket", mark)


def test_foreign_origin_refused_before_upgrade(server, connect):
    mark = server.mark()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(origin="http://evil.example.com", expect_ack=False)
    assert refused.value.status_code == 403
    assert_logged(server, r"--allow-websocket-origin=evil\.example\.com", mark)


def test_default_origin_allowlist_accepts_localhost(server, connect):
    client = connect(origin=server.browser_url)  # http://localhost:PORT
    assert client.pull().msgtype == "PULL-DOC-REPLY"
