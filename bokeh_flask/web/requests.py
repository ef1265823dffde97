"""The Tornado-shaped :class:`~bokeh_flask.core.requests.RequestInfo` of a Flask request."""
from __future__ import annotations

import ipaddress

from flask import Request

from ..core.requests import RequestInfo


def client_address(request: Request) -> str | None:
    """The client's IP address as bokeh reports it: an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``,
    what a dual-stack socket gives) as plain IPv4."""
    address = request.remote_addr
    if address and address.startswith("::ffff:"):
        try:
            mapped = ipaddress.IPv6Address(address).ipv4_mapped
        except ValueError:
            return address
        if mapped is not None:
            return str(mapped)
    return address


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
        remote_ip=client_address(request),
        protocol=request.scheme,
        method=request.method,
    )
