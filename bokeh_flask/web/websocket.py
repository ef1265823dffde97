"""The ``/<app>/ws`` view: checks before the upgrade, then the receive loop.

Every refusal (not a websocket request, a foreign ``Origin``, a missing or bad
token, an expired token) is an HTTP 403 answered *before* the upgrade, so the
client gets a real status instead of an accepted-then-closed socket. After the
upgrade the connection sends ACK and feeds each websocket message to its
:class:`~bokeh_flask.core.connection.ServerConnection`. With several processes, a
websocket whose session another worker built is relayed to that worker
(``state.relay``, :mod:`bokeh_flask.runtime.relay`) after these checks, which the
worker repeats. The socket itself comes from the registration's runtime
(``state.runtime``, :mod:`bokeh_flask.runtime.transport`).

On gevent's servers (pywsgi, gunicorn's gevent worker) the view returns right
after the upgrade and a greenlet of its own serves the connection, so what
runs for a websocket message (app callbacks included) has no Flask request
or app context, just like timer callbacks; under werkzeug the view serves the
connection itself.
"""
from __future__ import annotations

import base64
import binascii
import logging
import typing as t
from dataclasses import replace

from flask import Response, abort, g, request

from ..core.connection import ServerConnection
from ..core.errors import ConfigError, PermissionDenied, SessionError
from ..core.limits import read_token_payload
from ..core.origins import origin_host
from ..core.ports import Relay, WebSocket
from ..core.requests import RELAYED_ENVIRON_KEY
from ..core.state import BokehState
from ..core.tokens import check_token
from .cors import allowed_origins, origin_may_connect
from .current import current_state
from .requests import request_info

log = logging.getLogger(__name__)


def websocket(app_path: str) -> Response:
    """Serve one bokeh websocket connection for the session its token names."""
    state = current_state()
    context = state.context_for(app_path)
    relayed_from = request.environ.get(RELAYED_ENVIRON_KEY)
    try:
        token = check_handshake(state)
        relay = state.relay if relayed_from is None else None  # a relayed websocket stays here
        target = _relay_target(relay, token) if relay is not None else None
        # an expired token reconnects to a live session that has had a websocket (bokeh#14416), here
        # or in the worker it names (which checks again); it never opens a session's first websocket
        session_id = check_token(token, state.settings,
                                 session_exists=lambda sid: context.has_connected_session(sid) or target is not None)
        if relay is not None and target is not None and not context.has_session(session_id):
            if relay.relay(request.environ, target, session_id):
                return WebSocketDone("gunicorn")
            check_token(token, state.settings, session_exists=context.has_connected_session)  # built here
        # the user is who this request authenticated as (the guard), never a claim of the token
        info = replace(request_info(request), user=g.get("bokeh_user"))
        session = context.create_session_if_needed(session_id, info, token)
    except PermissionDenied as denied:
        log.warning("Refused websocket for %s: %s", request.path, denied.reason)
        abort(denied.status, denied.reason)
    except SessionError as error:
        abort(500, str(error))

    return serve_websocket(state, session, relayed_from)


def serve_websocket(state: BokehState, session: t.Any, relayed_from: int | None = None,
                    on_connection: t.Callable[[ServerConnection], None] | None = None) -> Response:
    """Accept the (checked) upgrade and serve ``session`` to it; ``on_connection`` sees the connection first."""
    if state.runtime is None:
        raise ConfigError("this registration has no websocket runtime: mount the apps with bokeh_flask.BokehFlask")
    max_size = state.settings.websocket_max_message_size_bytes
    ws = state.runtime.accept_websocket(request.environ, max_size, state.settings.websocket_compression)
    connection = ServerConnection(session, ws, max_message_bytes=max_size,
                                  max_queued_bytes=state.settings.websocket_max_queue_bytes,
                                  max_write_stall_seconds=state.settings.websocket_write_timeout_seconds)
    if on_connection is not None:
        on_connection(connection)
    state.connections.add(connection)
    if state.draining:  # accepted while this process shuts down: serve the first request, then 1001
        connection.close_when_settled()
    if relayed_from is not None:
        log.info("WebSocket connection opened (relayed from worker %s)", relayed_from or "?")
    else:
        log.info("WebSocket connection opened")
    ws.serve(request.environ, lambda: _serve(ws, connection, state))
    return WebSocketDone(ws.mode)


def _serve(ws: WebSocket, connection: ServerConnection, state: BokehState) -> None:
    try:
        connection.serve(ws)
    finally:
        state.connections.discard(connection)


def _relay_target(relay: Relay, token: str) -> int | None:
    """The other worker whose page request built this token's session, if it is still there."""
    try:
        payload = read_token_payload(token)
    except PermissionDenied:
        return None  # check_token refuses it next
    return relay.target_of(payload)


def check_handshake(state: BokehState) -> str:
    """Refuse what ``bokeh serve`` refuses; returns the token from the subprotocol header."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise PermissionDenied("this URL only accepts websocket connections", status=400)
    origin = request.headers.get("Origin")
    if origin is not None:
        if not origin_may_connect(state, origin):
            host = origin_host(origin)
            log.error(
                "Refusing websocket connection from Origin '%s'; use --allow-websocket-origin=%s "
                "or set BOKEH_ALLOW_WS_ORIGIN=%s to permit this; currently we allow origins %r",
                origin, host, host, sorted(allowed_origins(state)),
            )
            raise PermissionDenied(f"Origin {origin!r} is not allowed to open this websocket")
    _check_upgrade_headers()
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    if len(protocols) != 2 or protocols[0] != "bokeh":
        raise PermissionDenied("expected the subprotocols 'bokeh, <token>'")
    return protocols[1]


def _check_upgrade_headers() -> None:
    """RFC 6455's version and key, checked here so a bad handshake is a 4xx, not an error inside wsproto."""
    version = request.headers.get("Sec-WebSocket-Version", "")
    if version != "13":
        response = Response("only websocket protocol version 13 is supported", status=426,
                            headers={"Sec-WebSocket-Version": "13"})
        log.warning("Refused websocket for %s: version %r", request.path, version[:20])
        abort(response)
    key = request.headers.get("Sec-WebSocket-Key", "")
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        raise PermissionDenied("Sec-WebSocket-Key must be 16 bytes in base64", status=400)


class WebSocketDone(Response):
    """Tells the WSGI server the socket was taken over (what flask-sock does per server)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.server_mode = mode

    def __call__(self, environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
        if self.server_mode == "gunicorn":
            raise StopIteration()
        if self.server_mode == "werkzeug":
            return super().__call__(environ, start_response)
        return []
