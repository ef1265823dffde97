"""One document's websocket: bokeh protocol messages in, out, and the replies waited for.

A :class:`DocumentConnection` wraps any object with simple-websocket's ``send(data)``,
``receive(timeout)`` and ``close()`` (the real ``simple_websocket.Client``, or a
recording fake in tests). A reader thread assembles incoming frames with bokeh's
``Receiver``: ``ACK`` opens the connection, a message with a ``reqid`` is the reply
someone waits for, and a ``PATCH-DOC`` (another owner connection edited the stored
document) is applied to the attached document with the session as the setter, so the
change is not recorded to be sent back.

The attached document's own changes are recorded by a ``document.on_change``
callback and leave only when :meth:`DocumentConnection.send_changes` is called (the
session's next ``push()``): one PATCH-DOC for everything since the last push.
"""
from __future__ import annotations

import logging
import threading
import typing as t

from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent, DocumentPatchedEvent, ModelChangedEvent
from bokeh.protocol import Protocol
from bokeh.protocol.exceptions import MessageError, ProtocolError, ValidationError
from bokeh.protocol.receiver import Receiver

from ..core.messages import message_frames
from .errors import PublishError

__all__ = ["DocumentConnection", "compact_events", "consume"]

log = logging.getLogger(__name__)

#: how often the reader thread looks whether the connection was closed while it waited
POLL_SECONDS = 0.5


class WebSocketLike(t.Protocol):
    def send(self, data: str | bytes) -> None: ...

    def receive(self, timeout: float | None = None) -> str | bytes | None: ...

    def close(self, reason: int | None = None, message: str | None = None) -> None: ...


def consume(receiver: Receiver, fragment: str | bytes) -> t.Any:
    """``Receiver.consume`` without an event loop: it is ``async`` but never awaits."""
    coroutine = receiver.consume(fragment)
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("bokeh's Receiver.consume awaited something; this client cannot drive it")


def compact_events(events: t.Sequence[DocumentPatchedEvent]) -> list[DocumentPatchedEvent]:
    """The events of one push, fit to be sent together long after they happened.

    A ``ModelChangedEvent`` holds the value object, which later changes may have
    mutated in place (``source.stream`` appends to the very dict a ``source.data = ...``
    event holds): replayed in order, the streamed rows would arrive twice. So where a
    property was replaced whole (``ModelChanged`` or ``ColumnDataChanged``), all its
    events of the batch become one ``ModelChanged`` with its value now, in the place of
    its last event. Property changes of models no longer in the document are dropped.
    """
    document = events[0].document if events else None
    replaced = {(id(e.model), e.attr) for e in events if isinstance(e, (ModelChangedEvent, ColumnDataChangedEvent))}
    last: dict[tuple[int, str], int] = {}
    for i, event in enumerate(events):
        key = _property_key(event)
        if key in replaced:
            last[key] = i
    kept: list[DocumentPatchedEvent] = []
    for i, event in enumerate(events):
        key = _property_key(event)
        model = getattr(event, "model", None)
        if key is not None and document is not None and document.models.get_by_id(model.id) is None:
            continue  # a property change of a model gone from the document (a removed root is kept)
        if key in replaced:
            if last[key] == i:
                kept.append(ModelChangedEvent(event.document, model, key[1], getattr(model, key[1])))
            continue
        kept.append(event)
    return kept


def _property_key(event: DocumentPatchedEvent) -> tuple[int, str] | None:
    model, attr = getattr(event, "model", None), getattr(event, "attr", None)
    return (id(model), attr) if model is not None and isinstance(attr, str) else None


