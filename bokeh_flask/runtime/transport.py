"""A server websocket for bokeh sessions, built on flask-sock's simple-websocket.

simple-websocket gives the handshake for every WSGI server flask-sock supports
(gevent's pywsgi, gunicorn's gevent worker, werkzeug) and a reader thread
(a greenlet when gevent has patched ``threading``). This subclass changes what
a bokeh server needs changed:

* all writes go through one lock and ``sendall``, and the frames of one bokeh
  message leave in a single write (no interleaving, no partial sends, and no
  Nagle delay: ``TCP_NODELAY`` is set as well);
* permessage-deflate is negotiated only with ``--websocket-compression-level``
  (off by default, as in ``bokeh serve``), at that level and memory level, and
  what a client sends inflates to at most the message-size limit: a deflate
  bomb closes its connection with 1009 before it is expanded;
* the socket is read inline, not by a second reader thread: one greenlet
  (or thread) per connection instead of two. On gevent's servers the
  connection is taken away from the server (:meth:`BokehWebSocket.detach`),
  so the request ends and frees its memory, and that one greenlet is a fresh
  one with a shallow stack;
* once the handshake is done only the websocket state is kept (not the WSGI
  environ, nor wsproto's HTTP handshake machinery);
* ``close`` accepts the named close codes;
* a frame header that declares more than the message size limit (alone, or
  with the frames of the same message before it) closes the connection with
  1009 at once, before any of its payload is waited for.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
import typing as t
import zlib

import gevent
import gevent.monkey
from simple_websocket import ConnectionClosed, Server
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits

from ..core.defaults import DEFAULT_MAX_MESSAGE_BYTES
from ..core.messages import Frame
from ..core.ports import Environ
from ..core.scheduling import Scheduler, ThreadScheduler
from .greenlets import GeventScheduler
from .wsgi_server import plain_gevent_socket

log = logging.getLogger(__name__)

RECEIVE_BYTES = 64 * 1024
#: pieces of a message shorter than this are joined into one write (one packet for small messages)
COALESCE_BYTES = 64 * 1024
#: how long a closing connection waits for the client's half of the close
CLOSE_DRAIN_SECONDS = 2.0
GOING_AWAY = 1001


class _NoThread:
    """Stands in for simple-websocket's reader thread: ``receive`` reads inline instead."""

    name = "inline-reader"

    def __init__(self, target: t.Callable[[], None]) -> None:
        self.target = target

    def start(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass


class _MessageSizeLimit(Extension):  # type: ignore[misc]
    """Refuses a frame whose header takes its message over ``limit`` bytes (close code 1009).

    wsproto calls ``frame_inbound_header`` for every frame header it parses,
    before the payload arrives; returning a close reason makes it end the
    connection with that code. Installed on the frame decoder only: it is not
    an extension negotiated with the client and never touches outgoing frames.
    """

    name = "bokeh-flask-message-size-limit"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._message_bytes = 0

    def offer(self) -> bool:
        return False

    def frame_inbound_header(self, proto: t.Any, opcode: Opcode, rsv: RsvBits,
                             payload_length: int) -> CloseReason | RsvBits:
        if opcode.iscontrol():
            return RsvBits(False, False, False)
        if opcode is not Opcode.CONTINUATION:
            self._message_bytes = 0  # a new message starts
        self._message_bytes += payload_length
        if self._message_bytes > self.limit:
            return CloseReason.MESSAGE_TOO_BIG
        return RsvBits(False, False, False)


class BoundedDeflate(PerMessageDeflate):  # type: ignore[misc]
    """permessage-deflate at a chosen zlib level and memory level, inflating at most ``limit`` bytes a message."""

    def __init__(self, level: int, mem_level: int, limit: int) -> None:
        super().__init__()
        self.level, self.mem_level, self.limit = level, mem_level, limit
        self._inflated = 0

    def frame_inbound_header(self, proto: t.Any, opcode: Opcode, rsv: RsvBits,
                             payload_length: int) -> CloseReason | RsvBits:
        if not opcode.iscontrol() and opcode is not Opcode.CONTINUATION:
            self._inflated = 0  # a new message
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(self, proto: t.Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        try:
            out = self._decompressor.decompress(bytes(data), self.limit - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        return self._counted(out, more=bool(self._decompressor.unconsumed_tail))

    def frame_inbound_complete(self, proto: t.Any, fin: bool) -> bytes | CloseReason | None:
        result = super().frame_inbound_complete(proto, fin)
        return self._counted(result) if isinstance(result, bytes) else result

    def _counted(self, out: bytes, more: bool = False) -> bytes | CloseReason:
        self._inflated += len(out)
        if more or self._inflated > self.limit:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_outbound(self, proto: t.Any, opcode: Opcode, rsv: RsvBits, data: bytes,
                       fin: bool) -> tuple[RsvBits, bytes]:
        if self._compressor is None and self._compressible_opcode(opcode):
            self._compressor = zlib.compressobj(self.level, zlib.DEFLATED, -int(self.server_max_window_bits),
                                                self.mem_level)
        return super().frame_outbound(proto, opcode, rsv, data, fin)


class _AcceptingWith:
    """The handshake's connection, accepting with our extensions (simple-websocket would offer its own)."""

    def __init__(self, connection: t.Any, extensions: list[Extension]) -> None:
        self.wrapped = connection
        self._extensions = extensions

    def send(self, event: t.Any) -> bytes:
        if isinstance(event, AcceptConnection):
            event = AcceptConnection(subprotocol=event.subprotocol, extensions=self._extensions,
                                     extra_headers=event.extra_headers)
        return t.cast(bytes, self.wrapped.send(event))

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self.wrapped, name)


def plain_frame_pieces(frames: t.Sequence[Frame]) -> list[bytes]:
    """Server websocket frames (unmasked, final) for ``frames``: header, payload, header, payload ...

    What wsproto writes when no extension is in use, without its copy of each payload
    into a new ``header + payload`` string (3 MB twice over for a large pull).
    """
    pieces: list[bytes] = []
    for frame in frames:
        payload = frame.encode("utf-8") if isinstance(frame, str) else frame
        opcode = 0x1 if isinstance(frame, str) else 0x2
        size = len(payload)
        if size < 126:
            header = bytes((0x80 | opcode, size))
        elif size < 1 << 16:
            header = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
        pieces += (header, payload)
    return pieces


class _LockedSocket:
    """The socket a websocket writes through: every send writes all of ``data`` under the lock.

    It notes when the write in progress last moved, so a client that stopped
    reading can be told apart from a large message going out slowly.
    """

    def __init__(self, sock: socket.socket, lock: t.Any) -> None:
        self._sock = sock
        self._lock = lock
        #: when the write in progress last handed bytes to the kernel (None: no write in progress)
        self.progress_at: float | None = None

    def send(self, data: bytes) -> int:
        self.send_pieces([data])
        return len(data)

    def send_pieces(self, pieces: t.Sequence[bytes]) -> None:
        """Write ``pieces`` in order, uninterrupted: small ones together, large ones without a copy."""
        with self._lock:
            self.progress_at = time.monotonic()
            try:
                pending = bytearray()
                for piece in pieces:
                    if len(piece) < COALESCE_BYTES:
                        pending += piece
                        if len(pending) < COALESCE_BYTES:
                            continue
                        piece, pending = bytes(pending), bytearray()
                    elif pending:
                        self._write(bytes(pending))
                        pending = bytearray()
                    self._write(piece)
                if pending:
                    self._write(bytes(pending))
            finally:
                self.progress_at = None

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._sock.send(view):]
            self.progress_at = time.monotonic()

    def blocked_for(self) -> float:
        started = self.progress_at
        return 0.0 if started is None else time.monotonic() - started

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._sock, name)


