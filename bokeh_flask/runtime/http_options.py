"""``Server(http_server_kwargs=...)``: Tornado ``HTTPServer`` options in bokeh-flask's terms.

bokeh hands ``http_server_kwargs`` to Tornado's ``HTTPServer``. Each option with
an equivalent here becomes a setting, which gevent's server (one process) and
gunicorn's workers (``num_procs``) both honour; an option without one is refused
with an error that names it, never passed on blindly (gevent's ``WSGIServer``
would take an unknown keyword for a TLS option and reset every request).
"""
from __future__ import annotations

import ssl
import typing as t

from ..core.errors import ConfigError

#: what each supported option becomes
SUPPORTED = {
    "xheaders": "use_xheaders",
    "max_body_size": "max_request_body_bytes",
    "max_buffer_size": "max_request_body_bytes",
    "max_header_size": "max_header_bytes",
    "ssl_options": "ssl_certfile / ssl_keyfile",
}


def translate(http_server_kwargs: t.Mapping[str, t.Any] | None,
              num_procs: int) -> tuple[dict[str, t.Any], ssl.SSLContext | None]:
    """Settings for the options given, and a ready TLS context if ``ssl_options`` was one."""
    settings: dict[str, t.Any] = {}
    context: ssl.SSLContext | None = None
    for key, value in (http_server_kwargs or {}).items():
        if key == "xheaders":
            settings["use_xheaders"] = bool(value)
        elif key in ("max_body_size", "max_buffer_size"):
            # Tornado keeps two limits (streamed and buffered bodies); a WSGI app reads the body
            # it is given, so the smaller of the two bounds it
            limit = _positive_int(key, value)
            settings["max_request_body_bytes"] = min(limit, settings.get("max_request_body_bytes", limit))
        elif key == "max_header_size":
            settings["max_header_bytes"] = _positive_int(key, value)
        elif key == "ssl_options":
            context = _ssl_options(value, num_procs, settings)
        else:
            raise ConfigError(
                f"http_server_kwargs[{key!r}] has no equivalent in bokeh-flask's servers (gevent, gunicorn): "
                f"remove it (supported: {', '.join(sorted(SUPPORTED))})")
    return settings, context


def _positive_int(key: str, value: t.Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"http_server_kwargs[{key!r}] must be a positive number of bytes (got {value!r})")
    return value


def _ssl_options(value: t.Any, num_procs: int, settings: dict[str, t.Any]) -> ssl.SSLContext | None:
    """Tornado's ``ssl_options``: an ``SSLContext``, or a dict of ``ssl.wrap_socket`` arguments."""
    if isinstance(value, ssl.SSLContext):
        if num_procs != 1:
            raise ConfigError("http_server_kwargs['ssl_options'] as an SSLContext works with one process; with "
                              "num_procs give ssl_certfile= and ssl_keyfile= (or a dict with certfile and keyfile)")
        return value
    if isinstance(value, dict) and "certfile" in value and set(value) <= {"certfile", "keyfile"}:
        settings["ssl_certfile"] = value["certfile"]
        if value.get("keyfile"):
            settings["ssl_keyfile"] = value["keyfile"]
        return None
    raise ConfigError("http_server_kwargs['ssl_options'] must be an ssl.SSLContext or a dict with 'certfile' "
                      "(and 'keyfile')")
