"""Tornado ``RequestHandler`` classes served unchanged from Flask.

``bokeh serve`` auth modules define ``LoginHandler`` / ``LogoutHandler`` as Tornado
handlers (``self.render("login.html")``, ``get_argument``, ``set_secure_cookie``,
``redirect``, ``xsrf_form_html()``), and ``Server(extra_patterns=[(r"/path",
Handler, kwargs)])`` adds more. Here each such request is handed to a real
``tornado.web.Application`` holding those patterns, with bokeh's settings
(``cookie_secret``, ``xsrf_cookies``, ``login_url``): Tornado routes it and runs
the handler (``prepare``, ``get``/``post``..., ``async`` ones included, its own
XSRF check) on a private asyncio loop, writing the response into a connection
object of ours, which becomes the Flask response. Templates are found as
Tornado finds them: beside the module whose handler calls ``render``.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import re
import typing as t

from flask import Request, Response, request
from tornado.httputil import HTTPHeaders, HTTPServerRequest, parse_body_arguments
from tornado.web import Application, RequestHandler
from werkzeug.routing import BaseConverter

from ..core.errors import ConfigError
from .requests import client_address

log = logging.getLogger(__name__)

#: ``(pattern, handler class, keyword arguments)``, as ``extra_patterns`` gives them
Pattern = t.Tuple[str, type, t.Dict[str, t.Any]]
#: endpoint names of ``extra_patterns`` routes (``tornado_0`` ...): public, and XSRF is Tornado's own check
TORNADO_ENDPOINT = "tornado_"
#: how long one handler may take to finish its response
HANDLER_TIMEOUT_SECONDS = 60.0


def is_tornado_handler(obj: t.Any) -> bool:
    return inspect.isclass(obj) and issubclass(obj, RequestHandler)


def flask_rule(pattern: str, converter: str) -> str:
    """The Flask rule for a Tornado pattern: its literal path, else a rule using ``converter``
    (see :func:`pattern_converter`)."""
    body = pattern.removesuffix("$").lstrip("^")
    if not body.startswith("/"):
        raise ConfigError(f"Tornado URL pattern {pattern!r} must start with '/'")
    if re.fullmatch(r"[A-Za-z0-9_./~-]*", body):
        return body
    return f"/<{converter}:tornado_path>"


def pattern_converter(pattern: str) -> type[BaseConverter]:
    """A werkzeug converter matching what follows the first ``/`` of a Tornado pattern."""
    body = pattern.removesuffix("$").lstrip("^")[1:]

    class TornadoPattern(BaseConverter):
        regex = body
        part_isolating = False

    return TornadoPattern


def is_tornado_view(view: t.Any) -> bool:
    """True for the Flask view of :class:`TornadoHandlers` (Tornado checks XSRF there itself)."""
    return isinstance(getattr(view, "__self__", None), TornadoHandlers)


class _ResponseCollector:
    """The ``HTTPConnection`` a handler writes its response to."""

    def __init__(self) -> None:
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        #: set when the handler finished its response (made on the loop that runs the handler)
        self.done: asyncio.Future[None] | None = None

    def set_close_callback(self, callback: t.Any) -> None:
        pass

    def write_headers(self, start_line: t.Any, headers: HTTPHeaders, chunk: bytes | None = None) -> asyncio.Future:
        self.status = start_line.code
        self.headers = list(headers.get_all())
        return self.write(chunk)

    def write(self, chunk: bytes | None) -> asyncio.Future:
        if chunk:
            self.body.append(chunk)
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        written.set_result(None)
        return written

    def finish(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


class TornadoHandlers:
    """One Tornado application for the handlers of one registration, run for Flask requests.

    :param patterns: ``(pattern, handler, kwargs)``, patterns relative to ``prefix``
    :param finish: runs a coroutine to completion (the scheduler's ``finish``)
    :param settings: Tornado application settings (``cookie_secret``, ``xsrf_cookies`` ...)
    """

    def __init__(self, patterns: t.Sequence[Pattern], finish: t.Callable[[t.Awaitable[t.Any]], t.Any],
                 prefix: str = "", **settings: t.Any) -> None:
        self.patterns = list(patterns)
        self._finish = finish
        self.application = Application([(prefix + p, h, k) for p, h, k in self.patterns],
                                       **{k: v for k, v in settings.items() if v is not None})

    def view(self, **_: t.Any) -> Response:
        """Flask view: hand this request to the Tornado handler its path matches.

        The Tornado request is built here, in the request's context; the handler
        runs on the scheduler's private asyncio loop (another thread under gevent).
        """
        tornado_request = _tornado_request(request, request.path, _ResponseCollector())
        return t.cast(Response, self._finish(self._run(tornado_request)))

    async def _run(self, tornado_request: HTTPServerRequest) -> Response:
        collector = t.cast(_ResponseCollector, tornado_request.connection)
        collector.done = asyncio.get_running_loop().create_future()
        self.application.find_handler(tornado_request).execute()
        await asyncio.wait_for(collector.done, HANDLER_TIMEOUT_SECONDS)
        response = Response(b"".join(collector.body), status=collector.status)
        response.headers.clear()
        for name, value in collector.headers:
            response.headers.add(name, value)
        return response


def _tornado_request(flask_request: Request, path: str, connection: _ResponseCollector) -> HTTPServerRequest:
    """Tornado's request object for a Flask request (body arguments parsed, as Tornado's server does)."""
    query = flask_request.query_string.decode("latin-1")
    headers = HTTPHeaders()
    for name, value in flask_request.headers.items():
        headers.add(name, value)
    body = flask_request.get_data(cache=True)
    tornado_request = HTTPServerRequest(method=flask_request.method, uri=path + (f"?{query}" if query else ""),
                                        version="HTTP/1.1", headers=headers, body=body, host=flask_request.host,
                                        connection=connection)
    tornado_request.remote_ip = client_address(flask_request) or ""
    tornado_request.protocol = flask_request.scheme
    if body:
        parse_body_arguments(headers.get("Content-Type", ""), body, tornado_request.body_arguments,
                             tornado_request.files, headers)
        for name, values in tornado_request.body_arguments.items():
            tornado_request.arguments.setdefault(name, []).extend(values)
    return tornado_request
