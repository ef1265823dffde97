"""A small, synchronous client for the Bokeh server websocket protocol.

Written for the benchmark only: it speaks just enough of the protocol to
create sessions, pull documents, send model changes and receive the
server's patches.  One ``BokehConnection`` is meant to be used by a single
thread.

Wire format, as implemented here
--------------------------------
A Bokeh message is a sequence of websocket frames::

    text   header    {"msgid": ..., "msgtype": ..., "reqid"?: ..., "num_buffers"?: N}
    text   metadata  {}
    text   content   message-type specific JSON
    N times:
      text   buffer header  {"id": ...}
      binary buffer payload

The client opens ``ws://HOST:PORT/APP/ws`` with the websocket subprotocols
``["bokeh", <session token>]``; the server answers with an ``ACK`` message.
"""
from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import websocket

__all__ = [
    "BenchProtocolError",
    "BokehConnection",
    "HttpClient",
    "Message",
    "fetch_page_token",
    "find_model_id",
    "make_token",
    "open_session",
]

_MSG_COUNTER = itertools.count(1)
_MSG_PREFIX = os.urandom(3).hex()

_TOKEN_RE = re.compile(r'"token"\s*:\s*"([^"]+)"')


class BenchProtocolError(Exception):
    """Raised when the server answers something the client did not expect."""


def _next_msgid() -> str:
    return f"b{_MSG_PREFIX}{next(_MSG_COUNTER)}"


# --------------------------------------------------------------------------
# tokens
# --------------------------------------------------------------------------

def make_token(expiration: int = 3600) -> tuple[str, str]:
    """Return ``(session_id, token)`` for a brand new, unsigned session.

    Connecting with such a token makes the server create the session on
    websocket connect (no page request needed).
    """
    from bokeh.util.token import generate_jwt_token, generate_session_id

    session_id = generate_session_id()
    return session_id, generate_jwt_token(session_id, expiration=expiration)


def token_for_session(session_id: str, expiration: int = 3600) -> str:
    """An unsigned token that (re)attaches to ``session_id``."""
    from bokeh.util.token import generate_jwt_token

    return generate_jwt_token(session_id, expiration=expiration)


def session_id_from_token(token: str) -> str:
    body = token.split(".")[0]
    body += "=" * (-len(body) % 4)
    return json.loads(base64.urlsafe_b64decode(body))["session_id"]


def extract_token(html: str) -> str:
    match = _TOKEN_RE.search(html)
    if match is None:
        raise BenchProtocolError("no session token found in the app page")
    return match.group(1)


# --------------------------------------------------------------------------
# plain HTTP
# --------------------------------------------------------------------------

