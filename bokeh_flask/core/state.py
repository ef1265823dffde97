"""The state one Flask app keeps for its bokeh applications, and its background jobs.

A :class:`BokehState` lives in ``app.extensions["bokeh"]`` (keyed by blueprint
name). It owns the application contexts, the open connections and the
periodic jobs ``bokeh serve`` runs: unused-session cleanup, keep-alive pings,
and the stats and memory logs.
"""
from __future__ import annotations

import atexit
import gc
import logging
import os
import time
import typing as t
import weakref

from bokeh.application import Application

from .auth import AuthProvider
from .connection import ServerConnection
from .contexts import ApplicationContext
from .metrics import AppStats, merge, snapshot
from .ports import Relay, Runtime, SharedMetrics
from .publications import Publications
from .scheduling import Handle, Scheduler
from .settings import ServerSettings

log = logging.getLogger(__name__)

#: how often a worker leaves its metrics for its siblings (``--num-procs``)
METRICS_PUBLISH_MS = 1_000
#: how long stopping waits for the close frames of open websockets to go out
STOP_WAIT_SECONDS = 2.0

#: every BokehState of this process, so a gunicorn worker can drain and stop them all
_LIVE_STATES: weakref.WeakSet[BokehState] = weakref.WeakSet()


def live_states() -> list[BokehState]:
    """The BokehStates of this process (one per registration of the blueprint)."""
    return list(_LIVE_STATES)


def collect_garbage() -> None:
    """Free the reference cycles of discarded documents now.

    A destroyed document leaves cycles that Python's collector would otherwise
    keep until its rare full collection (when a quarter of the long-lived heap is
    pending): 10 MB after a few hundred sessions. bokeh runs ``gc.collect()``
    for every session it discards; here one collection follows each cleanup
    pass, and because the start-up heap is frozen (:meth:`BokehState.start`) it
    scans only what is newer: well under a millisecond instead of ~40 ms.
    """
    started = time.perf_counter()
    found = gc.collect()
    log.debug("Collected %d objects of discarded sessions in %.1f ms", found, (time.perf_counter() - started) * 1000)


class ProcessInfo:
    """How many processes serve the same apps (set by bokeh-flask's gunicorn worker, or found out
    under gunicorn's own gevent worker: :mod:`bokeh_flask.runtime.siblings`)."""

    sibling_processes = 1
    #: the process is one of bokeh-flask's own gunicorn workers, which set everything up at boot
    managed_worker = False


class _Repeating:
    """Run ``fn`` every ``interval`` seconds on a scheduler until stopped."""

    def __init__(self, scheduler: Scheduler, interval: float, fn: t.Callable[[], object]) -> None:
        self._scheduler = scheduler
        self._interval = interval
        self._fn = fn
        self._handle: Handle | None = None
        self._stopped = False

    def start(self) -> None:
        self._handle = self._scheduler.call_later(self._interval, self._tick)

    def _tick(self) -> None:
        if self._stopped:
            return
        try:
            self._fn()
        finally:
            if not self._stopped:
                self._handle = self._scheduler.call_later(self._interval, self._tick)

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()


