"""Which origins may use the apps from another page: the websocket allowlist and autoload.js CORS."""
from __future__ import annotations

from flask import Response, request

from ..core.origins import origin_allowed, same_origin
from ..core.settings import env_websocket_origins
from ..core.state import BokehState
from .current import current_state


def allowed_origins(state: BokehState) -> set[str]:
    """``BOKEH_ALLOW_WS_ORIGIN`` when set (read now, as bokeh does), else the configured allowlist."""
    return env_websocket_origins() or state.settings.websocket_origins()


def same_origin_allowed(state: BokehState, origin: str) -> bool:
    """A page of this very host, when the settings trust same-origin pages.

    ``request.host`` honours Flask's ``TRUSTED_HOSTS``: an untrusted Host header
    (DNS rebinding) fails here instead of matching its own Origin.
    """
    if not state.settings.allow_same_origin:
        return False
    try:
        host = request.host
    except Exception:  # werkzeug's SecurityError for a host outside TRUSTED_HOSTS
        return False
    return same_origin(origin, host)


def origin_may_connect(state: BokehState, origin: str) -> bool:
    """True when a page of ``origin`` may open this server's websockets."""
    return same_origin_allowed(state, origin) or origin_allowed(origin, allowed_origins(state))


def add_cors_headers(state: BokehState, response: Response) -> None:
    """Anyone may load autoload.js; credentials are allowed only for allowlisted origins.

    bokeh 3.9 reflects any ``Origin`` with credentials (bokeh#15104); this server
    reflects only origins its websocket would accept.
    """
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Headers"] = "*"
    origin = request.headers.get("Origin")
    if origin and origin_may_connect(state, origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"


def autoload_preflight() -> Response:
    """``OPTIONS /<app>/autoload.js``: the CORS preflight browsers send first."""
    response = Response(status=200)
    add_cors_headers(current_state(), response)
    response.headers["Access-Control-Allow-Methods"] = "PUT, GET, OPTIONS"
    return response