class HttpClient:
    """A keep-alive HTTP/1.1 client for one host; reconnects when needed."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request("GET", path, headers={"Accept": "text/html,*/*"})
                resp = self._conn.getresponse()
                body = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, body
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.BadStatusLine):
                # a stale keep-alive socket: retry once on a fresh connection
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def fetch_page_token(host: str, port: int, app: str, http: HttpClient | None = None) -> str:
    """GET the app page (which creates a session) and return its token."""
    own = http is None
    client = http or HttpClient(host, port)
    try:
        status, body = client.get(f"/{app}")
    finally:
        if own:
            client.close()
    if status != 200:
        raise BenchProtocolError(f"GET /{app} returned HTTP {status}")
    return extract_token(body.decode("utf-8", "replace"))


# --------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------

@dataclass
class Message:
    header: dict[str, Any]
    metadata_text: str
    content_text: str
    buffers: list[tuple[str, bytes]] = field(default_factory=list)
    received_at: float = 0.0    # time.perf_counter() when the last frame arrived
    received_wall: float = 0.0  # time.time() at the same moment
    _content: Any = None

    @property
    def msgtype(self) -> str:
        return self.header.get("msgtype", "")

    @property
    def reqid(self) -> str | None:
        return self.header.get("reqid")

    @property
    def content(self) -> Any:
        if self._content is None:
            self._content = json.loads(self.content_text)
        return self._content

    @property
    def nbytes(self) -> int:
        return (len(self.content_text) + len(self.metadata_text)
                + sum(len(b) for _, b in self.buffers))


def find_model_id(doc_json: Any, type_name: str, name: str | None = None) -> str:
    """Find the id of the first model of ``type_name`` in a document JSON."""
    stack = [doc_json]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "object" and node.get("name") == type_name and "id" in node:
                attrs = node.get("attributes") or {}
                if name is None or attrs.get("name") == name:
                    return node["id"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise BenchProtocolError(f"no {type_name} model found in the pulled document")


# --------------------------------------------------------------------------
# websocket connection
# --------------------------------------------------------------------------

class BokehConnection:
    """One websocket connection to one Bokeh session."""

    def __init__(self, host: str, port: int, app: str, token: str, timeout: float = 30.0) -> None:
        self.host, self.port, self.app, self.token = host, port, app, token
        self.timeout = timeout
        self.ws: websocket.WebSocket | None = None
        self.doc: Any = None
        self.skipped = 0  # messages received while waiting for something else

    @property
    def session_id(self) -> str:
        return session_id_from_token(self.token)

    # -- connection --------------------------------------------------------

    def connect(self) -> Message:
        """Open the websocket and wait for the server's ACK."""
        url = f"ws://{self.host}:{self.port}/{self.app}/ws"
        self.ws = websocket.create_connection(
            url,
            subprotocols=["bokeh", self.token],
            origin=f"http://{self.host}:{self.port}",
            timeout=self.timeout,
            skip_utf8_validation=True,
            enable_multithread=False,
        )
        msg = self.recv()
        if msg.msgtype != "ACK":
            raise BenchProtocolError(f"expected ACK, got {msg.msgtype}: {msg.content_text[:200]}")
        return msg

    def close(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                ws.close(timeout=1)
            except Exception:
                pass

    def abort(self) -> None:
        """Shut the socket down hard (safe to call from another thread)."""
        ws = self.ws
        if ws is not None and ws.sock is not None:
            try:
                ws.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def set_timeout(self, seconds: float | None) -> None:
        if self.ws is not None:
            self.ws.settimeout(seconds)

    # -- framing -----------------------------------------------------------

    def send(self, msgtype: str, content: Any, reqid: str | None = None) -> str:
        msgid = _next_msgid()
        header: dict[str, Any] = {"msgid": msgid, "msgtype": msgtype}
        if reqid is not None:
            header["reqid"] = reqid
        assert self.ws is not None
        self.ws.send(json.dumps(header))
        self.ws.send("{}")
        self.ws.send(json.dumps(content))
        return msgid

    def _recv_frame(self) -> str | bytes:
        assert self.ws is not None
        opcode, data = self.ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return data.decode("utf-8") if isinstance(data, bytes) else data
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return bytes(data)
        raise websocket.WebSocketConnectionClosedException("server closed the websocket")

    def _recv_text(self, what: str) -> str:
        frame = self._recv_frame()
        if not isinstance(frame, str):
            raise BenchProtocolError(f"expected a text frame ({what}), got binary")
        return frame

    def recv(self) -> Message:
        """Receive one complete Bokeh message (all its frames)."""
        header = json.loads(self._recv_text("header"))
        metadata = self._recv_text("metadata")
        content = self._recv_text("content")
        buffers = []
        for _ in range(int(header.get("num_buffers", 0) or 0)):
            ref = json.loads(self._recv_text("buffer header"))
            payload = self._recv_frame()
            if not isinstance(payload, bytes):
                raise BenchProtocolError("expected a binary buffer payload, got text")
            buffers.append((ref.get("id"), payload))
        msg = Message(header, metadata, content, buffers, time.perf_counter(), time.time())
        if msg.msgtype == "ERROR":
            raise BenchProtocolError(f"server ERROR: {content[:300]}")
        return msg

    def recv_until(self, predicate) -> Message:
        while True:
            msg = self.recv()
            if predicate(msg):
                return msg
            self.skipped += 1

    # -- protocol operations -------------------------------------------------

    def pull(self) -> Message:
        """PULL-DOC-REQ -> PULL-DOC-REPLY; stores the document JSON in ``self.doc``."""
        msgid = self.send("PULL-DOC-REQ", {})
        reply = self.recv_until(lambda m: m.reqid == msgid)
        if reply.msgtype != "PULL-DOC-REPLY":
            raise BenchProtocolError(f"expected PULL-DOC-REPLY, got {reply.msgtype}")
        self.doc = reply.content["doc"]
        return reply

    def patch_model(self, model_id: str, attr: str, value: Any) -> str:
        """Send a PATCH-DOC with a single ModelChanged event."""
        event = {"kind": "ModelChanged", "model": {"id": model_id}, "attr": attr, "new": value}
        return self.send("PATCH-DOC", {"events": [event]})


def open_session(host: str, port: int, app: str, token: str | None = None,
                 pull: bool = True, timeout: float = 30.0) -> BokehConnection:
    """Connect (creating the session if needed), wait for ACK, optionally pull."""
    if token is None:
        token = make_token()[1]
    conn = BokehConnection(host, port, app, token, timeout=timeout)
    try:
        conn.connect()
        if pull:
            conn.pull()
    except BaseException:
        conn.close()
        raise
    return conn


class SliderSession:
    """A session of ``apps/slider.py`` able to do slider round trips."""

    def __init__(self, conn: BokehConnection, start_value: int = 0) -> None:
        self.conn = conn
        if conn.doc is None:
            conn.pull()
        self.slider_id = find_model_id(conn.doc, "Slider")
        self.div_id = find_model_id(conn.doc, "Div")
        self.value = start_value

    def round_trip(self) -> float:
        """Change the slider value and wait for the Div update; return seconds."""
        self.value += 1
        expected = f"v={self.value}"
        div_id = self.div_id

        def is_result(msg: Message) -> bool:
            if msg.msgtype != "PATCH-DOC" or expected not in msg.content_text:
                return False
            for ev in msg.content.get("events", ()):
                if (ev.get("kind") == "ModelChanged" and ev.get("attr") == "text"
                        and (ev.get("model") or {}).get("id") == div_id and ev.get("new") == expected):
                    return True
            return False

        t0 = time.perf_counter()
        self.conn.patch_model(self.slider_id, "value", self.value)
        msg = self.conn.recv_until(is_result)
        return msg.received_at - t0

    def current_div_text(self) -> str | None:
        for root in self.conn.doc.get("roots", ()):
            if root.get("id") == self.div_id:
                return (root.get("attributes") or {}).get("text")
        return None

    def current_slider_value(self) -> Any:
        for root in self.conn.doc.get("roots", ()):
            if root.get("id") == self.slider_id:
                return (root.get("attributes") or {}).get("value")
        return None
