"""One websocket client of one session: the bokeh protocol over a Transport.

:class:`ServerConnection` assembles incoming websocket messages into bokeh
messages with bokeh's ``Receiver``, answers PULL-DOC-REQ, PUSH-DOC, PATCH-DOC
and SERVER-INFO-REQ, and writes each outgoing bokeh message as one unit so two
messages never interleave on a socket. It knows nothing about sockets: a
:class:`Transport` does the writing, which makes it testable with a recording
transport.

Errors are split in two: input that breaks the protocol (bad JSON, a binary
frame where text is due, an unknown message type) closes this connection
with 1002; a well-formed request whose handling raised (an app callback that
raises, a patch naming an unknown model) gets an ``ERROR`` reply naming the
problem, without a traceback, and the connection stays open as in
``bokeh serve``.
"""
from __future__ import annotations

import contextlib
import enum
import json
import logging
import time
import traceback
import typing as t

from bokeh.protocol import Protocol
from bokeh.protocol.messages.error import error as ErrorMessage
from bokeh.protocol.receiver import Receiver

from .defaults import DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_WRITE_STALL_S
from .messages import Frame, message_frames
from .outbox import Outbox
from .ports import WebSocket
from .scheduling import run_sync
from .sessions import ServerSession
from .defaults import DEFAULT_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)


