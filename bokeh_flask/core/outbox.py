"""What one websocket has still to receive, written by a task of its own.

A session sends a patch to each of its connections while it holds the
document lock. Writing to the socket there would make every other connection
of the session, its callbacks and its keep-alives wait for the slowest
reader: one viewer that stops reading would freeze them all (``bokeh serve``
does exactly that). So a connection's messages go into its :class:`Outbox`,
which never blocks the sender, and a writer task (started when there is
something to write, gone when there is not) hands them to the transport in
order. A connection that falls too far behind, by bytes waiting or by a write
that has made no progress for too long, is reported so it can be closed; the
session and its other connections go on at full speed.
"""
from __future__ import annotations

import collections
import logging
import typing as t

from .messages import Frame, frames_size
from .scheduling import Scheduler

log = logging.getLogger(__name__)


class Writer(t.Protocol):
    """The transport calls the outbox makes (see :class:`~bokeh_flask.core.connection.Transport`)."""

    def send_frames(self, frames: t.Sequence[Frame]) -> None: ...

    def ping(self, payload: bytes) -> None: ...

    def close(self, code: int, reason: str) -> None: ...

    def blocked_for(self) -> float:
        """Seconds the write in progress has made no progress (0 when none is)."""


class _Ping(t.NamedTuple):
    payload: bytes


class _Close(t.NamedTuple):
    code: int
    reason: str


_Item = t.Union[t.Sequence[Frame], _Ping, _Close]


class Outbox:
    """Messages waiting for one websocket, in order, and the task that writes them."""

    def __init__(self, scheduler: Scheduler, writer: Writer, *, max_bytes: int, max_stall_seconds: float,
                 on_write_error: t.Callable[[BaseException], None]) -> None:
        self._scheduler = scheduler
        self._writer = writer
        self.max_bytes = max_bytes
        self.max_stall_seconds = max_stall_seconds
        self._on_write_error = on_write_error
        self._items: collections.deque[tuple[_Item, int]] = collections.deque()
        self._lock = scheduler.lock()
        self._writing = False
        self._finished = scheduler.event()
        self._finished.set()
        #: bytes queued and not yet handed to the transport
        self.queued_bytes = 0
        #: no more messages are taken (a close was queued or the connection failed)
        self.closed = False

    def put(self, frames: t.Sequence[Frame]) -> bool:
        """Queue one bokeh message; False if the outbox no longer takes messages."""
        return self._put(frames, frames_size(frames))

    def put_ping(self, payload: bytes) -> bool:
        return self._put(_Ping(payload), len(payload))

    def put_close(self, code: int, reason: str, *, discard_queued: bool = False) -> None:
        """Queue the close frame (after what is queued, unless ``discard_queued``); take nothing more."""
        with self._lock:
            if self.closed:
                return
            if discard_queued:
                self._items.clear()
                self.queued_bytes = 0
            self._items.append((_Close(code, reason), 0))
            self.closed = True
            self._start_writer_locked()

    def behind(self) -> str | None:
        """Why this connection is too far behind to keep, or ``None`` while it keeps up."""
        if self.queued_bytes > self.max_bytes:
            return f"{self.queued_bytes} bytes are waiting (over {self.max_bytes})"
        stalled = self._writer.blocked_for()
        if stalled > self.max_stall_seconds:
            return f"a write has made no progress for {stalled:.1f} s (over {self.max_stall_seconds:g} s)"
        return None

    def wait_written(self, timeout: float) -> bool:
        """Wait until the writer task has nothing left to do; False if ``timeout`` passed first."""
        return bool(self._finished.wait(timeout))

    # -- the writer task -----------------------------------------------------

    def _put(self, item: _Item, size: int) -> bool:
        with self._lock:
            if self.closed:
                return False
            self._items.append((item, size))
            self.queued_bytes += size
            self._start_writer_locked()
        return True

    def _start_writer_locked(self) -> None:
        if not self._writing:
            self._writing = True
            self._finished.clear()
            self._scheduler.call_later(0, self._write_all)

    def _write_all(self) -> None:
        while True:
            with self._lock:
                if not self._items:
                    self._writing = False
                    self._finished.set()
                    return
                item, size = self._items.popleft()
                self.queued_bytes -= size
            try:
                if isinstance(item, _Ping):
                    self._writer.ping(item.payload)
                elif isinstance(item, _Close):
                    self._writer.close(item.code, item.reason)
                else:
                    self._writer.send_frames(item)
            except Exception as error:
                with self._lock:
                    self.closed = True
                    self._items.clear()
                    self.queued_bytes = 0
                    self._writing = False
                    self._finished.set()
                self._on_write_error(error)
                return
