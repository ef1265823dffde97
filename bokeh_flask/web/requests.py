"""The Tornado-shaped :class:`~bokeh_flask.core.requests.RequestInfo` of a Flask request."""
from __future__ import annotations

from flask import Request

from ..core.requests import RequestInfo


def request_info(request: Request) -> RequestInfo:
    """What a bokeh app sees of ``request`` (``session_context.request``)."""
    arguments = {key: [v.encode("utf-8") for v in request.args.getlist(key)] for key in request.args}
    query = request.query_string.decode("latin-1")
    return RequestInfo(
        arguments=arguments,
        headers=dict(request.headers.items()),
        cookies=dict(request.cookies.items()),
        uri=request.path + (f"?{query}" if query else ""),
        path=request.path,
        query=query,
        host=request.host,
        remote_ip=request.remote_addr,
        protocol=request.scheme,
        method=request.method,
    )