class DocumentConnection:
    """The bokeh protocol over one websocket to ``/bokeh/doc/<docid>/ws``."""

    def __init__(self, websocket: WebSocketLike, *, setter: t.Any, timeout: float = 10, url: str = "") -> None:
        self.websocket = websocket
        self.url = url
        self.timeout = timeout
        self._setter = setter
        self._protocol = Protocol()
        self._receiver = Receiver(self._protocol)
        self._send_lock = threading.Lock()
        self._condition = threading.Condition()
        self._acked = False
        self._closed: str | None = None  # why, once closed
        self._replies: dict[str, t.Any] = {}
        self._pulls: dict[str, Document] = {}
        self._document: Document | None = None
        self._pending: list[DocumentPatchedEvent] = []
        self._needs_push = False
        self._reader = threading.Thread(target=self._read, name=f"bokeh-flask client {url}", daemon=True)
        self._reader.start()

    # -- state ---------------------------------------------------------------------------------

    @property
    def document(self) -> Document | None:
        return self._document

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def wait_for_ack(self) -> None:
        """Wait for the server's ACK, which opens the connection.

        simple-websocket 1.1's ``Client`` takes only the first event of the data that came
        with the handshake's answer: an ACK sent in the same packet as the ``101`` stays
        inside wsproto until more data arrives. A SERVER-INFO-REQ makes the server send
        more (its reply is dropped), so the ACK comes out whichever way the packets fell.
        """
        self.send(self._protocol.create("SERVER-INFO-REQ"))
        with self._condition:
            if not self._condition.wait_for(lambda: self._acked or self._closed is not None, self.timeout):
                raise PublishError(None, f"The server sent no ACK on {self.url} within {self.timeout} s")
            if not self._acked:
                raise PublishError(None, f"The websocket {self.url} closed before the server's ACK ({self._closed})")

    def pending_events(self) -> list[DocumentPatchedEvent]:
        with self._condition:
            return list(self._pending)

    # -- documents -----------------------------------------------------------------------------

    def attach(self, document: Document | None) -> None:
        """Record ``document``'s changes from now on (and stop recording the one before)."""
        with self._condition:
            if self._document is not None and self._document is not document:
                self._document.remove_on_change(self._changed)
            if document is not None and document is not self._document:
                document.on_change(self._changed)
            self._document = document
            self._pending = []
            self._needs_push = False

    def _changed(self, event: t.Any) -> None:
        if not isinstance(event, DocumentPatchedEvent) or event.setter is self._setter:
            return
        with self._condition:
            if event.document is self._document:
                self._pending.append(event)

    def push_document(self, document: Document) -> None:
        """Store ``document`` whole (PUSH-DOC) and attach it."""
        message = self._protocol.create("PUSH-DOC", document)
        self.attach(document)  # changes made from here on go with the next push
        try:
            self.request(message, "push the document")
        except BaseException:
            with self._condition:
                self._needs_push = True
            raise

    def send_changes(self) -> int:
        """Send the attached document's changes since the last push as one PATCH-DOC; how many events went."""
        with self._condition:
            events, self._pending = self._pending, []
            needs_push = self._needs_push
        document = self._document
        if document is None:
            raise PublishError(None, "No document is attached to this connection: push one first")
        if needs_push:
            self.push_document(document)
            return len(events)
        events = compact_events(events)
        if not events:
            return 0
        message = self._protocol.create("PATCH-DOC", events)
        try:
            self.request(message, "send the document's changes")
        except BaseException:
            with self._condition:
                self._needs_push = True  # the server's copy may lack them: the next push sends it whole
            raise
        return len(events)

    def pull_document(self) -> Document:
        """A new document with the stored one's contents (PULL-DOC-REQ), attached in the reader thread
        at the moment its reply arrives, so no later PATCH-DOC from the server is missed."""
        document = Document()
        message = self._protocol.create("PULL-DOC-REQ")
        with self._condition:
            self._pulls[message.header["msgid"]] = document
        try:
            self.request(message, "pull the document")
        finally:
            with self._condition:
                self._pulls.pop(message.header["msgid"], None)
        return document

    # -- messages ------------------------------------------------------------------------------

    def send(self, message: t.Any) -> None:
        """The frames of ``message`` in order, as bokeh's ``Message.send`` writes them."""
        frames = message_frames(message)
        with self._send_lock:
            if self._closed is not None:
                raise PublishError(None, f"The websocket {self.url} is closed ({self._closed}): push again to reconnect")
            for frame in frames:
                self.websocket.send(frame)

    def request(self, message: t.Any, what: str) -> t.Any:
        """Send ``message`` and wait for its reply; an ERROR reply is a :class:`PublishError`."""
        msgid = message.header["msgid"]
        with self._condition:
            self._replies[msgid] = None
        try:
            self.send(message)
            with self._condition:
                if not self._condition.wait_for(lambda: self._replies.get(msgid) is not None
                                                or self._closed is not None, self.timeout):
                    raise PublishError(None, f"The server did not answer on {self.url} within {self.timeout} s "
                                             f"(trying to {what})")
                reply = self._replies.get(msgid)
                if reply is None:
                    raise PublishError(None, f"The websocket {self.url} closed before the server answered "
                                             f"(trying to {what}): {self._closed}")
        finally:
            with self._condition:
                self._replies.pop(msgid, None)
        if isinstance(reply, BaseException):
            raise PublishError(None, f"Could not {what}: {reply}") from reply
        if reply.header["msgtype"] == "ERROR":
            raise PublishError(None, f"The server refused to {what}: {reply.content.get('text', reply.content)}")
        return reply

    def close(self) -> None:
        self.attach(None)
        with self._condition:
            if self._closed is None:
                self._closed = "closed by the client"
            self._condition.notify_all()
        try:
            self.websocket.close()
        except Exception:  # already closed by the server: nothing left to do
            pass
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=2 * POLL_SECONDS)

    # -- the reader thread ---------------------------------------------------------------------

    def _read(self) -> None:
        why = "the server closed the connection"
        while self._closed is None:
            try:
                fragment = self.websocket.receive(timeout=POLL_SECONDS)
            except Exception as e:  # simple_websocket's ConnectionClosed, a broken socket
                why = f"the connection closed: {e}"
                break
            if fragment is None:
                if not getattr(self.websocket, "connected", True):
                    break
                continue
            try:
                message = consume(self._receiver, fragment)
                if message is not None:
                    self._dispatch(message)
            except (MessageError, ProtocolError, ValidationError) as e:
                log.warning("Dropping a malformed message from %s: %s", self.url, e)
                self._receiver = Receiver(self._protocol)
            except Exception:
                log.exception("Could not handle a message from %s", self.url)
        with self._condition:
            if self._closed is None:
                self._closed = why
            self._condition.notify_all()

    def _dispatch(self, message: t.Any) -> None:
        msgtype = message.header["msgtype"]
        reqid = message.header.get("reqid")
        if msgtype == "ACK":
            with self._condition:
                self._acked = True
                self._condition.notify_all()
        elif reqid is not None:
            with self._condition:
                pulled = self._pulls.get(reqid)
            if pulled is not None and msgtype == "PULL-DOC-REPLY":
                try:
                    message.push_to_document(pulled)
                except Exception as e:  # handed to the thread waiting for the reply
                    message = e
                else:
                    self.attach(pulled)
            with self._condition:
                if reqid in self._replies:
                    self._replies[reqid] = message
                    self._condition.notify_all()
        elif msgtype == "PATCH-DOC":
            document = self._document
            if document is not None:
                message.apply_to_document(document, self._setter)
        else:
            log.debug("Ignoring a %s message from %s", msgtype, self.url)
