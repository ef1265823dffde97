"""``Server``: one process serving bokeh apps with gevent's WSGI server.

It mirrors ``bokeh.server.server.Server``: ``start()`` returns at once,
``run_until_shutdown()`` blocks until SIGINT/SIGTERM or ``stop()``,
``show()``, ``get_session()``, ``get_sessions()``, and the ``port``,
``address``, ``prefix`` and ``index`` properties. Every ``BokehTornado``
keyword (``keep_alive_milliseconds``, ``unused_session_lifetime_milliseconds``,
``session_token_expiration`` ...) is accepted as a keyword too.

Importing this module imports neither Flask nor gevent's server: a program may
import ``Server`` before it patches the standard library, and with
``num_procs > 1`` the calling process (gunicorn's master) is never patched. So
the imports of Flask, gevent's WSGI server and gunicorn are inside the methods that run
after :func:`ensure_gevent_patched` (or in the master, unpatched).
"""
from __future__ import annotations

import logging
import signal
import typing as t

import gevent
import gevent.event
from gevent import monkey

from ..core.errors import ConfigError
from ..core.settings import ServerSettings
from .http_options import translate as translate_http_options

if t.TYPE_CHECKING:
    from flask import Flask

    from ..core.sessions import ServerSession
    from ..core.state import BokehState
    from .multiprocess import ProcessGroup

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 5.0


def ensure_gevent_patched() -> None:
    """Monkey-patch the standard library for gevent if nobody has yet."""
    if not monkey.is_module_patched("socket"):
        log.warning("gevent had not patched the standard library; patching now. Import bokeh_flask's "
                    "server (or call gevent.monkey.patch_all()) first thing in your program to avoid this.")
        monkey.patch_all()


