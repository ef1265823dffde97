"""A small raw client of the bokeh websocket protocol, for protocol tests.

It speaks the wire format directly (no ``bokeh.client``) so tests can send
both good and deliberately broken input and see exactly what comes back:

* :meth:`BokehWS.connect` opens ``ws://HOST:PORT/<app>/ws`` with the
  subprotocols ``["bokeh", token]`` (or any list a test wants), an optional
  ``Origin`` and extra headers. A refusal before the upgrade raises
  ``websocket.WebSocketBadStatusException`` (its ``status_code`` is the HTTP
  status).
* :meth:`BokehWS.send_message` sends one bokeh message (header, metadata,
  content, then a buffer header and a binary frame per buffer);
  :meth:`BokehWS.send_raw` sends one websocket message as is (``str`` as
  text, ``bytes`` as binary).
* :meth:`BokehWS.recv_message` reads one whole bokeh message and checks its
  framing on the way (text header/metadata/content, then exactly
  ``num_buffers`` pairs of text buffer header and binary payload); a broken
  framing raises :class:`FramingError`. When the server closes the socket it
  raises :class:`ServerClosed` carrying the close code, which also stays in
  :attr:`BokehWS.close_code`. websocket-client rejects a close frame whose code
  is not a valid RFC 6455 code (bokeh's 10000/10001) with a protocol error; that
  is turned into ``ServerClosed(code, valid=False)`` so a test can report it.
* :meth:`BokehWS.send_raw_batch` writes several websocket messages in one
  ``sendall``; :meth:`BokehWS.drop` ends the TCP connection without a close.

Frames are read one at a time with ``WebSocket.recv_frame`` (not
``recv_data_frame``, which loses the close frame when answering it fails on
a socket the server has already shut down); pings are answered and counted.
"""
from __future__ import annotations

import itertools
import json
import socket
import struct
import time
import typing as t
from urllib.parse import urlsplit

import websocket
from bokeh.util.token import generate_jwt_token, generate_session_id

DEFAULT_TIMEOUT = 10.0

#: Close codes an endpoint may send (1004-1006 and 1015 are reserved).
RFC6455_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

_ids = itertools.count(1)


class FramingError(AssertionError):
    """The server sent websocket messages that do not form bokeh messages."""


class ServerClosed(Exception):
    """The server closed the websocket (``code`` is None when no code was sent)."""

    def __init__(self, code: int | None, reason: str, valid: bool = True) -> None:
        super().__init__(f"server closed the websocket: code={code} reason={reason!r}"
                         + ("" if valid else " (not a valid RFC 6455 close code)"))
        self.code = code
        self.reason = reason
        self.valid = valid


class ConnectionDropped(Exception):
    """The TCP connection ended without a close frame."""


class Message(t.NamedTuple):
    """One received bokeh message."""

    header: dict[str, t.Any]
    metadata: dict[str, t.Any]
    content: dict[str, t.Any]
    buffers: list[tuple[str, bytes]]  # (buffer id, payload) in arrival order

    @property
    def msgtype(self) -> str:
        return self.header["msgtype"]

    @property
    def reqid(self) -> str | None:
        return self.header.get("reqid")

    @property
    def buffer_map(self) -> dict[str, bytes]:
        return dict(self.buffers)


def new_session_id() -> str:
    return generate_session_id()


def make_token(session_id: str | None = None, **kwargs: t.Any) -> str:
    """A token for ``session_id`` (a fresh id when None), unsigned like the default server."""
    return generate_jwt_token(session_id or generate_session_id(), **kwargs)


def ws_url(server: str, app_path: str) -> str:
    parts = urlsplit(str(server))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}/{app_path.strip('/')}/ws"


