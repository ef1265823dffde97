"""Server settings: one frozen dataclass with ``bokeh serve``'s names and defaults.

Every option of ``bokeh serve`` that this server honours has one field here. The
precedence, applied by :meth:`ServerSettings.resolve` for every entry point
(``bokeh-flask serve``, ``Server``, ``Server.from_settings``, ``BokehFlask`` and
``wsgi.py``), is: explicit keyword arguments (or CLI flags), then the Flask
``app.config`` key of the same name in upper case with a ``BOKEH_`` prefix, then
bokeh's own settings (``BOKEH_SECRET_KEY``, ``BOKEH_SIGN_SESSIONS``,
``BOKEH_ICO_PATH`` ... or a ``--use-config`` file), then the default. bokeh's
settings are read in one place, :func:`bokeh_settings_values`, always through
``bokeh.settings``. ``BOKEH_ALLOW_WS_ORIGIN`` is read when a websocket opens,
exactly as ``bokeh serve`` does, and replaces the configured allowlist.

``allow_same_origin`` (on for a blueprint mounted in a Flask site, off for
``bokeh-flask serve`` and ``Server``, which keep ``bokeh serve``'s rule) lets a
page open the websocket of the host that served it without an allowlist
entry. Because the check then trusts the ``Host`` header, a site that uses it
should set Flask's ``TRUSTED_HOSTS`` (or an explicit allowlist) against DNS
rebinding.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import typing as t
import zlib
from dataclasses import dataclass, field

from bokeh.settings import settings as bokeh_settings

from .defaults import (DEFAULT_CHECK_UNUSED_MS, DEFAULT_KEEP_ALIVE_MS, DEFAULT_MAX_HEADER_BYTES,
                       DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_WRITE_STALL_S, DEFAULT_PORT,
                       DEFAULT_STATS_LOG_MS, DEFAULT_TOKEN_EXPIRATION_S, DEFAULT_UNUSED_LIFETIME_MS)
from .errors import ConfigError
from .origins import with_default_port

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ServerSettings:
    """Every tunable of one bokeh-flask server, named as ``BokehTornado`` names them."""

    port: int = DEFAULT_PORT
    address: str | None = None
    prefix: str = ""
    allow_websocket_origin: tuple[str, ...] = ()
    keep_alive_milliseconds: int = DEFAULT_KEEP_ALIVE_MS
    check_unused_sessions_milliseconds: int = DEFAULT_CHECK_UNUSED_MS
    unused_session_lifetime_milliseconds: int = DEFAULT_UNUSED_LIFETIME_MS
    stats_log_frequency_milliseconds: int = DEFAULT_STATS_LOG_MS
    mem_log_frequency_milliseconds: int = 0
    use_index: bool = True
    redirect_root: bool = True
    index: str | None = None
    ico_path: str | None = None
    websocket_max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: a client with more than this waiting to be written to it is closed (1008): it stopped reading
    websocket_max_queue_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    #: permessage-deflate at this zlib level (0-9), off when None (``--websocket-compression-level``)
    websocket_compression_level: int | None = None
    #: zlib memory level (1-9) for permessage-deflate (``--websocket-compression-mem-level``; default 8)
    websocket_compression_mem_level: int | None = None
    #: a client whose socket has taken no data for this long is closed (1008)
    websocket_write_timeout_seconds: float = DEFAULT_MAX_WRITE_STALL_S
    session_token_expiration: int = DEFAULT_TOKEN_EXPIRATION_S
    secret_key: bytes | None = None
    sign_sessions: bool = False
    generate_session_ids: bool = True
    include_headers: tuple[str, ...] | None = None
    exclude_headers: tuple[str, ...] | None = None
    include_cookies: tuple[str, ...] | None = None
    exclude_cookies: tuple[str, ...] | None = None
    absolute_url: str | None = None
    allow_same_origin: bool = True
    auth_module: str | None = None
    cookie_secret: str | None = None
    xsrf_cookies: bool = False
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None
    unix_socket: str | None = None
    #: build a page's document where its websocket lands, not in the page request
    #: (``None``: only when serving with several processes; see ``views.document_page``)
    lazy_documents: bool | None = None
    num_procs: int = 1
    use_xheaders: bool = False
    #: largest HTTP request body (Flask's MAX_CONTENT_LENGTH; ``http_server_kwargs`` max_body/buffer_size)
    max_request_body_bytes: int | None = None
    #: most header bytes one request may carry; more is answered with 431
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    #: serve published documents under ``/bokeh/`` (``--publishing``; see docs/publishing.md)
    publishing: bool = False
    #: where published documents live: ``memory``, ``shelve`` (a file store) or ``redis``
    backend: str = "shelve"
    #: the file store's folder (``--data-directory``), also the Redis child's
    data_directory: str = "bokeh_data"
    #: a Redis server to use (no child Redis is started then)
    redis_url: str | None = None
    #: the port of the Redis server bokeh-flask starts (the original server's 7001)
    redis_port: int = 7001
    #: start ``redis-server`` as a child process unless ``redis_url`` is given (``--no-start-redis``)
    start_redis: bool = True
    #: users register and log in; otherwise everyone is ``defaultuser`` (``--multi-user``)
    multi_user: bool = False
    #: anyone may register (``--close-registration`` turns it off; admins add users with ``bokeh-flask user add``)
    open_registration: bool = True
    #: largest published document, in bytes of JSON (``--max-document-size``)
    max_document_bytes: int = 20 * 1024 * 1024
    extra: dict[str, t.Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # -- construction -------------------------------------------------------

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def resolve(
        cls,
        overrides: t.Mapping[str, t.Any] | None = None,
        config: t.Mapping[str, t.Any] | None = None,
    ) -> ServerSettings:
        """Merge keyword overrides, Flask config and bokeh's settings (environment, ``--use-config``)."""
        overrides = dict(overrides or {})
        config = config or {}
        unknown = set(overrides) - cls.field_names()
        if unknown:
            raise ConfigError(
                f"Unknown bokeh-flask setting(s): {', '.join(sorted(unknown))}. "
                f"Known settings are: {', '.join(sorted(cls.field_names() - {'extra'}))}."
            )
        values: dict[str, t.Any] = {}
        for name in cls.field_names() - {"extra"}:
            key = "BOKEH_" + name.upper()
            if name in overrides and overrides[name] is not None:
                values[name] = overrides[name]
            elif key in config:
                values[name] = config[key]
        for name, value in bokeh_settings_values().items():
            values.setdefault(name, value)
        return cls(**_normalise(values))

    def replace(self, **changes: t.Any) -> ServerSettings:
        return dataclasses.replace(self, **_normalise(changes))

    # -- checks -------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the fix for any impossible value."""
        for name in ("check_unused_sessions_milliseconds", "unused_session_lifetime_milliseconds",
                     "stats_log_frequency_milliseconds", "session_token_expiration"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0 (got {getattr(self, name)!r})")
        for name in ("keep_alive_milliseconds", "mem_log_frequency_milliseconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0; use 0 to turn it off (got {getattr(self, name)!r})")
        for name in ("websocket_max_message_size_bytes", "websocket_max_queue_bytes",
                     "websocket_write_timeout_seconds", "max_header_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0 (got {getattr(self, name)!r})")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535 (got {self.port})")
        if self.num_procs < 0:
            raise ConfigError("num_procs must be >= 0 (0 means one process per core)")
        if self.include_headers is not None and self.exclude_headers is not None:
            raise ConfigError("Give include_headers or exclude_headers, not both")
        if self.include_cookies is not None and self.exclude_cookies is not None:
            raise ConfigError("Give include_cookies or exclude_cookies, not both")
        if self.sign_sessions and not self.secret_key:
            raise ConfigError(
                "Signed session ids need a secret key: set BOKEH_SECRET_KEY "
                "(generate one with `bokeh-flask secret`)"
            )
        if self.sign_sessions and self.secret_key and len(self.secret_key) < RECOMMENDED_KEY_BYTES:
            _warn_once(f"BOKEH_SECRET_KEY is recommended to have at least {RECOMMENDED_KEY_BYTES} bytes of entropy "
                       "chosen with a cryptographically-random algorithm (`bokeh-flask secret` makes one)")
        if self.unix_socket:
            if self.port != DEFAULT_PORT:
                raise ConfigError("--port is not supported with a unix socket")
            if self.address or self.ssl_certfile or self.ssl_keyfile:
                raise ConfigError("--address, --ssl-certfile and --ssl-keyfile are not supported with a unix socket")
        if self.websocket_compression_level is not None and not -1 <= self.websocket_compression_level <= 9:
            raise ConfigError("--websocket-compression-level must be a zlib level from 0 (none) to 9 (best)")
        if self.websocket_compression_mem_level is not None and not 1 <= self.websocket_compression_mem_level <= 9:
            raise ConfigError("--websocket-compression-mem-level must be from 1 to 9")
        if self.index is not None and not os.path.isfile(self.index):
            raise ConfigError(f"--index template file does not exist: {self.index}")
        if self.ico_path not in (None, "none") and not os.path.isfile(self.ico_path):
            raise ConfigError(f"--ico-path file does not exist: {self.ico_path} (give 'none' to serve no icon)")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError("--ssl-keyfile needs --ssl-certfile (or BOKEH_SSL_CERTFILE)")
        if self.backend not in ("memory", "shelve", "redis"):
            raise ConfigError(f"--backend must be memory, shelve or redis (got {self.backend!r})")
        if self.max_document_bytes <= 0:
            raise ConfigError(f"max_document_bytes must be > 0 (got {self.max_document_bytes!r})")
        if not 0 < self.redis_port <= 65535:
            raise ConfigError(f"--redis-port must be between 1 and 65535 (got {self.redis_port})")
        if not self.generate_session_ids and not self.sign_sessions:
            raise ConfigError("external-signed session ids need signing turned on (sign_sessions=True)")

    # -- derived values -----------------------------------------------------

    @property
    def websocket_compression(self) -> tuple[int, int] | None:
        """(zlib level, memory level) for permessage-deflate, or None when compression is off (bokeh's default)."""
        if self.websocket_compression_level is None:
            return None
        return self.websocket_compression_level, self.websocket_compression_mem_level or zlib.DEF_MEM_LEVEL

    def websocket_origins(self) -> set[str]:
        """The configured websocket allowlist, ``localhost:<port>`` when none is given."""
        origins = set(self.allow_websocket_origin)
        if not origins:
            origins.add(f"localhost:{self.port}")
        return {_with_default_port(o) for o in origins}


#: bokeh warns about shorter secret keys (and accepts them)
RECOMMENDED_KEY_BYTES = 32
_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


def normalise_prefix(prefix: str | None) -> str:
    """``"foo/"`` -> ``"/foo"``; empty or ``"/"`` -> ``""``."""
    prefix = (prefix or "").strip("/")
    return f"/{prefix}" if prefix else ""


def _with_default_port(host: str) -> str:
    host = host.strip().lower()
    return host if host == "*" else with_default_port(host)


def _normalise(values: dict[str, t.Any]) -> dict[str, t.Any]:
    out = dict(values)
    if "prefix" in out:
        out["prefix"] = normalise_prefix(out["prefix"])
    for name in ("allow_websocket_origin",):
        if name in out and out[name] is not None:
            value = out[name]
            out[name] = tuple([value] if isinstance(value, str) else value)
    for name in ("include_headers", "exclude_headers", "include_cookies", "exclude_cookies"):
        if name in out and out[name] is not None:
            value = out[name]
            out[name] = tuple(value.split(",") if isinstance(value, str) else value)
    for name in _BOOLEAN_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = _as_bool(name, out[name])
    if isinstance(out.get("secret_key"), str):
        out["secret_key"] = out["secret_key"].encode("utf-8")
    return out


#: ServerSettings fields that bokeh's own settings (``BOKEH_*`` variables or a
#: ``--use-config`` file) provide, by the name of their ``bokeh.settings`` accessor
BOKEH_SETTING_FIELDS = {
    "secret_key": "secret_key",
    "sign_sessions": "sign_sessions",
    "ico_path": "ico_path",
    "xsrf_cookies": "xsrf_cookies",
    "auth_module": "auth_module",
    "cookie_secret": "cookie_secret",
    "ssl_certfile": "ssl_certfile",
    "ssl_keyfile": "ssl_keyfile",
    "ssl_password": "ssl_password",
}


_BOOLEAN_FIELDS = ("sign_sessions", "xsrf_cookies", "use_index", "redirect_root", "generate_session_ids",
                   "allow_same_origin", "use_xheaders", "publishing", "start_redis", "multi_user",
                   "open_registration")
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"", "0", "no", "false", "off"}


