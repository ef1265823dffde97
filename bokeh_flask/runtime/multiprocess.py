"""``--num-procs N``: the same apps in N gunicorn processes with gevent workers.

gunicorn's master binds the socket and forks the workers
(:class:`~bokeh_flask.gunicorn_worker.GeventWorker`); each worker patches the
standard library, builds its own Flask app, runs ``on_server_loaded`` and its
own cleanup and keep-alive jobs, and on its way out closes its websockets
with 1001 and runs ``on_server_unloaded``, as every process of ``bokeh serve
--num-procs`` should. A page and its websocket may reach different workers:
the websocket's worker rebuilds the session from the page's token, request
arguments, headers and cookies included, unless the page's worker built it:
then the websocket is relayed there over that worker's unix socket, in a
private directory the master creates and removes (:mod:`.relay`). The master
is not patched.

``GUNICORN_CMD_ARGS`` (e.g. ``"--max-requests 1000 --max-requests-jitter 100"``)
passes further gunicorn settings through, as it does for the ``gunicorn`` command.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import shlex
import signal
import typing as t

from gunicorn.app.base import BaseApplication

from ..core.errors import ConfigError
from ..core.loading import build_applications
from ..core.settings import ServerSettings
from .relay import make_relay_dir, remove_relay_dir
from .wsgi_server import ssl_context_for

log = logging.getLogger(__name__)

#: seconds gunicorn gives workers to finish after SIGTERM (its default, 30, is long for a user)
GRACEFUL_TIMEOUT = 10


#: keywords of ``Server`` / ``create_app`` that are objects for the extension, not settings
EXTENSION_ARGUMENTS = ("auth_provider", "extra_patterns")


def settings_only(values: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """``values`` without :data:`EXTENSION_ARGUMENTS` (they go to each worker's ``create_app`` as they are)."""
    return {k: v for k, v in values.items() if k not in EXTENSION_ARGUMENTS}


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
            # a dotted path, not the class: gunicorn < 23 calls str methods on this setting
            "worker_class": "bokeh_flask.gunicorn_worker.GeventWorker",
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "loglevel": self._log_level,
            "when_ready": self._when_ready,
            "certfile": s.get("ssl_certfile"),
            "keyfile": s.get("ssl_keyfile"),
            "ssl_context": self._ssl_context if s.get("ssl_certfile") else None,
        }
        if s.get("use_xheaders"):
            options["forwarded_allow_ips"] = "*"
        if s.get("max_header_bytes"):
            options["limit_request_field_size"] = s["max_header_bytes"]  # gunicorn's nearest: per header line
        if "control_socket_disable" in self.cfg.settings:
            options["control_socket_disable"] = True
        for key, value in options.items():
            if value is not None and key in self.cfg.settings:
                self.cfg.set(key, value)
        self._apply_environment_args()

    def _apply_environment_args(self) -> None:
        """Settings from ``GUNICORN_CMD_ARGS``, over the ones above (as the gunicorn command does)."""
        text = os.environ.get("GUNICORN_CMD_ARGS", "")
        if not text.strip():
            return
        try:
            parsed = self.cfg.parser().parse_args(shlex.split(text))
        except SystemExit as exit_:  # argparse already printed the problem
            raise ConfigError(f"GUNICORN_CMD_ARGS is not valid gunicorn options: {text!r}") from exit_
        for key, value in vars(parsed).items():
            if value is not None and key != "args" and key.lower() in self.cfg.settings:
                self.cfg.set(key.lower(), value)

    def _ssl_context(self, config: t.Any, default_factory: t.Callable[[], t.Any]) -> t.Any:
        """In each worker: the same TLS context as one process, key password (BOKEH_SSL_PASSWORD) included.

        gunicorn's own would load a password-protected key by asking on the terminal.
        """
        return ssl_context_for(ServerSettings.resolve(settings_only(self._settings)))

    def _when_ready(self, arbiter: t.Any) -> None:
        """In the master, before the workers fork: learn the real port (``--port 0``)."""
        address = arbiter.LISTENERS[0].sock.getsockname()
        if isinstance(address, tuple):
            self._bound_port = int(address[1])
        self._announce(self._bound_port or 0)

    def load(self) -> t.Any:
        """In each worker (after gevent patched it): the Flask app."""
        from .assembly import create_app  # Flask, imported in the worker after gunicorn patched it

        settings = dict(self._settings)
        if self._bound_port is not None:
            settings["port"] = self._bound_port  # the default websocket allowlist names the real port
        return create_app(self._applications, argv=self._argv, **settings)


class ProcessGroup:
    """What ``Server(num_procs=N)`` runs: N gunicorn gevent workers, from Python.

    The applications are built here, in the master, and each worker gets a
    forked copy; like bokeh's, they must not have made a document yet.
    """

    def __init__(self, applications: t.Any, settings: dict[str, t.Any], argv: t.Sequence[str] | None) -> None:
        # fail here, once, rather than in every worker
        self.settings = ServerSettings.resolve(settings_only(settings))
        self._applications = build_applications(applications, argv)
        used = sorted(route for route, app in self._applications.items() if not app.safe_to_fork)
        if used:
            raise ConfigError(f"Cannot fork the application(s) at {', '.join(used)}: they already made a "
                              "document. Create them fresh when you start Server(num_procs=N).")
        self._settings = dict(settings)
        self._argv = argv
        self.bound_port: int | None = None
        self._master_pid: int | None = None

    @property
    def app_paths(self) -> list[str]:
        return sorted(self._applications)

    def run(self) -> None:
        """Run the workers until SIGINT or SIGTERM (or :meth:`stop`); returns in this process only."""
        self._master_pid = os.getpid()
        level = _LEVEL_NAMES.get(logging.getLogger().getEffectiveLevel(), "info")
        gunicorn = BokehGunicorn(self._applications, self._settings, self._argv,
                                 worker_count(self.settings.num_procs), level, self._ready)
        try:
            gunicorn.run()
        except SystemExit as exit_:
            if os.getpid() != self._master_pid or exit_.code not in (0, None):
                raise  # a worker ends here, or gunicorn failed

    def stop(self) -> None:
        """Stop the workers as SIGTERM would (from the process that runs them)."""
        if self._master_pid == os.getpid():
            os.kill(self._master_pid, signal.SIGTERM)

    def _ready(self, port: int) -> None:
        self.bound_port = port or None
        log.info("Starting bokeh-flask server with %d gunicorn gevent workers on port %s",
                 worker_count(self.settings.num_procs), port)


_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
                logging.ERROR: "error", logging.CRITICAL: "critical"}
