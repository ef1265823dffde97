"""One live document and the connections that share it.

A :class:`ServerSession` owns a bokeh ``Document``, the lock every change to
it is made under, the connections subscribed to it and the timers of its
callbacks. Document events raised while the lock is held are collected and,
when the locked operation ends, sent as PATCH-DOC to every subscribed
connection, except that a client's own changes are not echoed back to it.
"""
from __future__ import annotations

import inspect
import logging
import sys
import typing as t

from bokeh.document import Document
from bokeh.events import ConnectionLost

from .callbacks import SessionCallbackRunner
from .curdoc import with_curdoc
from .messages import Frame, PatchBatch, pull_reply
from .metrics import AppStats
from .scheduling import Scheduler

log = logging.getLogger(__name__)

T = t.TypeVar("T")


class Subscriber(t.Protocol):
    """What a session needs of a connection (:class:`~bokeh_flask.core.connection.ServerConnection`)."""

    def send_frames(self, frames: t.Sequence[Frame]) -> None: ...

    def ok(self, message: t.Any) -> t.Any: ...


class ServerSession:
    """A document served to one or more websocket connections."""

    def __init__(self, session_id: str, document: Document, scheduler: Scheduler,
                 token: str | None = None, stats: AppStats | None = None) -> None:
        if not session_id:
            raise ValueError("a session needs a non-empty id")
        self.id = session_id
        self.token = token
        self.document = document
        self.stats = stats if stats is not None else AppStats()
        self._scheduler = scheduler
        self._lock = scheduler.lock()
        self._subscribers: set[Subscriber] = set()
        self._last_unsubscribe = scheduler.now()
        self._pending_events: list[t.Any] | None = None
        self._patch_origin: Subscriber | None = None
        self._expiration_blocks = 0
        #: a websocket has been attached at least once (an expired token may then reconnect)
        self.ever_connected = False
        self.destroyed = False
        self.expiration_requested = False
        self._callbacks = SessionCallbackRunner(scheduler, self._run_session_callback)
        document.callbacks.on_change_dispatch_to(self)
        for callback in document.session_callbacks:
            self._callbacks.add(callback)

    # -- bookkeeping --------------------------------------------------------

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler the session's callbacks, locks and connections' writers run on."""
        return self._scheduler

    @property
    def connection_count(self) -> int:
        return len(self._subscribers)

    @property
    def milliseconds_since_last_unsubscribe(self) -> float:
        return (self._scheduler.now() - self._last_unsubscribe) * 1000.0

    @property
    def expiration_blocked(self) -> bool:
        return self._expiration_blocks > 0

    @property
    def callback_count(self) -> int:
        return len(self._callbacks)

    def subscribe(self, connection: Subscriber) -> None:
        self._subscribers.add(connection)
        self.ever_connected = True

    def unsubscribe(self, connection: Subscriber) -> None:
        self._subscribers.discard(connection)
        self._last_unsubscribe = self._scheduler.now()

    def request_expiration(self) -> None:
        """Ask the cleanup job to discard this session as soon as it has no connection."""
        self.expiration_requested = True

    def is_unused(self, lifetime_ms: float) -> bool:
        if self.connection_count or self.expiration_blocked or self.destroyed:
            return False
        return self.expiration_requested or self.milliseconds_since_last_unsubscribe > lifetime_ms

    # -- running code against the document ----------------------------------

    def with_document_locked(self, func: t.Callable[..., T], *args: t.Any, **kwargs: t.Any) -> T | None:
        """Run ``func`` holding the document lock, then send the changes it made.

        An ``async def`` result is awaited (on a private asyncio loop) while the
        lock is still held, as bokeh does.
        """
        if self.destroyed:
            log.debug("Ignoring locked call on destroyed session %s", self.id)
            return None
        self._expiration_blocks += 1
        try:
            with self._lock:
                return self._locked(func, *args, **kwargs)
        finally:
            self._expiration_blocks -= 1

    def _locked(self, func: t.Callable[..., T], *args: t.Any, **kwargs: t.Any) -> T:
        self._pending_events = []
        try:
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = self._scheduler.finish(with_curdoc(self.document, result))
            return t.cast(T, result)
        finally:
            events, self._pending_events = self._pending_events, None
            origin, self._patch_origin = self._patch_origin, None
            if events and not self.destroyed:
                self._send_patches(events, origin)

    def _run_session_callback(self, callback: t.Callable[[], object]) -> object:
        started = self._scheduler.now()
        try:
            if getattr(callback, "nolock", False):
                result = callback()
                if inspect.isawaitable(result):
                    result = self._scheduler.finish(with_curdoc(self.document, result))
                return result
            return self.with_document_locked(callback)
        finally:
            self.stats.callbacks_run += 1
            self.stats.callback_seconds += self._scheduler.now() - started

    # -- bokeh's dispatch hooks (called by Document.callbacks) --------------

    def _document_patched(self, event: t.Any) -> None:
        if self._pending_events is not None:
            self._pending_events.append(event)
        elif not self._scheduler.in_loop_thread():
            # A change from another thread (bokeh's advice is add_next_tick_callback): it goes
            # out from the scheduler, under the lock, like every other change.
            log.debug("Document of session %s changed from another thread", self.id)
            self._scheduler.call_later(0, lambda: self.with_document_locked(self._record_event, event))
        else:
            # A change without the lock in the loop's own thread (a nolock callback): queued
            # for the clients at once rather than lost.
            log.debug("Document of session %s changed outside its lock", self.id)
            self._send_patches([event], None)

    def _record_event(self, event: t.Any) -> None:
        if self._pending_events is not None:
            self._pending_events.append(event)

    def _session_callback_added(self, event: t.Any) -> None:
        self._callbacks.add(event.callback)

    def _session_callback_removed(self, event: t.Any) -> None:
        self._callbacks.remove(event.callback)

    def _send_patches(self, events: list[t.Any], origin: Subscriber | None) -> None:
        if not self._subscribers:
            # whoever connects next pulls the whole document: its models need no definition in later patches
            self.document.models.flush_synced()
            return
        batch = PatchBatch(self.document)
        for connection in list(self._subscribers):
            if connection is origin:
                mine = [e for e in events if e.setter is not self]
            else:
                mine = events
            if mine:
                connection.send_frames(batch.frames_for(mine))
        batch.finish()

    # -- protocol requests ---------------------------------------------------

    def pull(self, message: t.Any, connection: Subscriber) -> t.Any:
        """PULL-DOC-REPLY: arrays as binary buffers with BokehJS 3.10 on, inline before (see ``pull_reply``)."""
        def reply() -> t.Any:
            message_reply = pull_reply(message.header["msgid"], self.document)
            message_reply.content_json  # serialised now, under the lock: a consistent snapshot (and errors here)
            return message_reply

        return self.with_document_locked(reply)

    def push(self, message: t.Any, connection: Subscriber) -> t.Any:
        def replace() -> t.Any:
            message.push_to_document(self.document)
            return connection.ok(message)

        return self.with_document_locked(replace)

    def patch(self, message: t.Any, connection: Subscriber) -> t.Any:
        def apply() -> t.Any:
            self._patch_origin = connection
            message.apply_to_document(self.document, self)
            return connection.ok(message)

        return self.with_document_locked(apply)

    def notify_connection_lost(self) -> None:
        """Tell the document (``ConnectionLost`` event) that a client went away.

        Scheduled rather than run here: a write that fails while the document
        lock is held reports the loss from inside the lock.
        """
        self._scheduler.call_later(0, self._trigger_connection_lost)

    def _trigger_connection_lost(self) -> None:
        if not self.destroyed:
            self.with_document_locked(self.document.callbacks.trigger_event, ConnectionLost())

    # -- teardown ------------------------------------------------------------

    def destroy(self) -> None:
        """Stop callbacks and release the document; idempotent."""
        if self.destroyed:
            return
        self.destroyed = True
        self._callbacks.remove_all()
        release_document(self.document, self)


def release_document(document: t.Any, session: object) -> None:
    """Free a document's models and per-session modules without a full GC.

    ``Document.destroy`` runs ``gc.collect()`` and a ``gc.get_referrers`` scan
    for every session, which stalls a server that reaps many sessions at once.
    This does the same unlinking and leaves the cycles to the collector.
    """
    document.remove_on_change(session)
    document.callbacks.destroy()
    document.models.destroy()
    modules = getattr(document.modules, "_modules", [])
    for module in modules:
        sys.modules.pop(module.__name__, None)
        module.__dict__.clear()
    modules.clear()
    for attr in ("_roots", "_theme", "_template"):
        if hasattr(document, attr):
            delattr(document, attr)
    document._session_context = None
