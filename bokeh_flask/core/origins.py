"""Websocket ``Origin`` allowlists with ``bokeh serve``'s matching rules.

A host without a port is taken to mean port 80, and patterns may use ``*`` for
any whole label (``*.example.com``, ``192.168.*.*``) or for the port
(``localhost:*``). A single ``*`` allows every origin.
"""
from __future__ import annotations

import typing as t
from urllib.parse import urlsplit


def origin_host(origin: str) -> str:
    """``"https://Foo.com:8443/x"`` -> ``"foo.com:8443"``; a bare ``host[:port]`` is kept."""
    netloc = urlsplit(origin).netloc if "://" in origin else origin
    return netloc.lower()


def with_default_port(host: str) -> str:
    return host if ":" in host.rsplit("]", 1)[-1] else f"{host}:80"


def host_matches(host: str, pattern: str) -> bool:
    """True when ``host`` (``name:port``) matches ``pattern``, wildcards included."""
    if pattern == "*":
        return True
    host_name, _, host_port = with_default_port(host).rpartition(":")
    if ":" in pattern.rsplit("]", 1)[-1]:
        pattern_name, _, pattern_port = pattern.rpartition(":")
    else:
        pattern_name, pattern_port = pattern, "80"
    if pattern_port not in ("*", host_port):
        return False
    host_parts, pattern_parts = host_name.split("."), pattern_name.split(".")
    if len(host_parts) != len(pattern_parts):
        return False
    return all(p in ("*", h) for h, p in zip(host_parts, pattern_parts))


def origin_allowed(origin: str, allowlist: t.Iterable[str]) -> bool:
    """True when the websocket ``Origin`` header value is in the allowlist."""
    host = origin_host(origin)
    if not host:
        return False
    return any(host_matches(host, pattern.lower()) for pattern in allowlist)


def same_origin(origin: str, host_header: str | None) -> bool:
    """True when a page's ``Origin`` is the host the request was sent to.

    A page served by this very host may always open its websocket: the check
    exists to stop other sites, and a non-browser client can forge both headers.
    """
    if not host_header:
        return False
    return with_default_port(origin_host(origin)) == with_default_port(host_header.lower())