class _LoopHandle:
    """Stands in for ``Server.io_loop``: ``start()`` blocks until the server stops."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def start(self) -> None:
        self._server.run_until_shutdown()

    def stop(self) -> None:
        self._server.stop()


class Server:
    """Serve ``applications`` on ``address:port`` (see ``bokeh.server.server.Server``)."""

    def __init__(self, applications: t.Any = None, *, io_loop: t.Any = None,
                 http_server_kwargs: dict[str, t.Any] | None = None, **kwargs: t.Any) -> None:
        if io_loop is not None:
            if kwargs.get("num_procs", 1) != 1:
                raise ConfigError("num_procs > 1 starts one gunicorn worker per process, each with its own "
                                  "event loop: do not pass io_loop with it")
            raise ConfigError("bokeh-flask runs on gevent: do not pass io_loop (there is no Tornado IOLoop)")
        kwargs = _translate_server_kwargs(kwargs)
        http_settings, self._ssl_context = translate_http_options(http_server_kwargs, kwargs.get("num_procs", 1))
        kwargs = {**http_settings, **kwargs}
        kwargs.setdefault("allow_same_origin", False)  # bokeh serve's rule: only the allowlist
        argv = kwargs.pop("argv", None)
        self._processes: ProcessGroup | None = None
        self.flask_app: Flask | None = None
        self._state: BokehState | None = None
        if kwargs.get("num_procs", 1) != 1:
            from .multiprocess import ProcessGroup  # gunicorn, in the unpatched master (module docstring)

            self._processes = ProcessGroup(applications, kwargs, argv)  # the master stays unpatched
        else:
            ensure_gevent_patched()
            from .assembly import create_app  # Flask, after patching (module docstring)

            self.flask_app = create_app(applications, argv=argv, **kwargs)
            self._state = self.flask_app.extensions["bokeh"]["bokeh"]
        self._wsgi: t.Any = None
        self._started = False
        self._stopped = False
        self._done = None
        self._signal_handlers: list[t.Any] = []

    @classmethod
    def from_settings(cls, applications: t.Any = None, io_loop: t.Any = None,
                      http_server_kwargs: dict[str, t.Any] | None = None, **kwargs: t.Any) -> Server:
        """A ``Server`` whose unspecified settings come from ``bokeh.settings`` (``BOKEH_*``).

        Like bokeh 3.10's ``Server.from_settings``: ``secret_key``, ``sign_sessions``,
        ``ico_path`` and the other security settings default to ``BOKEH_SECRET_KEY``,
        ``BOKEH_SIGN_SESSIONS``, ``BOKEH_ICO_PATH`` ...; ``BOKEH_ALLOW_WS_ORIGIN`` is
        read when websockets open. Every entry point reads them the same way
        (:meth:`~bokeh_flask.core.settings.ServerSettings.resolve`), so this is the
        constructor under bokeh's name.
        """
        return cls(applications, io_loop=io_loop, http_server_kwargs=http_server_kwargs, **kwargs)

    # -- properties ----------------------------------------------------------

    @property
    def settings(self) -> ServerSettings:
        if self._processes is not None:
            return self._processes.settings
        return self._single_process().settings

    @property
    def port(self) -> int:
        if self._wsgi is not None and self._wsgi.server_port:
            return int(self._wsgi.server_port)
        if self._processes is not None and self._processes.bound_port:
            return self._processes.bound_port
        return self.settings.port

    @property
    def address(self) -> str | None:
        return self.settings.address

    @property
    def prefix(self) -> str:
        return self.settings.prefix

    @property
    def index(self) -> str | None:
        return self.settings.index

    @property
    def app_paths(self) -> list[str]:
        """The routes of the applications served (bokeh's ``BokehTornado.app_paths``)."""
        if self._processes is not None:
            return self._processes.app_paths
        return self._single_process().app_paths

    @property
    def io_loop(self) -> _LoopHandle:
        return _LoopHandle(self)

    # -- lifecycle ------------------------------------------------------------

    def _single_process(self) -> BokehState:
        if self._state is None:
            raise ConfigError("with num_procs > 1 the sessions live in the worker processes: "
                              "use the lifecycle hooks (server_lifecycle.py) to reach them")
        return self._state

    def start(self) -> None:
        """Listen and start the periodic jobs and ``on_server_loaded`` hooks; returns at once.

        With ``num_procs > 1`` nothing happens until :meth:`run_until_shutdown`
        (or ``io_loop.start()``), which runs the worker processes.
        """
        if self._started or self._processes is not None:
            return
        # gevent's server (it imports ssl), imported after ensure_gevent_patched() in __init__
        from gevent.pywsgi import WSGIServer
        from .wsgi_server import BokehWSGIHandler, ssl_context_for, unix_listener

        self._started = True
        self._done = gevent.event.Event()
        options = {"log": logging.getLogger("bokeh_flask.access"), "error_log": logging.getLogger("bokeh_flask.wsgi"),
                   "handler_class": BokehWSGIHandler}
        ssl_context = self._ssl_context or ssl_context_for(self.settings)
        if ssl_context is not None:
            options["ssl_context"] = ssl_context
        listener: t.Any = (self.settings.address or "", self.settings.port)
        if self.settings.unix_socket:
            listener = unix_listener(self.settings.unix_socket)
        self._wsgi = WSGIServer(listener, self.flask_app, **options)
        self._wsgi.max_header_bytes = self.settings.max_header_bytes  # read by BokehWSGIHandler
        self._wsgi.start()
        state = self._single_process()
        if self.settings.port == 0 and not self.settings.unix_socket:
            # the default websocket allowlist names the port actually bound
            state.settings = self.settings.replace(port=int(self._wsgi.server_port))
        state.start()

    def stop(self, wait: bool = True) -> None:
        """Close websockets, discard sessions, run ``on_server_unloaded``, stop listening."""
        if self._stopped:
            return
        if self._processes is not None:
            self._processes.stop()
            return
        self._stopped = True
        self._single_process().stop()
        if self._wsgi is not None:
            self._wsgi.stop(timeout=STOP_TIMEOUT_SECONDS if wait else 0)
        if self._done is not None:
            self._done.set()

    def unlisten(self) -> None:
        """Stop accepting new connections; open ones keep working."""
        if self._wsgi is not None:
            self._wsgi.close()

    def install_signal_handlers(self) -> None:
        """Make SIGINT and SIGTERM stop the server cleanly (exit status 0)."""
        if not self._signal_handlers:
            self._signal_handlers = [gevent.signal_handler(sig, lambda: gevent.spawn(self.stop))
                                     for sig in (signal.SIGINT, signal.SIGTERM)]

    def run_until_shutdown(self) -> None:
        """Serve until SIGINT or SIGTERM (or ``stop()``), then shut down cleanly."""
        if self._processes is not None:
            self._processes.run()
            return
        self.start()
        self.install_signal_handlers()
        try:
            assert self._done is not None
            self._done.wait()
        finally:
            for handler in self._signal_handlers:
                handler.cancel()
            self._signal_handlers = []

    # -- sessions ------------------------------------------------------------

    def get_sessions(self, app_path: str | None = None) -> list[ServerSession]:
        state = self._single_process()
        if app_path is not None:
            return state.context_for(app_path).sessions
        return [s for c in state.contexts.values() for s in c.sessions]

    def get_session(self, app_path: str, session_id: str) -> ServerSession:
        return self._single_process().context_for(app_path).get_session(session_id)

    def show(self, app_path: str, browser: str | None = None, new: str = "tab") -> None:
        """Open ``app_path`` in a browser (``new`` is "tab" or "window")."""
        from bokeh.util.browser import view  # webbrowser, only for show()

        if not app_path.startswith("/"):
            raise ValueError("app_path must start with a /")
        host = self.address if self.address not in (None, "", "0.0.0.0", "::") else "localhost"
        view(f"http://{host}:{self.port}{self.prefix}{app_path}", browser=browser, new=new)


def _translate_server_kwargs(kwargs: dict[str, t.Any]) -> dict[str, t.Any]:
    """Accept ``Server``'s own names for settings that ServerSettings names differently."""
    renames = {"websocket_max_message_size": "websocket_max_message_size_bytes",
               "extra_websocket_origins": "allow_websocket_origin"}
    out = {}
    for key, value in kwargs.items():
        out[renames.get(key, key)] = value
    if "allow_websocket_origin" in out and out["allow_websocket_origin"] is None:
        del out["allow_websocket_origin"]
    return out
