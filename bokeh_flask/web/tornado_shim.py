"""The parts of Tornado's ``RequestHandler`` that ``bokeh serve`` auth modules read.

``get_user(request_handler)`` functions written for ``bokeh serve`` call
``request_handler.get_cookie(...)``, ``get_secure_cookie(...)`` (signed with
``--cookie-secret``), ``get_argument(...)`` and read
``request_handler.request.headers``, ``.arguments``, ``.cookies``,
``.remote_ip``. :class:`RequestHandlerShim` offers exactly those on top of a
Flask request, so such modules run unchanged.
"""
from __future__ import annotations

import typing as t
from http.cookies import Morsel

from tornado.web import decode_signed_value

from .requests import client_address

#: how old a signed cookie may be (Tornado's default)
DEFAULT_MAX_AGE_DAYS = 31
#: signed-cookie format versions accepted: 2 (HMAC-SHA256), the only one this server writes;
#: Tornado also accepts its older SHA-1 format unless told otherwise
MIN_SIGNED_VERSION = 2

_MISSING = object()


class MissingArgument(Exception):
    """``get_argument(name)`` without a default for an argument that is not there."""


class _Request:
    """Tornado's ``HTTPServerRequest`` attributes, read from a Flask request."""

    def __init__(self, request: t.Any) -> None:
        self.headers = request.headers  # case-insensitive, with .get()
        self.method = request.method
        self.uri = request.full_path.rstrip("?")
        self.path = request.path
        self.query = request.query_string.decode("latin-1")
        self.host = request.host
        self.protocol = request.scheme
        self.remote_ip = client_address(request)
        self.body = b""
        self.arguments = {k: [v.encode() for v in request.args.getlist(k)] for k in request.args}
        self.query_arguments = self.arguments
        self.cookies = {name: _morsel(name, value) for name, value in request.cookies.items()}

    def full_url(self) -> str:
        return f"{self.protocol}://{self.host}{self.uri}"


def _morsel(name: str, value: str) -> Morsel[str]:
    morsel: Morsel[str] = Morsel()
    morsel.set(name, value, value)
    return morsel


class RequestHandlerShim:
    """Passed to ``get_user``, ``get_user_async`` and ``get_login_url`` of auth modules."""

    def __init__(self, request: t.Any, cookie_secret: str | bytes | None = None) -> None:
        self.request = _Request(request)
        self._cookie_secret = cookie_secret
        self.settings = {"cookie_secret": cookie_secret}
        self.current_user: t.Any = None

    def get_cookie(self, name: str, default: str | None = None) -> str | None:
        morsel = self.request.cookies.get(name)
        return morsel.value if morsel is not None else default

    def get_secure_cookie(self, name: str, value: str | None = None, max_age_days: float = DEFAULT_MAX_AGE_DAYS,
                          min_version: int | None = None) -> bytes | None:
        """A cookie signed with ``--cookie-secret`` (Tornado's format), or ``None``."""
        if not self._cookie_secret:
            raise RuntimeError("get_secure_cookie needs a cookie secret: start the server with --cookie-secret "
                               "(or set BOKEH_COOKIE_SECRET)")
        raw = self.get_cookie(name) if value is None else value
        return decode_signed_value(self._cookie_secret, name, raw, max_age_days,
                                   min_version=min_version or MIN_SIGNED_VERSION)

    get_signed_cookie = get_secure_cookie

    def get_argument(self, name: str, default: t.Any = _MISSING, strip: bool = True) -> t.Any:
        values = self.get_arguments(name, strip)
        if values:
            return values[-1]
        if default is _MISSING:
            raise MissingArgument(f"Missing argument {name}")
        return default

    def get_arguments(self, name: str, strip: bool = True) -> list[str]:
        values = [v.decode("utf-8", "replace") for v in self.request.arguments.get(name, [])]
        return [v.strip() for v in values] if strip else values
