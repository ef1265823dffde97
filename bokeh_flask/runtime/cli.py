"""The ``bokeh-flask`` command: ``serve`` takes ``bokeh serve``'s flags, ``secret`` makes a key.

gevent patches the standard library before anything else is imported, so
this module imports only the standard library and two dependency-free core
modules at the top; bokeh, Flask and the server are imported inside the
functions, after ``monkey.patch_all()`` (or, for ``--num-procs``, in gunicorn's
master, which is never patched). ``logging`` is imported early: gevent converts
the locks it already made (``patch_thread(existing_locks=True)``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import typing as t

from ..core.defaults import (DEFAULT_CHECK_UNUSED_MS, DEFAULT_KEEP_ALIVE_MS, DEFAULT_MAX_MESSAGE_BYTES,
                             DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_WRITE_STALL_S, DEFAULT_PORT, DEFAULT_STATS_LOG_MS,
                             DEFAULT_TOKEN_EXPIRATION_S, DEFAULT_UNUSED_LIFETIME_MS)
from ..core.errors import BokehFlaskError, ConfigError

LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "None")
DEFAULT_LOG_FORMAT = "%(asctime)s %(message)s"
SESSION_ID_MODES = ("unsigned", "signed", "external-signed")


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line, without a traceback."""

    def error(self, message: str) -> t.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="bokeh-flask", description="Serve Bokeh applications with Flask and gevent.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    serve = commands.add_parser("serve", help="serve Bokeh applications (the flags of `bokeh serve`)")
    _add_serve_arguments(serve)
    commands.add_parser("secret", help="print a new secret key for BOKEH_SECRET_KEY")
    _add_user_commands(commands.add_parser("user", help="manage the users of a publishing server (admins)"))
    return parser