class BokehWebSocket(Server):
    """simple-websocket's ``Server`` with atomic bokeh messages and named close codes."""

    def __init__(self, environ: dict[str, t.Any], *, max_message_size: int,
                 compression: tuple[int, int] | None = None) -> None:
        #: (zlib level, memory level) for permessage-deflate, or None to offer no extension
        self._compression = compression
        self._write_lock = threading.RLock()
        self._plain_frames = False
        self._raw_sock: socket.socket | None = None
        #: the close code this server sent, if it closed the connection
        self.sent_close_code: int | None = None
        super().__init__(environ, subprotocols=["bokeh"], max_message_size=max_message_size,
                         receive_bytes=RECEIVE_BYTES, thread_class=_NoThread)
        # the handshake is done: hold no reference to the request, which may end first
        self.environ = None

    def detach(self, environ: dict[str, t.Any]) -> bool:
        """Take the connection away from the WSGI server; True if it was taken.

        Then the view may return at once and leave the websocket to a greenlet
        of its own, and the request's memory (the environ, the server's
        per-connection handler and read buffer, the Flask request, the deep
        stack of the request's greenlet) is freed instead of being held for as
        long as the connection lasts: most of what a held websocket used to cost.

        The server is left a socket object without a descriptor: its next read
        fails and it ends the request quietly, and its close is a no-op. Under
        gunicorn the websocket then no longer counts towards
        ``worker_connections``, and a worker that shuts down closes it (1001)
        instead of waiting for it, like ``bokeh serve``. Only for gevent's
        servers (werkzeug runs on threads), and not over TLS: a socket object
        of our own on the descriptor would bypass the TLS layer.
        """
        if self.mode == "gevent":
            server_sock = _pywsgi_socket(environ)
        elif self.mode == "gunicorn":
            server_sock = environ.get("gunicorn.socket")
        else:
            return False
        if not plain_gevent_socket(server_sock):
            return False  # gunicorn's sync or gthread worker, or TLS
        with self._write_lock:
            # Keep the server's descriptor and close our dup() of it (pywsgi's
            # case): libev may still have that descriptor in its epoll set (it
            # unregisters lazily), and closing it while a dup() keeps the
            # connection open makes libev rebuild the whole set; nothing ever
            # waited on the dup.
            ours = self._raw_sock
            self.sock = type(server_sock)(fileno=server_sock.detach())
            if ours is not server_sock and ours is not None:
                ours.close()
        return True

    # Base.__init__ assigns ``self.sock``; wrap it before anything is written.
    @property  # type: ignore[override]
    def sock(self) -> t.Any:
        return self._locked_sock

    @sock.setter
    def sock(self, value: socket.socket) -> None:
        self._raw_sock = value
        try:
            value.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass  # not TCP (a unix socket): nothing to tune
        self._locked_sock = _LockedSocket(value, self._write_lock)

    def handshake(self) -> None:
        """Answer the upgrade request; permessage-deflate only if compression is configured."""
        lines = [b"GET / HTTP/1.1\r\n"]
        for key, value in self.environ.items():
            if key.startswith("HTTP_"):
                header = "-".join(p.capitalize() for p in key[5:].split("_"))
                lines.append(f"{header}: {value}\r\n".encode("latin-1"))
        lines.append(b"\r\n")
        extensions: list[Extension] = []
        if self._compression is not None:
            level, mem_level = self._compression
            extensions.append(BoundedDeflate(level, mem_level, self.max_message_size or DEFAULT_MAX_MESSAGE_BYTES))
        self.ws = _AcceptingWith(self.ws, extensions)
        try:
            self.ws.receive_data(b"".join(lines))
            self.connected = self._handle_events()
        finally:
            self.ws = self.ws.wrapped
        if self.ws.connection is not None:
            # After the handshake a WSConnection only passes calls on to its
            # Connection (the same send/receive_data/events/state); drop the
            # h11 machinery that did the handshake (~2.5 KiB per connection).
            self.ws = self.ws.connection
            #: no extension was negotiated: data frames are written here, without wsproto's copies
            self._plain_frames = not self.ws._proto.extensions
            if self.max_message_size:
                self.ws._proto._frame_decoder.extensions.append(_MessageSizeLimit(self.max_message_size))

    def receive(self, timeout: float | None = None) -> str | bytes:
        """The next complete websocket message; raises ``ConnectionClosed`` at the end."""
        while self.connected and not self.input_buffer:
            try:
                data = self._raw_sock.recv(self.receive_bytes) if self._raw_sock is not None else b""
            except OSError:
                data = b""
            if not data:
                self.connected = False
                break
            self.ws.receive_data(data)
            self.connected = self._handle_events()
        if self.input_buffer:
            return self.input_buffer.pop(0)
        raise ConnectionClosed(self.close_reason, self.close_message)

    def send_frames(self, frames: t.Sequence[Frame]) -> None:
        """Write the websocket messages of one bokeh message in one ``sendall``."""
        with self._write_lock:
            if not self.connected:
                raise ConnectionClosed(self.close_reason, self.close_message)
            if self._plain_frames:
                pieces = plain_frame_pieces(frames)
            else:  # an extension (permessage-deflate) transforms each frame: wsproto writes them
                pieces = [self.ws.send(BytesMessage(data=f) if isinstance(f, bytes) else TextMessage(data=f))
                          for f in frames]
            self._locked_sock.send_pieces(pieces)

    def ping(self, payload: bytes) -> None:
        with self._write_lock:
            if self.connected:
                self._locked_sock.send(self.ws.send(Ping(payload=payload)))

    def close_with(self, code: int, reason: str) -> None:
        """Send a close frame (if still open) and shut the write side.

        Called by the connection's writer; the reader reads the client's answer
        and ends (see :meth:`shutdown`). A client that does not answer within
        :data:`CLOSE_DRAIN_SECONDS` is cut off; a server going away (1001) does
        not wait for the answer at all.
        """
        with self._write_lock:
            if not self.connected:
                return
            self.connected = False
            self.sent_close_code = code
            try:
                self._locked_sock.send(self.ws.send(CloseConnection(code=code, reason=reason[:120])))
                if self._raw_sock is not None:
                    self._raw_sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if code == GOING_AWAY:
            self.abort()
        else:
            timer = threading.Timer(CLOSE_DRAIN_SECONDS, self.abort)
            timer.daemon = True
            timer.start()

    def _drain(self, seconds: float) -> None:
        """Read and drop incoming data until the client closes or ``seconds`` pass."""
        sock = self._raw_sock
        if sock is None:
            return
        deadline = time.monotonic() + seconds
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                if not sock.recv(RECEIVE_BYTES):
                    return
        except OSError:
            return

    def abort(self) -> None:
        """Shut the socket down now, from any task: a blocked write or read fails at once."""
        if self._raw_sock is not None:
            try:
                self._raw_sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def shutdown(self) -> None:
        """Release the socket once the connection has ended (the reader calls this last).

        After a close this server sent, what the client still sends is read and
        dropped for a moment first: closing with unread data makes the kernel
        answer with a reset, which can destroy the close frame in flight.
        """
        if self.sent_close_code not in (None, GOING_AWAY):
            self._drain(CLOSE_DRAIN_SECONDS)
        if self._raw_sock is not None:
            try:
                self._raw_sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._raw_sock.close()