def _as_bool(name: str, value: str) -> bool:
    """A yes/no setting given as text (an environment variable): bokeh's spellings, and true/false."""
    text = value.strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigError(f"{name} must be yes/no, true/false, on/off or 1/0 (got {value!r})")


def bokeh_settings_values() -> dict[str, t.Any]:
    """The settings bokeh's configuration sets, read through ``bokeh.settings`` (the one place).

    Only values that are actually set (an environment variable or a config file)
    are returned, so a default never hides a lower-precedence source.
    """
    found: dict[str, t.Any] = {}
    for field_name, accessor_name in BOKEH_SETTING_FIELDS.items():
        accessor = getattr(bokeh_settings, accessor_name, None)
        value = _configured(accessor) if accessor is not None else None  # None: an older bokeh lacks it
        if value is not None and value != "":
            found[field_name] = value
    return found


def _configured(accessor: t.Any) -> t.Any:
    """A bokeh setting's value if the environment or a config file sets it, else ``None``."""
    with_provenance = getattr(accessor, "get_value_with_provenance", None)
    if with_provenance is not None:
        value, source = with_provenance()
        return None if source.name.endswith("DEFAULT") else value
    # bokeh < 3.8 has no provenance: look where it looks, in its order (override file, environment,
    # user and system config), and let the setting convert what it finds
    name, env_var = getattr(accessor, "name", None), getattr(accessor, "env_var", None)
    sources: list[t.Mapping[str, t.Any]] = [getattr(bokeh_settings, "config_override", {}) or {}]
    if env_var:
        sources.append({name: os.environ[env_var]} if env_var in os.environ else {})
    sources += [getattr(bokeh_settings, "config_user", {}) or {}, getattr(bokeh_settings, "config_system", {}) or {}]
    for source in sources:
        if name in source:
            return accessor(source[name])
    return None


def env_websocket_origins() -> set[str] | None:
    """``BOKEH_ALLOW_WS_ORIGIN`` (or ``allowed_ws_origin`` of a ``--use-config`` file) as a set.

    ``None`` when unset; when set it replaces the configured allowlist, as in bokeh.
    """
    hosts = bokeh_settings.allowed_ws_origin()
    origins = {_with_default_port(h) for h in hosts if h.strip()}
    return origins or None
