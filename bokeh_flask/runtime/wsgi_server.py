"""gevent's WSGI server as bokeh-flask runs it: listeners, TLS contexts and the connection handler.

One module that :mod:`.server` (one process), :mod:`.relay` (each worker's unix
socket) and :mod:`.multiprocess` (gunicorn's workers) all use.
"""
from __future__ import annotations

import os
import socket
import ssl
import stat
import typing as t

import gevent.socket
import gevent.ssl
from gevent.pywsgi import WSGIHandler

from ..core.defaults import DEFAULT_MAX_HEADER_BYTES
from ..core.errors import ConfigError
from ..core.settings import ServerSettings


def unix_listener(path: str) -> t.Any:
    """A listening unix socket at ``path`` (a stale socket file there is replaced)."""
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
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile, settings.ssl_password)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"Cannot use the SSL certificate {settings.ssl_certfile}: {error}") from error
    return context


_HEADERS_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                      b"Content-Length: 0\r\n\r\n")


class HeadersTooLarge(ValueError):
    """A request's headers are over the server's ``max_header_bytes`` (64 KiB unless set)."""


class BokehWSGIHandler(WSGIHandler):  # type: ignore[misc]
    """pywsgi's handler with ``TCP_NODELAY`` on each connection and a cap on header size.

    Without ``TCP_NODELAY`` a keep-alive response written as headers then body
    waits ~40 ms for the client's delayed ACK (Nagle's algorithm). pywsgi alone
    accepts megabytes of headers, which every later step would then carry.
    """

    def __init__(self, sock: t.Any, address: t.Any, server: t.Any, rfile: t.Any = None) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass  # a unix socket
        super().__init__(sock, address, server, rfile)

    def read_request(self, raw_requestline: str) -> t.Any:
        result = super().read_request(raw_requestline)
        size = sum(len(name) + len(value) + 4 for name, value in self.headers.items())
        if size > getattr(self.server, "max_header_bytes", DEFAULT_MAX_HEADER_BYTES):
            raise HeadersTooLarge(f"{size} bytes of headers")
        return result

    def _handle_client_error(self, ex: BaseException) -> t.Any:
        if isinstance(ex, HeadersTooLarge):
            self.close_connection = True
            return ("431", _HEADERS_TOO_LARGE)
        return super()._handle_client_error(ex)


def plain_gevent_socket(sock: t.Any) -> bool:
    """True for a plain (not TLS) gevent socket, whose descriptor a greenlet of ours can take over."""
    return isinstance(sock, gevent.socket.socket) and not isinstance(sock, gevent.ssl.SSLSocket)