def _add_store_options(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    """The store's options; ``suppress`` (an action's parser): absent ones leave the value given before the action."""
    def default(value: t.Any) -> t.Any:
        return argparse.SUPPRESS if suppress else value

    p.add_argument("--backend", choices=("shelve", "redis"), default=default("shelve"),
                   help="the store the server uses (default: shelve, the file store)")
    p.add_argument("--data-directory", default=default("bokeh_data"),
                   help="the file store's folder (default: bokeh_data)")
    p.add_argument("--redis-url", default=default(None), help="the Redis store (default: redis://127.0.0.1:7001/0)")


class _UserActions(argparse._SubParsersAction):  # type: ignore[type-arg]
    """``user`` actions that also take the store's options after the action (``user add alice --data-directory d``)."""

    def add_parser(self, name: str, **kwargs: t.Any) -> argparse.ArgumentParser:
        parser = super().add_parser(name, **kwargs)
        _add_store_options(parser, suppress=True)
        return parser


def _add_user_commands(p: argparse.ArgumentParser) -> None:
    _add_store_options(p)
    p.register("action", "user_actions", _UserActions)
    actions = p.add_subparsers(dest="action", required=True, parser_class=_OneLineParser, action="user_actions")
    add = actions.add_parser("add", help="add a user (password read from the terminal, or --password-stdin)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    actions.add_parser("list", help="list the users")
    remove = actions.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    key = actions.add_parser("key", help="print a new API key for a user (shown this once)")
    key.add_argument("name")
    revoke = actions.add_parser("revoke", help="revoke one of a user's API keys")
    revoke.add_argument("name")
    revoke.add_argument("key")


def _add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", metavar="DIRECTORY-OR-SCRIPT", nargs="*", help="apps to serve")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (0 = any free port)")
    p.add_argument("--address", default=None, help="address to listen on (default: all interfaces)")
    p.add_argument("--unix-socket", default=None, metavar="PATH",
                   help="listen on a unix socket (for a proxy in front); not with --port/--address/SSL")
    p.add_argument("--prefix", default="", help="URL prefix for every route")
    p.add_argument("--show", action="store_true", help="open the apps in a browser")
    p.add_argument("--glob", action="store_true", help="expand the file arguments with glob()")
    p.add_argument("--allow-websocket-origin", metavar="HOST[:PORT]", action="append", default=None,
                   help="a host allowed to open the websocket (repeatable; default localhost:<port>)")
    p.add_argument("--keep-alive", type=int, default=DEFAULT_KEEP_ALIVE_MS, metavar="MILLISECONDS",
                   help="interval of websocket keep-alive pings (0 turns them off)")
    p.add_argument("--check-unused-sessions", type=int, default=DEFAULT_CHECK_UNUSED_MS, metavar="MILLISECONDS",
                   help="how often to look for unused sessions")
    p.add_argument("--unused-session-lifetime", type=int, default=DEFAULT_UNUSED_LIFETIME_MS,
                   metavar="MILLISECONDS", help="how long a session without connections lives")
    p.add_argument("--index", default=None, help="a Jinja2 template for the / index page")
    p.add_argument("--disable-index", action="store_true", help="no index page at /")
    p.add_argument("--disable-index-redirect", action="store_true", help="do not redirect / to a single app")
    p.add_argument("--ico-path", default=None, help="favicon file, or 'none' to serve none")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="level of the server's log")
    p.add_argument("--log-format", default=DEFAULT_LOG_FORMAT, help="logging format string")
    p.add_argument("--log-file", default=None, help="write the log to this file")
    p.add_argument("--websocket-max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_BYTES, metavar="BYTES",
                   help="largest websocket message accepted (larger ones close with 1009)")
    p.add_argument("--websocket-compression-level", type=int, default=None, metavar="LEVEL",
                   help="compress websocket messages (permessage-deflate) at this zlib level, 0-9 (default: off)")
    p.add_argument("--websocket-compression-mem-level", type=int, default=None, metavar="LEVEL",
                   help="zlib memory level 1-9 for websocket compression (needs --websocket-compression-level)")
    p.add_argument("--websocket-max-queue-size", type=int, default=DEFAULT_MAX_QUEUED_BYTES, metavar="BYTES",
                   help="close (1008) a client with more than this waiting to be written to it: it stopped reading")
    p.add_argument("--websocket-write-timeout", type=float, default=DEFAULT_MAX_WRITE_STALL_S, metavar="SECONDS",
                   help="close (1008) a client whose socket took no data for this long")
    p.add_argument("--session-token-expiration", type=int, default=DEFAULT_TOKEN_EXPIRATION_S,
                   metavar="SECONDS", help="how long a session token may be used to open a session")
    p.add_argument("--stats-log-frequency", type=int, default=DEFAULT_STATS_LOG_MS, metavar="MILLISECONDS",
                   help="interval of the (debug level) session statistics log")
    p.add_argument("--mem-log-frequency", type=int, default=0, metavar="MILLISECONDS",
                   help="interval of the memory log (0 = off; needs psutil)")
    p.add_argument("--num-procs", type=int, default=1,
                   help="worker processes: N gunicorn gevent workers (0 = one per core)")
    p.add_argument("--dev", nargs="*", metavar="FILE", default=None,
                   help="restart when the apps' files (or these files) change; development only, one process")
    p.add_argument("--auth-module", default=None, metavar="PATH",
                   help="a bokeh serve auth module (get_user, login_url, ...); env BOKEH_AUTH_MODULE")
    p.add_argument("--cookie-secret", default=None,
                   help="key for signed cookies that auth modules read; env BOKEH_COOKIE_SECRET")
    p.add_argument("--enable-xsrf-cookies", action="store_true", default=None,
                   help="POST/PUT/DELETE to login, logout and custom views need an XSRF token; env BOKEH_XSRF_COOKIES")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--include-headers", nargs="+", metavar="HEADER", help="only these headers go into the token")
    what.add_argument("--exclude-headers", nargs="+", metavar="HEADER", help="these headers stay out of the token")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--include-cookies", nargs="+", metavar="COOKIE", help="only these cookies go into the token")
    which.add_argument("--exclude-cookies", nargs="+", metavar="COOKIE", help="these cookies stay out of the token")
    p.add_argument("--use-xheaders", action="store_true",
                   help="trust X-Real-Ip, X-Forwarded-For, X-Scheme, X-Forwarded-Proto (behind a proxy only)")
    p.add_argument("--ssl-certfile", default=None, help="serve https/wss with this PEM certificate; env "
                                                        "BOKEH_SSL_CERTFILE (key password: BOKEH_SSL_PASSWORD)")
    p.add_argument("--ssl-keyfile", default=None, help="the certificate's private key; env BOKEH_SSL_KEYFILE")
    pub = p.add_argument_group("publishing (docs/publishing.md; any of these turns it on)")
    pub.add_argument("--publishing", action="store_true", default=None,
                     help="serve published documents under /bokeh/ (single-user unless --multi-user)")
    pub.add_argument("--backend", choices=("memory", "shelve", "redis"), default=None,
                     help="where published documents are kept (default: shelve, a SQLite file store)")
    pub.add_argument("--data-directory", default=None, metavar="PATH",
                     help="the file store's folder, and the Redis child's (default: bokeh_data)")
    pub.add_argument("--redis-url", default=None, help="use this Redis server (none is started)")
    pub.add_argument("--redis-port", type=int, default=None,
                     help="port of the Redis server bokeh-flask starts (default: 7001)")
    pub.add_argument("--no-start-redis", dest="start_redis", action="store_false", default=None,
                     help="do not start redis-server: one runs on --redis-port already")
    pub.add_argument("-m", "--multi-user", action="store_true", default=None,
                     help="users register and log in (default: everyone is defaultuser)")
    pub.add_argument("--close-registration", dest="open_registration", action="store_false", default=None,
                     help="only admins add users (bokeh-flask user add)")
    pub.add_argument("--max-document-size", type=int, default=None, metavar="BYTES",
                     help="largest published document, in bytes of JSON (default: 20 MiB)")
    p.add_argument("--use-config", metavar="CONFIG", default=None,
                   help="a bokeh YAML settings file (secret_key, sign_sessions, allowed_ws_origin, ...)")
    p.add_argument("--session-ids", choices=SESSION_ID_MODES, default=None,
                   help="unsigned, signed (needs BOKEH_SECRET_KEY) or external-signed (ids must come "
                        "from outside); default from BOKEH_SIGN_SESSIONS")


