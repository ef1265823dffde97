"""The request object bokeh applications see, in the shape Tornado gave them.

Bokeh apps read ``curdoc().session_context.request.arguments`` (a dict of
lists of ``bytes``), ``.headers``, ``.cookies`` and sometimes ``.uri``,
``.path``, ``.host``, ``.remote_ip`` or ``.protocol``; ``app_hooks.py``'s
``process_request(request)`` gets the same object. :class:`RequestInfo` is
that object, without Tornado; the web layer builds it from a Flask request
(:func:`bokeh_flask.web.requests.request_info`).
"""
from __future__ import annotations

import typing as t
from dataclasses import dataclass, field, replace


#: the token payload key naming the worker (pid) whose page request built the session
#: (``--num-procs``: see :mod:`bokeh_flask.runtime.relay`); apps do not see it in ``token_payload``
WORKER_KEY = "bokeh_flask_worker"
#: WSGI environ key a worker's relay server sets on every request it serves (clients cannot
#: set environ keys): the worker that relayed it, 0 when unknown
RELAYED_ENVIRON_KEY = "bokeh_flask.relayed_from"


@dataclass(frozen=True)
class RequestInfo:
    """A plain, Tornado-shaped view of one HTTP request."""

    arguments: dict[str, list[bytes]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    uri: str = "/"
    path: str = "/"
    query: str = ""
    host: str = ""
    remote_ip: str | None = None
    protocol: str = "http"
    method: str = "GET"
    #: who the auth module or ``authorize=`` check said is logged in (``None`` without auth)
    user: t.Any = None

    def with_payload(self, payload: t.Mapping[str, t.Any]) -> RequestInfo:
        """This request with arguments, headers and cookies taken from a session token.

        A websocket (perhaps in another process) recreates the session from the
        token the page request put these in, so the app sees the page request.
        The user is never taken from a token (in unsigned mode anyone can write
        one): it stays the one this request authenticated as.
        """
        changes: dict[str, t.Any] = {}
        for name in ("arguments", "headers", "cookies"):
            if name in payload and payload[name] is not None:
                changes[name] = dict(payload[name])
        arguments = changes.get("arguments", self.arguments)
        changes["arguments"] = {k: [i.encode() if isinstance(i, str) else i for i in v]
                                for k, v in arguments.items() if k != "bokeh-session-id"}
        cookies = changes.get("cookies")
        headers = changes.get("headers")
        if cookies and headers is not None and "Cookie" not in headers:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return replace(self, **changes)

    def get(self, name: str, default: t.Any = None) -> t.Any:
        return getattr(self, name, default)