class BokehWS:
    """One raw websocket to a bokeh app."""

    def __init__(self, ws: websocket.WebSocket, token: str | None) -> None:
        self.ws = ws
        self.token = token
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = False
        self.pings = 0
        self.frames_received = 0
        self._partial: tuple[int, bytearray] | None = None

    @property
    def session_id(self) -> str:
        """The session id the token names."""
        from bokeh.util.token import get_session_id

        assert self.token is not None, "this connection was opened without a token"
        return get_session_id(self.token)

    # -- opening -------------------------------------------------------------

    @classmethod
    def connect(cls, server: str, app_path: str, *, token: str | None = None,
                session_id: str | None = None, subprotocols: t.Sequence[str] | None = None,
                origin: str | None = None, headers: t.Sequence[str] = (),
                timeout: float = DEFAULT_TIMEOUT, sslopt: dict[str, t.Any] | None = None,
                sockopt: t.Sequence[tuple[int, int, int]] = ()) -> BokehWS:
        """Open a websocket; ``subprotocols`` defaults to ``["bokeh", token]``.

        Without ``origin`` no ``Origin`` header is sent at all (websocket-client
        would otherwise invent one from the URL).
        """
        if subprotocols is None:
            token = token or make_token(session_id)
            subprotocols = ["bokeh", token]
        options: dict[str, t.Any] = {"timeout": timeout, "header": list(headers),
                                     "enable_multithread": True, "sockopt": tuple(sockopt)}
        if subprotocols:
            options["subprotocols"] = list(subprotocols)
        if sslopt is not None:
            options["sslopt"] = sslopt
        if origin is None:
            options["suppress_origin"] = True
        else:
            options["origin"] = origin
        ws = websocket.create_connection(ws_url(server, app_path), **options)
        return cls(ws, token)

    # -- sending -------------------------------------------------------------

    def send_raw(self, frame: str | bytes) -> None:
        """One websocket message: ``str`` goes as text, ``bytes`` as binary."""
        if isinstance(frame, bytes):
            self.ws.send_binary(frame)
        else:
            self.ws.send(frame)

    def send_raw_batch(self, frames: t.Sequence[str | bytes]) -> None:
        """Several websocket messages written to the socket in a single ``sendall``."""
        data = b""
        for frame in frames:
            if isinstance(frame, bytes):
                data += websocket.ABNF.create_frame(frame, websocket.ABNF.OPCODE_BINARY).format()
            else:
                data += websocket.ABNF.create_frame(frame, websocket.ABNF.OPCODE_TEXT).format()
        self.ws.sock.sendall(data)

    def send_message(self, msgtype: str, content: t.Any = None,
                     buffers: t.Sequence[tuple[str, bytes]] = (), *,
                     reqid: str | None = None, metadata: t.Any = None,
                     header_extra: t.Mapping[str, t.Any] | None = None) -> str:
        """Send one bokeh message; returns its ``msgid``."""
        msgid = f"c{next(_ids)}"
        header: dict[str, t.Any] = {"msgid": msgid, "msgtype": msgtype}
        if reqid is not None:
            header["reqid"] = reqid
        if buffers:
            header["num_buffers"] = len(buffers)
        header.update(header_extra or {})
        self.send_raw(json.dumps(header))
        self.send_raw(json.dumps(metadata if metadata is not None else {}))
        self.send_raw(json.dumps(content if content is not None else {}))
        for buffer_id, payload in buffers:
            self.send_raw(json.dumps({"id": buffer_id}))
            self.send_raw(bytes(payload))
        return msgid

    # -- receiving -----------------------------------------------------------

    def recv_frame(self, timeout: float = DEFAULT_TIMEOUT) -> str | bytes:
        """The next text or binary websocket message (pings are answered and skipped).

        Raises :class:`ServerClosed` on a close frame, ``websocket.WebSocketTimeoutException``
        on timeout and :class:`ConnectionDropped` when the TCP connection ends.
        Frames are read one by one (not with ``recv_data_frame``) so that a close
        frame is reported even when answering it fails because the server has
        already shut the socket down.
        """
        if self.closed:
            raise ServerClosed(self.close_code, self.close_reason or "", _valid_close_code(self.close_code))
        deadline = time.monotonic() + timeout
        abnf = websocket.ABNF
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise websocket.WebSocketTimeoutException(f"no websocket message within {timeout}s")
            self.ws.settimeout(remaining)
            try:
                frame = self.ws.recv_frame()
            except websocket.WebSocketProtocolException as error:
                # websocket-client refuses close frames with invalid codes
                # (e.g. bokeh's 10000/10001); keep the code for the test to see.
                text = str(error)
                if text.startswith("Invalid close opcode"):
                    self._closed(int(text.rsplit(" ", 1)[-1]), "", valid=False)
                    raise ServerClosed(self.close_code, "", valid=False) from None
                raise
            except websocket.WebSocketTimeoutException:
                raise
            except (websocket.WebSocketConnectionClosedException, OSError) as error:
                self.closed = True
                raise ConnectionDropped(f"connection ended without a close frame: {error!r}") from None
            if frame.opcode == abnf.OPCODE_CLOSE:
                data = frame.data or b""
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                self._closed(code, data[2:].decode("utf-8", "replace"))
                try:
                    self.ws.send_close()  # complete the close handshake if the socket allows
                except Exception:
                    pass
                raise ServerClosed(code, self.close_reason or "", _valid_close_code(code))
            if frame.opcode == abnf.OPCODE_PING:
                self.pings += 1
                try:
                    self.ws.pong(frame.data)
                except Exception:
                    pass
                continue
            if frame.opcode == abnf.OPCODE_PONG:
                continue
            if frame.opcode in (abnf.OPCODE_TEXT, abnf.OPCODE_BINARY):
                if self._partial is not None:
                    raise FramingError("a new websocket message started inside a fragmented one")
                self._partial = (frame.opcode, bytearray(frame.data))
            elif frame.opcode == abnf.OPCODE_CONT:
                if self._partial is None:
                    raise FramingError("a continuation frame without a message to continue")
                self._partial[1].extend(frame.data)
            if not frame.fin:
                continue
            opcode, payload = self._partial
            self._partial = None
            self.frames_received += 1
            if opcode == abnf.OPCODE_TEXT:
                return payload.decode("utf-8")
            return bytes(payload)

    def recv_message(self, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """Read one bokeh message, checking its framing (see :class:`FramingError`)."""
        header = self._json_frame(self.recv_frame(timeout), "header")
        for key in ("msgid", "msgtype"):
            if not isinstance(header.get(key), str):
                raise FramingError(f"header without a string {key!r}: {header!r}")
        num_buffers = header.get("num_buffers", 0)
        if not isinstance(num_buffers, int) or num_buffers < 0:
            raise FramingError(f"bad num_buffers in {header!r}")
        what = header["msgtype"]
        metadata = self._json_frame(self.recv_frame(timeout), f"metadata of {what}")
        content = self._json_frame(self.recv_frame(timeout), f"content of {what}")
        buffers: list[tuple[str, bytes]] = []
        for i in range(num_buffers):
            ref = self._json_frame(self.recv_frame(timeout), f"buffer header {i} of {what}")
            if set(ref) != {"id"}:
                raise FramingError(f"buffer header {i} of {what} is not {{'id': ...}}: {ref!r}")
            payload = self.recv_frame(timeout)
            if not isinstance(payload, bytes):
                raise FramingError(f"buffer {i} of {what}: expected a binary frame, got text {payload[:200]!r}")
            buffers.append((ref["id"], payload))
        return Message(header, metadata, content, buffers)

    @staticmethod
    def _json_frame(frame: str | bytes, what: str) -> dict[str, t.Any]:
        if not isinstance(frame, str):
            raise FramingError(f"{what}: expected a text frame, got {len(frame)} binary bytes")
        try:
            value = json.loads(frame)
        except ValueError:
            raise FramingError(f"{what}: not JSON: {frame[:200]!r}") from None
        if not isinstance(value, dict):
            raise FramingError(f"{what}: not a JSON object: {frame[:200]!r}")
        return value

    def recv_until(self, predicate: t.Callable[[Message], bool], timeout: float = DEFAULT_TIMEOUT,
                   ) -> tuple[Message, list[Message]]:
        """Read messages until one satisfies ``predicate``; returns it and those skipped."""
        deadline = time.monotonic() + timeout
        skipped: list[Message] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise websocket.WebSocketTimeoutException(
                    f"no matching message within {timeout}s; got {[m.msgtype for m in skipped]}")
            message = self.recv_message(remaining)
            if predicate(message):
                return message, skipped
            skipped.append(message)

    def recv_reply(self, msgid: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[Message, list[Message]]:
        """The reply to request ``msgid`` (and the messages that came before it)."""
        return self.recv_until(lambda m: m.reqid == msgid, timeout)

    def request(self, msgtype: str, content: t.Any = None,
                buffers: t.Sequence[tuple[str, bytes]] = (), timeout: float = DEFAULT_TIMEOUT) -> Message:
        """Send a request and return its reply (skipping unsolicited messages)."""
        msgid = self.send_message(msgtype, content, buffers)
        return self.recv_reply(msgid, timeout)[0]

    def pull(self, timeout: float = DEFAULT_TIMEOUT) -> Message:
        return self.request("PULL-DOC-REQ", {}, timeout=timeout)

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> ServerClosed:
        """Read (and drop) messages until the server closes; returns the close."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise websocket.WebSocketTimeoutException(f"server did not close within {timeout}s")
            try:
                self.recv_frame(remaining)
            except ServerClosed as closed:
                return closed

    # -- closing -------------------------------------------------------------

    def _closed(self, code: int | None, reason: str, valid: bool = True) -> None:
        self.closed = True
        self.close_code = code
        self.close_reason = reason

    def close(self) -> None:
        """A polite close (close frame 1000), ignoring errors."""
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass
        self.closed = True

    def drop(self) -> None:
        """Vanish: end the TCP connection without a close frame."""
        sock = self.ws.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.ws.shutdown()
        self.closed = True

    def __enter__(self) -> BokehWS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _valid_close_code(code: int | None) -> bool:
    """Whether ``code`` may be sent in a close frame (RFC 6455 section 7.4)."""
    if code is None:
        return True
    return code in RFC6455_SENDABLE_CODES or 3000 <= code < 5000


# -- reading documents ---------------------------------------------------------

def iter_objects(node: t.Any) -> t.Iterator[dict[str, t.Any]]:
    """Every ``{"type": "object", ...}`` model representation inside ``node``."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "id" in node:
            yield node
        for value in node.values():
            yield from iter_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from iter_objects(value)


def models_by_name(doc_json: t.Mapping[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    """Model representations in a serialised document, keyed by their ``name`` attribute."""
    found = {}
    for rep in iter_objects(doc_json.get("roots", [])):
        name = rep.get("attributes", {}).get("name")
        if name:
            found[name] = rep
    return found


def buffer_refs(node: t.Any) -> set[str]:
    """Ids of every ``{"type": "bytes", "data": {"id": ...}}`` buffer reference in ``node``."""
    refs: set[str] = set()
    if isinstance(node, dict):
        data = node.get("data")
        if node.get("type") == "bytes" and isinstance(data, dict) and set(data) == {"id"}:
            refs.add(data["id"])
        for value in node.values():
            refs |= buffer_refs(value)
    elif isinstance(node, list):
        for value in node:
            refs |= buffer_refs(value)
    return refs


def map_entries(rep: t.Any) -> dict[str, t.Any]:
    """``{"type": "map", "entries": [[k, v], ...]}`` (or a plain dict) as a dict."""
    if isinstance(rep, dict) and rep.get("type") == "map":
        return {k: v for k, v in rep.get("entries", [])}
    return dict(rep)


def ndarray_rep(buffer_id: str, dtype: str, shape: t.Sequence[int]) -> dict[str, t.Any]:
    """How a numpy array travels when its bytes go in buffer ``buffer_id``."""
    return {"type": "ndarray", "array": {"type": "bytes", "data": {"id": buffer_id}},
            "shape": list(shape), "dtype": dtype, "order": "little"}


def decode_ndarray(rep: t.Mapping[str, t.Any], buffers: t.Mapping[str, bytes]) -> t.Any:
    """A numpy array from its representation and the message's buffers."""
    import numpy as np

    array = rep["array"]
    if array.get("type") == "bytes" and isinstance(array.get("data"), dict):
        raw = buffers[array["data"]["id"]]
    elif array.get("type") == "bytes":  # inline base64; gzip-compressed since bokeh 3.7
        import base64
        import gzip
        raw = base64.b64decode(array["data"])
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    else:
        return np.asarray(array)
    return np.frombuffer(raw, dtype=rep["dtype"]).reshape(rep["shape"])
