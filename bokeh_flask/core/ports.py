"""What the core asks of the layers above it, as small Protocols.

The core names web and runtime objects only through these, so its imports
point one way (runtime -> web -> core). The runtime provides them:
:class:`~bokeh_flask.runtime.transport.BokehWebSocket` is a :class:`WebSocket`,
:class:`~bokeh_flask.runtime.transport.SimpleWebSocketRuntime` a
:class:`Runtime`, :class:`~bokeh_flask.runtime.relay.WorkerRelay` a
:class:`Relay`. A WSGI ``environ`` passes through them untouched.
"""
from __future__ import annotations

import typing as t

from .messages import Frame
from .scheduling import Scheduler

Environ = t.Dict[str, t.Any]


class WebSocket(t.Protocol):
    """One accepted server websocket (it is also the connection's ``Transport``)."""

    #: which server the socket came from ("gevent", "gunicorn", "werkzeug"): the
    #: web layer answers the WSGI server accordingly once the socket is taken over
    mode: str

    def receive(self) -> Frame | None:
        """The next complete websocket message, or ``None`` once the connection has ended."""

    def send_frames(self, frames: t.Sequence[Frame]) -> None: ...

    def ping(self, payload: bytes) -> None: ...

    def close(self, code: int, reason: str) -> None: ...

    def blocked_for(self) -> float: ...

    def abort(self) -> None: ...

    def shutdown(self) -> None:
        """Release the socket (after the connection ended)."""

    def close_description(self) -> str:
        """How the connection ended, for the log."""

    def serve(self, environ: Environ, run: t.Callable[[], None]) -> None:
        """Run ``run`` (the receive loop) for this socket: in a task of its own once the
        WSGI server has let go of the connection, else in the calling request."""


class Runtime(t.Protocol):
    """The concurrency and websocket implementation a registration of the apps runs on."""

    def make_scheduler(self) -> Scheduler: ...

    def accept_websocket(self, environ: Environ, max_message_size: int,
                         compression: tuple[int, int] | None = None) -> WebSocket:
        """Answer the upgrade request in ``environ`` (already checked) with a websocket;
        ``compression`` is (zlib level, memory level) for permessage-deflate, ``None`` for none."""


class SharedMetrics(t.Protocol):
    """Where the processes that serve the same apps (``--num-procs``) leave their metrics for each other."""

    def publish(self, snapshot: t.Mapping[str, t.Any]) -> None:
        """Leave this process's snapshot (see :func:`bokeh_flask.core.metrics.snapshot`)."""

    def collect(self) -> list[dict[str, t.Any]]:
        """The latest snapshot of every live process, this one's included."""


class Relay(t.Protocol):
    """Hands a websocket to the worker process whose page request built its session."""

    #: this worker's process id, which tokens of sessions built here carry
    pid: int

    def target_of(self, payload: t.Mapping[str, t.Any]) -> int | None:
        """The other live worker a token payload names, if any."""

    def relay(self, environ: Environ, pid: int, session_id: str) -> bool:
        """Pass the upgrade request to worker ``pid``; True once that worker took it."""


if t.TYPE_CHECKING:  # kept with the class below, so edits above this line do not meet it
    from .store import DocumentChange


class ChangeFeed(t.Protocol):
    """Tells the processes serving published documents live of each other's writes
    (implementations in :mod:`bokeh_flask.runtime.feeds`)."""

    def publish(self, change: DocumentChange) -> None:
        """Announce ``change``, after it was written to the store by this process (never raises)."""

    def start(self, deliver: t.Callable[[DocumentChange], None],
              watched: t.Callable[[], t.Mapping[str, int]]) -> None:
        """Call ``deliver`` with each change made by another process, in its own thread or greenlet;
        ``watched()`` is ``{docid: version}`` of the documents this process serves live. A
        change with ``change=None`` means "compare versions with the store and reload"."""

    def stop(self) -> None:
        """End the delivery loop (promptly) and let go of connections."""
