"""A gunicorn gevent worker that starts and stops the bokeh apps it serves.

``gunicorn -k bokeh_flask.gunicorn_worker.GeventWorker -w N wsgi:app`` (what
``bokeh-flask serve --num-procs N`` runs) differs from ``-k gevent`` in what
happens around the requests:

* at boot, every BokehState of the process starts: ``on_server_loaded`` runs
  and the cleanup and keep-alive jobs begin, before the first request;
* when the worker stops, for whatever reason (SIGTERM, ``--max-requests``
  recycling, a lost master), it stops accepting at once, closes its
  websockets with 1001 so BokehJS reconnects to another worker (a page still
  loading gets its first reply first), waits for in-flight requests, then
  discards its sessions (``on_session_destroyed``) and runs
  ``on_server_unloaded``: all well inside gunicorn's graceful timeout;
* with several workers, pages default to lazy documents (built where the
  websocket lands), as with ``--num-procs``.

Plain ``-k gevent`` also works, but a stopping worker then waits out the
graceful timeout for in-flight requests and its websockets are not closed
with 1001.
"""
from __future__ import annotations

import functools
import logging
import queue
import signal
import time
import typing as t

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker

from ..core.state import ProcessInfo, live_states
from .publishing import share_feeds_with_siblings
from .relay import WorkerRelay, remove_if_empty, shared_relay_dir
from .shared_metrics import FileMetrics

log = logging.getLogger(__name__)

#: how often the worker checks whether it should stop (and tells the master it is alive)
POLL_SECONDS = 0.2
#: signals that stop a worker (gunicorn: SIGTERM graceful, SIGINT/SIGQUIT quick)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
#: the share of gunicorn's graceful timeout spent waiting for requests and pages to finish
QUIET_SHARE = 0.7


class GeventWorker(_GunicornGeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker plus the bokeh apps' start, drain and stop."""

    _early_stop: int | None = None
    _shared_relay_dir: str | None = None
    _metrics: FileMetrics | None = None

    def init_process(self) -> None:
        # Until gunicorn installs the worker's handlers (after patching, ~100 ms), a stop
        # signal would reach the master's handler this process inherited and be lost: the
        # master would then wait out the graceful timeout and kill the worker. Keep it, and
        # look for one that reached the inherited handler since the fork.
        inherited = signal.getsignal(signal.SIGTERM)
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._remember_stop)
        for sig in _queued_signals(inherited):
            if sig in _STOP_SIGNALS:
                self._early_stop = sig
        ProcessInfo.sibling_processes = max(1, int(self.cfg.workers))
        ProcessInfo.managed_worker = True
        self._log_through_gunicorn()
        super().init_process()

    def _log_through_gunicorn(self) -> None:
        """Under the ``gunicorn`` command nothing configures logging: write bokeh-flask's to gunicorn's error log."""
        ours = logging.getLogger("bokeh_flask")
        gunicorn_error = getattr(self.log, "error_log", None)
        if logging.getLogger().handlers or ours.handlers or gunicorn_error is None:
            return  # bokeh-flask serve (or the program) configured logging
        for handler in gunicorn_error.handlers:
            ours.addHandler(handler)
        ours.setLevel(gunicorn_error.level)
        ours.propagate = False

    def _remember_stop(self, sig: int, frame: t.Any) -> None:
        self._early_stop = sig

    def init_signals(self) -> None:
        super().init_signals()
        if self._early_stop is not None:
            log.info("Worker %d got signal %d while booting; stopping", self.pid, self._early_stop)
            self.alive = False

    def run(self) -> None:
        relay = self._start_relay()
        for state in live_states():
            state.start()
        servers = [self._listen(sock) for sock in self.sockets]
        log.info("Worker %d ready", self.pid)
        try:
            while self.alive:
                self.notify()
                gevent.sleep(POLL_SECONDS)
            log.info("Worker %d stopping: closing its websockets (1001)", self.pid)
            for server in servers:
                server.close()  # stop accepting before clients reconnect
            if relay is not None:
                relay.close_listener()  # and take no more websockets relayed by siblings
            for state in live_states():
                state.drain()
            self._wait_until_quiet(servers)
            for server in servers:
                server.stop(timeout=1)
        finally:
            for state in live_states():
                state.stop()
            if self._metrics is not None:
                self._metrics.remove()
            if relay is not None:
                self._stop_relay(relay)

    def _start_relay(self) -> WorkerRelay | None:
        """With siblings: serve websockets relayed by them, and relay to them (:mod:`.relay`).

        ``--num-procs`` gives the directory for the sockets; under the ``gunicorn``
        command the workers share one named after their master.
        """
        relay_dir = getattr(self.app, "relay_dir", None)
        if relay_dir is None and ProcessInfo.sibling_processes > 1:
            relay_dir = self._shared_relay_dir = shared_relay_dir(self.ppid)
        states = live_states()
        if not relay_dir or not states:
            return None
        self._metrics = FileMetrics(relay_dir)  # /metrics sums every worker's
        for state in states:
            state.shared_metrics = self._metrics
        relay = WorkerRelay(relay_dir, self.wsgi)
        if not relay.start():
            return None
        for state in states:
            state.relay = relay
        share_feeds_with_siblings(states, relay_dir)
        return relay

    def _stop_relay(self, relay: WorkerRelay) -> None:
        relay.stop()  # last: the websockets this worker passes on to its siblings
        if self._shared_relay_dir is not None:
            remove_if_empty(self._shared_relay_dir)

    def _listen(self, sock: t.Any) -> StreamServer:
        extra = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        sock.setblocking(1)
        server = StreamServer(sock, handle=functools.partial(self.handle, sock),
                              spawn=Pool(self.worker_connections), **extra)
        if self.cfg.workers > 1:
            server.max_accept = 1  # take one connection at a time, leaving the rest to siblings
        server.start()
        return server

    def _wait_until_quiet(self, servers: list[StreamServer]) -> None:
        """Until no request is in flight and no websocket is open, or most of the graceful timeout passed."""
        deadline = time.monotonic() + self.cfg.graceful_timeout * QUIET_SHARE
        while time.monotonic() < deadline:
            busy = any(server.pool.free_count() != server.pool.size for server in servers)
            if not busy and not any(state.connections for state in live_states()):
                return
            for state in live_states():
                state.drain()  # closes the connections that have settled since
            self.notify()
            gevent.sleep(POLL_SECONDS / 2)
        log.warning("Worker %d: requests or websockets still open after %.1f s; closing them",
                    self.pid, self.cfg.graceful_timeout * QUIET_SHARE)


def _queued_signals(handler: t.Any) -> list[int]:
    """The signals queued by the gunicorn master's handler (a copy of it, in a forked worker)."""
    pending = getattr(getattr(handler, "__self__", None), "SIG_QUEUE", None)
    if isinstance(pending, list):  # older gunicorn
        return list(pending)
    found = []
    while pending is not None:  # a queue.SimpleQueue in newer gunicorn
        try:
            found.append(pending.get_nowait())
        except (queue.Empty, AttributeError):
            break
    return found
