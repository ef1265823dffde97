"""``--num-procs N``: the same apps in N gunicorn processes with gevent workers.

gunicorn's master binds the socket and forks the workers; each worker patches
the standard library (gunicorn's gevent worker does that itself), builds its
own Flask app, runs ``on_server_loaded`` and its own cleanup and keep-alive
jobs, and runs ``on_server_unloaded`` when it exits, as every process of
``bokeh serve --num-procs`` does. A page and its websocket may reach different
workers: the websocket's worker rebuilds the session from the page's token,
request arguments, headers and cookies included, unless the page's worker
built it: then the websocket is relayed there over that worker's unix socket,
in a private directory the master creates and removes (:mod:`.relay`). The
master is not patched.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import typing as t

from gunicorn.app.base import BaseApplication

from .relay import WorkerRelay, make_relay_dir, remove_relay_dir

log = logging.getLogger(__name__)

#: seconds gunicorn gives workers to finish after SIGTERM (its default, 30, is long for a user)
GRACEFUL_TIMEOUT = 10


def worker_count(num_procs: int) -> int:
    """``0`` means one process per core, as in ``bokeh serve``."""
    return num_procs if num_procs > 0 else multiprocessing.cpu_count()


class BokehGunicorn(BaseApplication):  # type: ignore[misc]
    """A gunicorn application serving ``applications`` with ``settings`` in every worker."""

    def __init__(self, applications: t.Any, settings: dict[str, t.Any], argv: t.Sequence[str] | None,
                 workers: int, log_level: str, announce: t.Callable[[int], None]) -> None:
        self._applications = applications
        self._settings = settings
        self._argv = argv
        self._workers = workers
        self._log_level = log_level
        self._announce = announce
        self._bound_port: int | None = None
        self._master_pid = os.getpid()
        #: where each worker listens for relayed websockets (``<pid>.sock``); mode 0700
        self.relay_dir = make_relay_dir()
        super().__init__()

    def run(self) -> None:
        try:
            super().run()
        finally:
            # workers leave run() too (gunicorn forks inside it): only the master removes the directory
            if os.getpid() == self._master_pid:
                remove_relay_dir(self.relay_dir)

    def load_config(self) -> None:
        s = self._settings
        address = s.get("address") or "0.0.0.0"
        if s.get("unix_socket"):
            bind = f"unix:{s['unix_socket']}"
        else:
            bind = f"[{address}]:{s.get('port', 5006)}" if ":" in address else f"{address}:{s.get('port', 5006)}"
        options = {
            "bind": bind,
            "workers": self._workers,
            "worker_class": "gevent",
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "loglevel": self._log_level,
            "when_ready": self._when_ready,
            "post_worker_init": _start_worker_state,
            "worker_exit": _stop_worker_state,
            "certfile": s.get("ssl_certfile"),
            "keyfile": s.get("ssl_keyfile"),
        }
        if s.get("use_xheaders"):
            options["forwarded_allow_ips"] = "*"
        if "control_socket_disable" in self.cfg.settings:
            options["control_socket_disable"] = True
        for key, value in options.items():
            if value is not None and key in self.cfg.settings:
                self.cfg.set(key, value)

    def _when_ready(self, arbiter: t.Any) -> None:
        """In the master, before the workers fork: learn the real port (``--port 0``)."""
        address = arbiter.LISTENERS[0].sock.getsockname()
        if isinstance(address, tuple):
            self._bound_port = int(address[1])
        self._announce(self._bound_port or 0)

    def load(self) -> t.Any:
        """In each worker (after gevent patched it): the Flask app."""
        from .factory import create_app

        settings = dict(self._settings)
        if self._bound_port is not None:
            settings["port"] = self._bound_port  # the default websocket allowlist names the real port
        return create_app(self._applications, argv=self._argv, **settings)


def _state_of(worker: t.Any) -> t.Any:
    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", {})
    return extensions.get("bokeh", {}).get("bokeh")


def _start_worker_state(worker: t.Any) -> None:
    """Run ``on_server_loaded`` and start the jobs when the worker boots, not at its first request.

    With several processes the worker also starts serving relayed websockets.
    """
    state = _state_of(worker)
    if state is None:
        return
    relay_dir = getattr(worker.app, "relay_dir", None)
    if relay_dir and state.settings.num_procs != 1:
        relay = WorkerRelay(relay_dir, worker.wsgi)
        if relay.start():
            state.relay = relay
    state.start()


def _stop_worker_state(server: t.Any, worker: t.Any) -> None:
    """In the exiting worker: close websockets (1001), discard sessions, run ``on_server_unloaded``.

    Relayed websockets are refused first; those this worker relays end last.
    """
    state = _state_of(worker)
    if state is None:
        return
    relay = state.relay
    if relay is not None:
        relay.close_listener()
    state.stop()
    if relay is not None:
        relay.stop()