class CloseCode(enum.IntEnum):
    """RFC 6455 close codes this server uses (never bokeh's invalid 10000/10001)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011


class Transport(t.Protocol):
    """Writes to one websocket (from the connection's writer task, one call at a time)."""

    def send_frames(self, frames: t.Sequence[Frame]) -> None:
        """Write the websocket messages of one bokeh message, uninterrupted."""

    def ping(self, payload: bytes) -> None: ...

    def close(self, code: int, reason: str) -> None:
        """Send the close frame and end the connection."""

    def blocked_for(self) -> float:
        """Seconds the write in progress has made no progress (0 when none is)."""

    def abort(self) -> None:
        """End the connection at once, from any task: a write or read in progress fails."""


class ProtocolViolation(Exception):
    """The client broke the bokeh protocol; the connection must close with 1002."""

    close_code = CloseCode.PROTOCOL_ERROR


class MessageTooBig(ProtocolViolation):
    """One bokeh message (all its frames together) is over the size limit: close with 1009."""

    close_code = CloseCode.MESSAGE_TOO_BIG


#: most buffers one bokeh message may announce
MAX_BUFFERS = 10_000
#: longest error text sent to a client or logged for one failure
MAX_ERROR_TEXT = 300
#: a shutting-down server waits this long for a new connection's first request before closing it
SETTLE_SECONDS = 2.0
#: how long a connection that ends waits for its writer to send what is queued and the close frame
CLOSE_WAIT_SECONDS = 5.0


class ServerConnection:
    """The bokeh protocol between one session and one websocket client."""

    def __init__(self, session: ServerSession, transport: Transport,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, *,
                 max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
                 max_write_stall_seconds: float = DEFAULT_MAX_WRITE_STALL_S) -> None:
        self.session = session
        self._max_message_bytes = max_message_bytes
        self._frame_index = 0  # position of the next frame in the bokeh message being received
        self._frames_total = 0
        self._message_bytes = 0
        self.protocol = Protocol()
        self._transport = transport
        self._outbox = Outbox(session.scheduler, transport, max_bytes=max_queued_bytes,
                              max_stall_seconds=max_write_stall_seconds, on_write_error=self._write_failed)
        self._receiver = Receiver(self.protocol)
        self._handlers: dict[str, t.Callable[[t.Any], t.Any]] = {
            "PULL-DOC-REQ": lambda m: session.pull(m, self),
            "PUSH-DOC": lambda m: session.push(m, self),
            "PATCH-DOC": lambda m: session.patch(m, self),
            "SERVER-INFO-REQ": lambda m: self.protocol.create("SERVER-INFO-REPLY", m.header["msgid"]),
        }
        self.open = False
        self._ping_count = 0
        self.messages_handled = 0
        self._close_when_settled = False
        self.opened_at = time.monotonic()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the session and send ACK (bokeh clients require it first)."""
        self.open = True
        self.session.stats.connections_opened += 1
        self.session.subscribe(self)
        self.send_message(self.protocol.create("ACK"))

    def detach(self) -> None:
        """The socket is gone: stop receiving patches and tell the document."""
        if not self.open:
            return
        self.open = False
        self.session.stats.connections_closed += 1
        self.session.unsubscribe(self)
        try:
            self.session.notify_connection_lost()
        except Exception:
            log.exception("Error while notifying session %s of a lost connection", self.session.id)

    def serve(self, socket: WebSocket) -> None:
        """Send ACK, then handle what ``socket`` receives until the connection ends.

        Input that breaks the protocol closes the connection with its named code;
        an unexpected error closes it with 1011. Nothing escapes: the socket is
        released and the session told, whatever happened.
        """
        try:
            self.start()
            while True:
                fragment = socket.receive()
                if fragment is None:
                    return
                try:
                    self.receive(fragment)
                except ProtocolViolation as violation:
                    code = violation.close_code
                    log.warning("Closing a websocket of session %s with %d: %s", self.session.id, code, violation)
                    self.close(code, str(violation))
                    return
        except Exception as error:
            log.exception("Internal error on a websocket of session %s", self.session.id)
            with contextlib.suppress(Exception):
                self.close(CloseCode.INTERNAL_ERROR, f"internal server error: {type(error).__name__}")
        finally:
            self.detach()
            self._outbox.wait_written(CLOSE_WAIT_SECONDS)  # the close frame goes out before the socket is released
            socket.shutdown()
            log.info("WebSocket connection closed: %s", socket.close_description())

    # -- receiving ---------------------------------------------------------

    def receive(self, fragment: str | bytes) -> None:
        """Consume one websocket message; handle the bokeh message it completes.

        Raises :class:`ProtocolViolation` when the input breaks the protocol.
        """
        stats = self.session.stats
        stats.bytes_in += len(fragment)
        self._check_frame(fragment)
        try:
            message = run_sync(self._receiver.consume(fragment))
        except Exception as error:
            stats.protocol_errors += 1
            raise ProtocolViolation(_describe(error)) from error
        if message is not None:
            stats.messages_in += 1
            self.handle(message)

    def _check_frame(self, fragment: str | bytes) -> None:
        """What bokeh's Receiver leaves unchecked: header fields, buffer count, JSON objects, size."""
        if self._frame_index == self._frames_total:  # a new message starts with its header
            header = _json_object(fragment, "header")
            if not isinstance(header.get("msgid"), str) or not isinstance(header.get("msgtype"), str):
                raise ProtocolViolation("a message header needs string 'msgid' and 'msgtype' fields")
            buffers = header.get("num_buffers", 0)
            if isinstance(buffers, bool) or not isinstance(buffers, int) or not 0 <= buffers <= MAX_BUFFERS:
                raise ProtocolViolation(f"'num_buffers' must be a whole number from 0 to {MAX_BUFFERS}")
            self._frames_total = 3 + 2 * buffers
            self._frame_index = 0
            self._message_bytes = 0
        elif self._frame_index in (1, 2):
            _json_object(fragment, "metadata" if self._frame_index == 1 else "content")
        self._frame_index += 1
        self._message_bytes += len(fragment)
        if self._message_bytes > self._max_message_bytes:
            self.session.stats.protocol_errors += 1
            raise MessageTooBig(f"a message is over {self._max_message_bytes} bytes in all")

    def handle(self, message: t.Any) -> None:
        handler = self._handlers.get(message.msgtype)
        if handler is None:
            self.session.stats.protocol_errors += 1
            raise ProtocolViolation(f"a client may not send {message.msgtype} messages")
        started = time.monotonic()
        try:
            reply = handler(message)
            frames = message_frames(reply) if reply is not None else None  # an unwritable reply fails here
        except Exception as error:
            log.warning("Error handling %s for session %s: %s\n%s", message.msgtype, self.session.id,
                        _describe(error), "".join(traceback.format_tb(error.__traceback__)).rstrip())
            frames = message_frames(self.error(message, f"{message.msgtype} failed: {_describe(error)}"))
            self.session.stats.errors_replied += 1
        if frames is not None and self.open:
            self.send_frames(frames)
        if message.msgtype == "PATCH-DOC":
            self.session.stats.patches_handled += 1
            self.session.stats.patch_seconds += time.monotonic() - started
        self.messages_handled += 1
        if self._close_when_settled and self.open:
            self.close(CloseCode.GOING_AWAY, "server shutting down")

    # -- replies -----------------------------------------------------------

    def ok(self, message: t.Any) -> t.Any:
        return self.protocol.create("OK", message.header["msgid"])

    def error(self, message: t.Any, text: str) -> t.Any:
        """An ERROR reply that says what went wrong and carries no traceback."""
        header = ErrorMessage.create_header(request_id=message.header["msgid"])
        return ErrorMessage(header, {}, {"text": text, "traceback": None})

    # -- sending -----------------------------------------------------------

    def send_message(self, message: t.Any) -> None:
        self.send_frames(message_frames(message))

    def send_frames(self, frames: t.Sequence[Frame]) -> None:
        """Queue one bokeh message for this client; never blocks (see :mod:`.outbox`)."""
        if not self.open or not self._outbox.put(frames):
            return
        self.session.stats.messages_out += 1
        self.session.stats.bytes_out += sum(len(f) for f in frames)
        self._close_if_behind()

    def send_ping(self) -> None:
        self._ping_count += 1
        if self.open and self._outbox.put_ping(str(self._ping_count).encode("ascii")):
            self._close_if_behind()

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be written to this client."""
        return self._outbox.queued_bytes

    def _close_if_behind(self) -> None:
        reason = self._outbox.behind()
        if reason is None:
            return
        log.warning("Closing a websocket of session %s with %d: the client is not reading (%s); its session and "
                    "other clients go on. Raise --websocket-max-queue-size / --websocket-write-timeout for "
                    "clients this slow", self.session.id, CloseCode.POLICY_VIOLATION, reason)
        self.session.stats.slow_clients_closed += 1
        self.close(CloseCode.POLICY_VIOLATION, "client too slow: not reading its messages", discard_queued=True)
        # the close frame waits for the write in progress; a client that never reads again is cut off
        self.session.scheduler.call_later(self._outbox.max_stall_seconds, self._abort_unless_closed)

    def _abort_unless_closed(self) -> None:
        if not self._outbox.wait_written(0):
            log.info("A websocket of session %s did not take its close frame; dropping it", self.session.id)
            self._transport.abort()

    def _write_failed(self, error: BaseException) -> None:
        log.info("Could not write to a websocket of session %s (%s); dropping it", self.session.id, _describe(error))
        self.detach()
        with contextlib.suppress(Exception):
            self._transport.abort()

    def close_when_settled(self) -> None:
        """Close with 1001 now if settled, else right after the first reply.

        Settled: a message was answered, or the client sent none for
        :data:`SETTLE_SECONDS` (it is not a page still loading).
        """
        if self.messages_handled or time.monotonic() - self.opened_at >= SETTLE_SECONDS:
            self.close(CloseCode.GOING_AWAY, "server shutting down")
        else:
            self._close_when_settled = True

    def close(self, code: int, reason: str, *, discard_queued: bool = False) -> None:
        """Send the close frame after what is queued (or instead of it) and stop taking messages.

        Returns at once: the writer task sends the frame.
        """
        self._outbox.put_close(code, reason, discard_queued=discard_queued)
        self.detach()

    def wait_written(self, timeout: float) -> bool:
        """Wait until everything queued, close frame included, went to the transport."""
        return self._outbox.wait_written(timeout)


def _json_object(fragment: str | bytes, what: str) -> dict[str, t.Any]:
    """A text frame holding a JSON object, or a protocol violation."""
    if not isinstance(fragment, str):
        raise ProtocolViolation(f"expected a text frame for the {what}, got a binary one")
    if what != "header":
        if not fragment.lstrip().startswith("{"):  # the receiver parses it; only the shape is checked here
            raise ProtocolViolation(f"the {what} must be a JSON object")
        return {}
    try:
        value = json.loads(fragment)
    except ValueError as error:
        raise ProtocolViolation(f"the header is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise ProtocolViolation("the header must be a JSON object")
    return value


def _describe(error: BaseException) -> str:
    """One line, at most MAX_ERROR_TEXT characters, control characters escaped."""
    text = str(error)
    if isinstance(error, KeyError):
        text = f"unknown key {text}"
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    if len(text) > MAX_ERROR_TEXT:
        text = text[:MAX_ERROR_TEXT] + "..."
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
