"""The blueprint's ``before_request``: XSRF, then refuse users the auth provider does not know."""
from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import Response, abort, current_app, g, redirect, request

from .current import base_url, current_state
from .tornado_handlers import TORNADO_ENDPOINT, is_tornado_view
from .tornado_shim import RequestHandlerShim
from .xsrf import check_xsrf

log = logging.getLogger(__name__)

#: endpoints a logged-out user may reach (bokeh guards the index, pages, websocket,
#: metadata and autoload.js, and leaves BokehJS and static files public)
PUBLIC_ENDPOINTS = {"static", "extension_static", "app_static", "favicon", "healthz", "metrics", "healthz_short",
                    "metrics_short", "login", "logout"}
#: the publishing views' endpoints start with this; they check XSRF themselves (always, for cookie logins)
PUBLISHING_ENDPOINT = "pub_"


def guard() -> Response | None:
    """XSRF, then authentication.

    Runs before any view, so a websocket is refused with 403 before its upgrade;
    a page request is redirected to the login URL.
    """
    state = current_state()
    tornado = is_tornado_view(current_app.view_functions.get(request.endpoint or ""))
    endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
    if not tornado and not endpoint.startswith(PUBLISHING_ENDPOINT):
        check_xsrf()  # Tornado handlers check their own (``check_xsrf_cookie``), as under bokeh serve
    provider = state.auth
    if provider is None or endpoint in PUBLIC_ENDPOINTS or endpoint.startswith(TORNADO_ENDPOINT):
        return None
    if endpoint.startswith(PUBLISHING_ENDPOINT) and request.headers.get("Authorization", "").startswith("Bearer "):
        return None  # a script with a publishing API key: checked by the publishing views themselves
    handler = RequestHandlerShim(request, state.settings.cookie_secret)
    try:
        user = provider.user(handler, state.scheduler.finish)
    except Exception:
        log.exception("The auth module's get_user failed; treating the request as not logged in")
        user = None
    if user is not None:
        g.bokeh_user = user
        return None
    if endpoint in ("ws", "pub_ws") or request.method not in ("GET", "HEAD"):
        log.warning("Refused %s %s: not authenticated", request.method, request.path)
        abort(403, "not authenticated")
    location = provider.login_location(handler)
    if provider.urls_under_blueprint and location.startswith("/") and not location.startswith("//"):
        location = base_url(state) + location
    separator = "&" if "?" in location else "?"
    return redirect(f"{location}{separator}{urlencode({'next': request.full_path.rstrip('?')})}")
