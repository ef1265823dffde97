"""``--use-xheaders``: trust a reverse proxy's X-Real-Ip, X-Forwarded-For, X-Scheme and X-Forwarded-Proto.

Like Tornado's ``xheaders``: the client address becomes ``X-Real-Ip`` (else
the last ``X-Forwarded-For`` entry, the one the nearest proxy added: earlier
entries come from the client and can be forged) and the scheme ``X-Scheme`` (else
``X-Forwarded-Proto``), so ``session_context.request.remote_ip`` and
``.protocol`` and every URL Flask builds describe the browser's side of the
proxy. Only for servers that are reached through such a proxy: anyone who can
reach the server directly can forge these headers.
"""
from __future__ import annotations

import typing as t

WSGIApp = t.Callable[[dict[str, t.Any], t.Callable[..., t.Any]], t.Iterable[bytes]]
_SCHEMES = {"http", "https", "ws", "wss"}


class XHeaders:
    """WSGI middleware applying the proxy's X-headers to the environ."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, t.Any], start_response: t.Callable[..., t.Any]) -> t.Iterable[bytes]:
        remote = environ.get("HTTP_X_REAL_IP") or environ.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1]
        if remote.strip():
            environ["REMOTE_ADDR"] = remote.strip()
        scheme = (environ.get("HTTP_X_SCHEME") or environ.get("HTTP_X_FORWARDED_PROTO", "")).split(",")[0]
        scheme = scheme.strip().lower()
        if scheme in _SCHEMES:
            environ["wsgi.url_scheme"] = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        return self.app(environ, start_response)
