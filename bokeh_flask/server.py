"""``Server``: one process serving bokeh apps with gevent's WSGI server.

It mirrors ``bokeh.server.server.Server``: ``start()`` returns at once,
``run_until_shutdown()`` blocks until SIGINT/SIGTERM or ``stop()``,
``show()``, ``get_session()``, ``get_sessions()``, and the ``port``,
``address``, ``prefix`` and ``index`` properties. Every ``BokehTornado``
keyword (``keep_alive_milliseconds``, ``unused_session_lifetime_milliseconds``,
``session_token_expiration`` ...) is accepted as a keyword too.
"""
from __future__ import annotations

import logging
import signal
import typing as t

from .errors import ConfigError
from .settings import ServerSettings

if t.TYPE_CHECKING:
    from flask import Flask

    from .multiprocess import ProcessGroup
    from .sessions import ServerSession
    from .state import BokehState

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 5.0


def ensure_gevent_patched() -> None:
    """Monkey-patch the standard library for gevent if nobody has yet."""
    from gevent import monkey

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
        self._http_server_kwargs = dict(http_server_kwargs or {})
        kwargs = _translate_server_kwargs(kwargs)
        kwargs.setdefault("allow_same_origin", False)  # bokeh serve's rule: only the allowlist
        argv = kwargs.pop("argv", None)
        self._processes: ProcessGroup | None = None
        self.flask_app: Flask | None = None
        self._state: BokehState | None = None
        if kwargs.get("num_procs", 1) != 1:
            from .multiprocess import ProcessGroup

            self._processes = ProcessGroup(applications, kwargs, argv)  # the master stays unpatched
        else:
            ensure_gevent_patched()
            from .factory import create_app

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

        Like bokeh 3.10's ``Server.from_settings``: ``secret_key``, ``sign_sessions`` and
        ``ico_path`` default to ``BOKEH_SECRET_KEY``, ``BOKEH_SIGN_SESSIONS`` and
        ``BOKEH_ICO_PATH``; ``BOKEH_ALLOW_WS_ORIGIN`` is read when websockets open.
        """
        kwargs = with_bokeh_settings(kwargs)
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
        import gevent.event
        from gevent.pywsgi import WSGIServer

        self._started = True
        self._done = gevent.event.Event()
        options = {"log": logging.getLogger("bokeh_flask.access"), "error_log": logging.getLogger("bokeh_flask.wsgi"),
                   "handler_class": _handler_class()}
        ssl_context = ssl_context_for(self.settings)
        if ssl_context is not None:
            options["ssl_context"] = ssl_context
        options.update(self._http_server_kwargs)
        listener: t.Any = (self.settings.address or "", self.settings.port)
        if self.settings.unix_socket:
            listener = _unix_listener(self.settings.unix_socket)
        self._wsgi = WSGIServer(listener, self.flask_app, **options)
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
        import gevent

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
        from bokeh.util.browser import view

        if not app_path.startswith("/"):
            raise ValueError("app_path must start with a /")
        host = self.address if self.address not in (None, "", "0.0.0.0", "::") else "localhost"
        view(f"http://{host}:{self.port}{self.prefix}{app_path}", browser=browser, new=new)


def with_bokeh_settings(kwargs: dict[str, t.Any]) -> dict[str, t.Any]:
    """``kwargs`` with what they leave unset taken from ``bokeh.settings`` (env vars, --use-config)."""
    from bokeh.settings import settings as bokeh_settings

    kwargs = dict(kwargs)
    for name in _SECURITY_SETTINGS_NOT_YET:
        value = kwargs.pop(name, None)
        env = _SECURITY_SETTINGS_NOT_YET[name]
        if value is not None or (env and getattr(bokeh_settings, env)(None)):
            raise ConfigError(f"{name} is not supported by bokeh-flask: pass auth_module='path/to/auth.py' "
                              "(a bokeh serve auth module), or authorize= to BokehFlask")
    if kwargs.get("secret_key") is None and bokeh_settings.secret_key(None):
        kwargs["secret_key"] = bokeh_settings.secret_key_bytes()
    if kwargs.get("sign_sessions") is None:
        kwargs["sign_sessions"] = bokeh_settings.sign_sessions()
    if kwargs.get("ico_path") is None:
        kwargs["ico_path"] = bokeh_settings.ico_path()
    for name in ("auth_module", "cookie_secret", "ssl_certfile", "ssl_keyfile", "ssl_password"):
        if kwargs.get(name) is None and getattr(bokeh_settings, name)(None):
            kwargs[name] = getattr(bokeh_settings, name)()
    if kwargs.get("xsrf_cookies") is None:
        kwargs["xsrf_cookies"] = bokeh_settings.xsrf_cookies()
    return kwargs


#: bokeh settings ``from_settings`` knows (name -> bokeh.settings accessor) but bokeh-flask
#: does not implement yet; using one is an error rather than silently ignored.
_SECURITY_SETTINGS_NOT_YET = {
    "auth_provider": None,
}


def _unix_listener(path: str) -> t.Any:
    """A listening unix socket at ``path`` (a stale socket file there is replaced)."""
    import os
    import socket
    import stat

    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise ConfigError(f"--unix-socket {path} exists and is not a socket")
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1024)
    return listener


def ssl_context_for(settings: ServerSettings) -> t.Any:
    """A TLS context from ``--ssl-certfile`` / ``--ssl-keyfile`` (password: ``BOKEH_SSL_PASSWORD``)."""
    if not settings.ssl_certfile:
        return None
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile, settings.ssl_password)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"Cannot use the SSL certificate {settings.ssl_certfile}: {error}") from error
    return context


#: most header bytes one request may carry (Tornado's limit); more is answered with 431
MAX_HEADER_BYTES = 64 * 1024
_HEADERS_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                      b"Content-Length: 0\r\n\r\n")


class HeadersTooLarge(ValueError):
    """A request's headers are over :data:`MAX_HEADER_BYTES`."""


def _handler_class() -> type:
    """pywsgi's handler with ``TCP_NODELAY`` on each connection and a cap on header size.

    Without ``TCP_NODELAY`` a keep-alive response written as headers then body
    waits ~40 ms for the client's delayed ACK (Nagle's algorithm). pywsgi alone
    accepts megabytes of headers, which every later step would then carry.
    """
    import socket

    from gevent.pywsgi import WSGIHandler

    class Handler(WSGIHandler):
        def __init__(self, sock: t.Any, address: t.Any, server: t.Any, rfile: t.Any = None) -> None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass  # a unix socket
            super().__init__(sock, address, server, rfile)

        def read_request(self, raw_requestline: str) -> t.Any:
            result = super().read_request(raw_requestline)
            size = sum(len(name) + len(value) + 4 for name, value in self.headers.items())
            if size > MAX_HEADER_BYTES:
                raise HeadersTooLarge(f"{size} bytes of headers")
            return result

        def _handle_client_error(self, ex: BaseException) -> t.Any:
            if isinstance(ex, HeadersTooLarge):
                self.close_connection = True
                return ("431", _HEADERS_TOO_LARGE)
            return super()._handle_client_error(ex)

    return Handler


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