def split_args(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Everything after ``--args`` is for the apps, exactly as ``bokeh serve`` does it."""
    if "--args" in argv:
        at = argv.index("--args")
        return argv[:at], argv[at + 1:]
    return argv, None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, app_args = split_args(argv)
    options = build_parser().parse_args(ours)
    if options.command == "secret":
        from bokeh.util.token import generate_secret_key  # nothing else of bokeh is needed here

        print(generate_secret_key())
        return
    if options.command == "user":
        manage_users(options)
        return
    serve(options, app_args)


def manage_users(options: argparse.Namespace) -> None:
    """``bokeh-flask user add | list | remove | key | revoke``: one line of output, or one line of error."""
    # the store and werkzeug load here only (this command serves nothing: no gevent patching needed)
    from ..web import accounts
    from .stores import open_store

    try:
        store = open_store(options.backend, options.data_directory, options.redis_url)
        if options.action == "add":
            password = sys.stdin.readline().rstrip("\n") if options.password_stdin else _ask_password()
            store.add_user(accounts.new_user(options.name, password))
            print(f"added {options.name}")
        elif options.action == "list":
            for record in store.list_users():
                print(f"{record.name}\t{len(record.api_key_hashes)} API key(s)")
        elif options.action == "remove":
            if not store.remove_user(options.name):
                raise BokehFlaskError(f"No user {options.name!r}")
            print(f"removed {options.name}")
        elif options.action == "key":
            print(accounts.issue_api_key(store, options.name))
        elif options.action == "revoke":
            if not accounts.revoke_api_key(store, options.name, options.key):
                raise BokehFlaskError(f"{options.name!r} has no such API key")
            print(f"revoked a key of {options.name}")
    except BokehFlaskError as error:
        sys.exit(f"bokeh-flask user: error: {error}")


def _ask_password() -> str:
    import getpass  # only when a password is typed

    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise ConfigError("the two passwords differ")
    return password


def serve(options: argparse.Namespace, app_args: list[str] | None) -> None:
    if options.dev is not None and options.num_procs != 1:
        sys.exit("bokeh-flask serve: error: --dev runs one process: leave out --num-procs")
    if options.num_procs != 1:
        serve_processes(options, app_args)
        return
    from gevent import monkey  # first of all, before anything imports threading or socket

    monkey.patch_all()
    _configure_logging(options)
    log = logging.getLogger("bokeh_flask.cli")
    if options.dev is None:
        _serve_once(options, app_args, log)
        return
    from .reloading import run_with_reloader  # after patching: it imports werkzeug and gevent

    servers: list[t.Any] = []
    run_with_reloader(lambda: _serve_once(options, app_args, log, servers),
                      lambda: [server.stop() for server in servers], [*(options.files or []), *options.dev])


def _serve_once(options: argparse.Namespace, app_args: list[str] | None, log: t.Any,
                servers: list[t.Any] | None = None) -> None:
    """Start the server, announce it, and serve until SIGINT, SIGTERM or a stop."""
    try:
        if options.use_config:
            _load_bokeh_config(options.use_config)
        server = _make_server(options, app_args)
        server.start()
        server.install_signal_handlers()
    except (BokehFlaskError, OSError) as error:
        sys.exit(f"bokeh-flask serve: error: {error}")
    if servers is not None:
        servers.append(server)
    _announce(server, log)
    if options.show:
        for route in server.app_paths:
            server.show(route)
    server.run_until_shutdown()
    log.info("Bokeh server stopped")


def serve_processes(options: argparse.Namespace, app_args: list[str] | None) -> None:
    """``--num-procs N``: gunicorn with N gevent workers (the master stays unpatched)."""
    _configure_logging(options)
    log = logging.getLogger("bokeh_flask.cli")
    # gunicorn's master is never patched (the workers patch themselves): these may load at once
    from ..core.loading import build_applications
    from ..core.settings import ServerSettings
    from .multiprocess import BokehGunicorn, worker_count

    try:
        if options.use_config:
            _load_bokeh_config(options.use_config)
        files = _checked_files(options)
        settings = {k: v for k, v in settings_from_options(options).items() if v is not None}
        settings.setdefault("allow_same_origin", False)
        resolved = ServerSettings.resolve(settings)  # fail here, once, rather than in every worker
        routes = sorted(build_applications(_apps_to_serve(files, settings), app_args))
        if resolved.publishing and resolved.backend == "memory":
            raise ConfigError("--backend memory keeps documents inside one process; with --num-procs use "
                              "--backend shelve (a file) or --backend redis")
        if resolved.publishing and resolved.backend == "redis" and not resolved.redis_url:
            from .publishing import redis_url_for  # the master starts the one Redis the workers share

            settings["redis_url"] = redis_url_for(resolved)
    except (BokehFlaskError, OSError) as error:
        sys.exit(f"bokeh-flask serve: error: {error}")

    def announce(port: int) -> None:
        host = options.address or "localhost"
        scheme = "https" if resolved.ssl_certfile else "http"
        where = f"unix:{options.unix_socket}" if options.unix_socket else f"{scheme}://{host}:{port}"
        log.info("Starting bokeh-flask server with %d gunicorn gevent workers", worker_count(options.num_procs))
        for route in routes:
            log.info("Bokeh app running at: %s%s%s", where, settings.get("prefix") or "", route)
        if resolved.publishing:
            log.info("Publishing at: %s%s/bokeh/", where, resolved.prefix)
        if options.show and not options.unix_socket:
            from bokeh.util.browser import view  # webbrowser, only for --show

            for route in routes:  # from the master, once the workers' socket is bound
                view(f"{where}{resolved.prefix}{route}")

    level = "critical" if options.log_level == "None" else ("debug" if options.log_level == "trace"
                                                             else options.log_level)
    BokehGunicorn(_apps_to_serve(files, settings), settings, app_args, worker_count(options.num_procs), level,
                  announce).run()


def _checked_files(options: argparse.Namespace) -> list[str]:
    from ..core.loading import expand_globs  # bokeh: after patching (module docstring)

    files = expand_globs(options.files) if options.glob else options.files
    for path in files:
        if not os.path.exists(path):
            raise ConfigError(f"Path for Bokeh server application does not exist: {path}")
    return list(files)


def _make_server(options: argparse.Namespace, app_args: list[str] | None) -> t.Any:
    from .server import Server  # after patching (module docstring)

    files = _checked_files(options)
    settings = settings_from_options(options)
    return Server.from_settings(_apps_to_serve(files, settings), argv=app_args, **settings)


def _apps_to_serve(files: list[str], settings: t.Mapping[str, t.Any]) -> t.Any:
    """The files given; without any, bokeh's empty app, or none at all on a publishing server."""
    if files:
        return files
    return {} if settings.get("publishing") else None


def settings_from_options(options: argparse.Namespace) -> dict[str, t.Any]:
    """The ServerSettings fields the command line sets."""
    return dict(
        port=options.port,
        address=options.address,
        unix_socket=options.unix_socket,
        prefix=options.prefix,
        allow_websocket_origin=options.allow_websocket_origin,
        keep_alive_milliseconds=options.keep_alive,
        check_unused_sessions_milliseconds=options.check_unused_sessions,
        unused_session_lifetime_milliseconds=options.unused_session_lifetime,
        stats_log_frequency_milliseconds=options.stats_log_frequency,
        mem_log_frequency_milliseconds=options.mem_log_frequency,
        use_index=not options.disable_index,
        redirect_root=not options.disable_index_redirect,
        index=options.index,
        ico_path=options.ico_path,
        websocket_max_message_size_bytes=options.websocket_max_message_size,
        websocket_max_queue_bytes=options.websocket_max_queue_size,
        websocket_compression_level=options.websocket_compression_level,
        websocket_compression_mem_level=options.websocket_compression_mem_level,
        websocket_write_timeout_seconds=options.websocket_write_timeout,
        session_token_expiration=options.session_token_expiration,
        num_procs=options.num_procs,
        auth_module=options.auth_module,
        cookie_secret=options.cookie_secret,
        xsrf_cookies=options.enable_xsrf_cookies,
        use_xheaders=options.use_xheaders,
        ssl_certfile=options.ssl_certfile,
        ssl_keyfile=options.ssl_keyfile,
        include_headers=options.include_headers,
        exclude_headers=options.exclude_headers,
        include_cookies=options.include_cookies,
        exclude_cookies=options.exclude_cookies,
        **_session_id_settings(options.session_ids),
        **_publishing_settings(options),
    )


#: the publishing flags, by the setting each sets
PUBLISHING_OPTIONS = {"backend": "backend", "data_directory": "data_directory", "redis_url": "redis_url",
                      "redis_port": "redis_port", "start_redis": "start_redis", "multi_user": "multi_user",
                      "open_registration": "open_registration", "max_document_size": "max_document_bytes"}


def _publishing_settings(options: argparse.Namespace) -> dict[str, t.Any]:
    """The publishing flags given; any of them turns publishing on."""
    given = {setting: getattr(options, option) for option, setting in PUBLISHING_OPTIONS.items()
             if getattr(options, option, None) is not None}
    if given or options.publishing:
        given["publishing"] = True
    return given


def _load_bokeh_config(path: str) -> None:
    """``--use-config``: bokeh's own YAML settings file, read by ``bokeh.settings``."""
    from bokeh.settings import settings  # after patching (module docstring)

    if not os.path.isfile(path):
        raise ConfigError(f"--use-config file does not exist: {path}")
    try:
        settings.load_config(path)
    except Exception as error:
        raise ConfigError(f"Could not read --use-config file {path}: {error}") from error


def _session_id_settings(mode: str | None) -> dict[str, t.Any]:
    """``--session-ids`` as settings; without it ``BOKEH_SIGN_SESSIONS`` decides."""
    if mode is None:
        return {}
    return {"sign_sessions": mode != "unsigned", "generate_session_ids": mode != "external-signed"}


def _configure_logging(options: argparse.Namespace) -> None:
    if options.log_file:
        folder = os.path.dirname(os.path.abspath(options.log_file))
        if not os.path.isdir(folder):
            sys.exit(f"bokeh-flask serve: error: --log-file folder does not exist: {folder}")
    level = options.log_level
    numeric = logging.CRITICAL + 10 if level == "None" else (5 if level == "trace" else getattr(logging, level.upper()))
    try:
        logging.basicConfig(level=numeric, format=options.log_format, filename=options.log_file)
    except OSError as error:
        sys.exit(f"bokeh-flask serve: error: cannot write --log-file {options.log_file}: {error.strerror}")


def _announce(server: t.Any, log: t.Any) -> None:
    import bokeh  # loaded by now: only the versions are read
    import gevent  # loaded by now too

    log.info("Starting bokeh-flask server (Bokeh %s, gevent %s)", bokeh.__version__, gevent.__version__)
    host = server.address or "localhost"
    scheme = "https" if server.settings.ssl_certfile else "http"
    if server.settings.unix_socket:
        for route in server.app_paths:
            log.info("Bokeh app running at: unix:%s%s%s", server.settings.unix_socket, server.prefix, route)
        log.info("Starting Bokeh server with process id: %d", os.getpid())
        return
    for route in server.app_paths:
        url = f"{scheme}://{host}:{server.port}{server.prefix}{route if route != '/' else '/'}"
        log.info("Bokeh app running at: %s", url)
    if server.settings.publishing:
        log.info("Publishing at: %s://%s:%d%s/bokeh/", scheme, host, server.port, server.prefix)
    log.info("Starting Bokeh server with process id: %d", os.getpid())