class BokehState:
    """Everything one registration of the bokeh blueprint serves and runs."""

    def __init__(self, applications: t.Mapping[str, Application], settings: ServerSettings,
                 scheduler: Scheduler, url_prefix: str = "", auth: AuthProvider | None = None,
                 runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.auth = auth
        self.scheduler = scheduler
        #: accepts this registration's websockets (the web layer's websocket view uses it)
        self.runtime = runtime
        self.url_prefix = url_prefix
        logout_url = auth.logout_url if auth is not None else None
        self.contexts = {route: ApplicationContext(app, route, scheduler, logout_url=logout_url)
                         for route, app in applications.items()}
        self.connections: set[ServerConnection] = set()
        #: this worker's relay to the other workers (``--num-procs``), set when the worker starts
        self.relay: Relay | None = None
        #: where the workers leave their metrics for each other (``--num-procs``), set when the worker starts
        self.shared_metrics: SharedMetrics | None = None
        #: published documents (``--publishing``), served under ``/bokeh/``; None when publishing is off
        self.publications: Publications | None = None
        #: a Flask site's own login for publishing: returns the user's name or None (``publishing_user=``)
        self.publications_user_loader: t.Callable[[], t.Any] | None = None
        self._jobs: list[_Repeating] = []
        self.started = False
        self._start_lock = scheduler.lock()
        self.stopped = False
        self.draining = False
        _LIVE_STATES.add(self)

    # -- queries --------------------------------------------------------------

    @property
    def app_paths(self) -> list[str]:
        return sorted(self.contexts)

    def context_for(self, app_path: str) -> ApplicationContext:
        return self.contexts[app_path]

    def session_count(self) -> int:
        return sum(len(c.sessions) for c in self.contexts.values())

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Run ``on_server_loaded`` hooks and start the periodic jobs (once, whoever asks first).

        Requests that arrive meanwhile (OS threads under ``flask run``) wait until it is done.
        """
        if self.started:
            return
        with self._start_lock:
            if not self.started:
                self._start()

    def _start(self) -> None:
        s = self.settings
        self._every(s.check_unused_sessions_milliseconds, self.cleanup_sessions)
        if s.keep_alive_milliseconds > 0:
            self._every(s.keep_alive_milliseconds, self.send_keep_alive)
        self._every(s.stats_log_frequency_milliseconds, self.log_stats)
        self._every(METRICS_PUBLISH_MS, self.publish_metrics)
        if s.mem_log_frequency_milliseconds > 0:
            self._every(s.mem_log_frequency_milliseconds, self.log_memory)
        for context in self.contexts.values():
            context.run_load_hook()
        if self.publications is not None:
            self.publications.start()
        atexit.register(self.stop)
        # What exists now (modules, apps, the site) lives as long as the process: move it out of
        # the collector's way, so the collection after each cleanup pass scans only newer objects.
        gc.collect()
        gc.freeze()
        self.publish_metrics()
        self.started = True

    def drain(self) -> None:
        """The process is going away: close each websocket with 1001 so its client reconnects elsewhere.

        A new connection that has not answered a message yet (a page still
        loading) closes right after its first reply instead, so the page loads
        first; call again to close those that stayed silent (see
        :meth:`ServerConnection.close_when_settled`).
        """
        self.draining = True
        for connection in list(self.connections):
            connection.close_when_settled()

    def stop(self) -> None:
        """Stop jobs, discard every session (running destroy hooks), run ``on_server_unloaded``."""
        if self.stopped or not self.started:
            return
        self.stopped = True
        for job in self._jobs:
            job.stop()
        closing = list(self.connections)
        for connection in closing:
            connection.close(1001, "server shutting down")
        deadline = self.scheduler.now() + STOP_WAIT_SECONDS
        for connection in closing:  # let the writers send the close frames
            connection.wait_written(max(deadline - self.scheduler.now(), 0.0))
        for context in self.contexts.values():
            context.discard_all()
            context.run_unload_hook()
        if self.publications is not None:
            self.publications.stop()
        atexit.unregister(self.stop)

    def _every(self, milliseconds: int, fn: t.Callable[[], object]) -> None:
        job = _Repeating(self.scheduler, milliseconds / 1000.0, fn)
        self._jobs.append(job)
        job.start()

    # -- jobs -----------------------------------------------------------------

    def cleanup_sessions(self) -> None:
        lifetime = self.settings.unused_session_lifetime_milliseconds
        discarded = sum(context.cleanup_unused(lifetime) for context in self.contexts.values())
        if self.publications is not None:
            discarded += self.publications.cleanup_unused(lifetime)
        if discarded:
            self.scheduler.call_later(0, collect_garbage)  # after the discards just scheduled

    def local_metrics(self) -> tuple[dict[str, AppStats], dict[str, dict[str, float]]]:
        """This process's counters per app, and its gauges (sessions, connections) per app."""
        stats = {route: context.stats for route, context in self.contexts.items()}
        connections: dict[str, float] = {route: 0 for route in self.contexts}
        for connection in list(self.connections):
            for route, context in self.contexts.items():
                if context.has_session(connection.session.id):
                    connections[route] += 1
        gauges = {"sessions": {route: float(len(c.sessions)) for route, c in self.contexts.items()},
                  "connections": connections}
        return stats, gauges

    def metrics(self) -> tuple[dict[str, AppStats], dict[str, dict[str, float]], int]:
        """The metrics of the whole server: every worker's summed with ``--num-procs``; and how many processes."""
        local = snapshot(*self.local_metrics())
        if self.shared_metrics is None:
            stats, gauges = merge([local])
            return stats, gauges, 1
        self.shared_metrics.publish(local)
        snapshots = self.shared_metrics.collect()
        stats, gauges = merge(snapshots)
        return stats, gauges, len(snapshots)

    def publish_metrics(self) -> None:
        if self.shared_metrics is not None:
            self.shared_metrics.publish(snapshot(*self.local_metrics()))

    def send_keep_alive(self) -> None:
        for connection in list(self.connections):
            connection.send_ping()

    def log_stats(self) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        log.debug("[pid %d] %d clients connected", os.getpid(), len(self.connections))
        lifetime = self.settings.unused_session_lifetime_milliseconds
        for route, context in sorted(self.contexts.items()):
            sessions = context.sessions
            unused = sum(1 for s in sessions if s.is_unused(lifetime))
            log.debug("[pid %d]   %s has %d sessions with %d unused", os.getpid(), route, len(sessions), unused)

    def log_memory(self) -> None:
        try:
            import psutil  # optional: only --mem-log-frequency needs it
        except ImportError:
            log.warning("--mem-log-frequency needs psutil: pip install psutil")
            return
        info = psutil.Process().memory_info()
        log.info("[pid %d] Memory usage: %0.2f MB (RSS), %0.2f MB (VMS)", os.getpid(),
                 info.rss / 2**20, info.vms / 2**20)