def _pywsgi_socket(environ: dict[str, t.Any]) -> t.Any:
    """The socket pywsgi reads requests from (where simple-websocket finds it)."""
    return getattr(getattr(environ.get("wsgi.input"), "raw", None), "_sock", None)


class WebSocketTransport:
    """A :class:`BokehWebSocket` as the core sees a websocket (:class:`~bokeh_flask.core.ports.WebSocket`)."""

    def __init__(self, ws: BokehWebSocket) -> None:
        self.ws = ws
        self.mode: str = ws.mode

    def receive(self) -> Frame | None:
        try:
            return self.ws.receive()
        except ConnectionClosed:
            if self.ws.close_reason == CloseReason.MESSAGE_TOO_BIG or \
                    self.ws.incoming_message_len > self.ws.max_message_size:
                log.warning("Closed a websocket with 1009: a message was over %d bytes "
                            "(raise --websocket-max-message-size to allow it)", self.ws.max_message_size)
            return None

    def send_frames(self, frames: t.Sequence[Frame]) -> None:
        self.ws.send_frames(frames)

    def ping(self, payload: bytes) -> None:
        self.ws.ping(payload)

    def close(self, code: int, reason: str) -> None:
        self.ws.close_with(code, reason)

    def shutdown(self) -> None:
        self.ws.shutdown()

    def blocked_for(self) -> float:
        return self.ws.sock.blocked_for()

    def abort(self) -> None:
        self.ws.abort()

    def close_description(self) -> str:
        return f"code={self.ws.sent_close_code or self.ws.close_reason}"

    def serve(self, environ: Environ, run: t.Callable[[], None]) -> None:
        """On gevent's servers the request ends now and a fresh greenlet runs ``run``.

        A greenlet with a shallow stack serving a connection the server has let go
        of costs a fraction of the memory (see :meth:`BokehWebSocket.detach`). It is a
        raw greenlet: ``run`` logs its own errors.
        """
        if self.ws.detach(environ):
            gevent.spawn_raw(run)
        else:
            run()


class SimpleWebSocketRuntime:
    """The :class:`~bokeh_flask.core.ports.Runtime` of every bokeh-flask server.

    Websockets are :class:`BokehWebSocket`; timers run on gevent when it has
    patched ``threading`` (``bokeh-flask serve``, gunicorn's gevent workers), else
    on OS threads (``flask run``).
    """

    def make_scheduler(self) -> Scheduler:
        if gevent.monkey.is_module_patched("threading"):
            return GeventScheduler()
        return ThreadScheduler()

    def accept_websocket(self, environ: Environ, max_message_size: int,
                         compression: tuple[int, int] | None = None) -> WebSocketTransport:
        return WebSocketTransport(BokehWebSocket(environ, max_message_size=max_message_size,
                                                 compression=compression))
